"""Lesson 10's variants run with seeds other than the profile's on the profile's own artifacts."""

from __future__ import annotations

import pytest
import torch
from datasets import Dataset

import tinybert_lib as tl
from tinybert_lib import ablations, pipeline
from tinybert_lib.training import FitConfig

from conftest import MIRROR

TINY = dict(train_limit=24, dev_limit=16, augment_limit=8, corpus_max_blocks=16, max_seq_len_general=32,
            ablation_examples=16)


@pytest.mark.parametrize("name", ["tinybert", "no distillation (fine-tune)"])
def test_a_variant_with_another_seed_reuses_the_shared_artifacts(on_mirror, tmp_path, name):
    """Seeds 43, 44 train the variant anew; the teacher, augmented set and general student stay seed 42's."""
    if not MIRROR.is_dir():
        pytest.skip(f"data mirror {MIRROR} not found")
    profile = tl.get_profile("smoke", **TINY)
    for stage in ("general", "finetune", "augment"):
        pipeline.run_stage(stage, profile, tmp_path, "cpu")
    run = ablations.run_variant(ablations.VARIANTS[name], profile, tmp_path, seed=profile.seed + 1, device="cpu")
    assert run["seed"] == profile.seed + 1 and 0.0 <= run["accuracy"] <= 1.0
    for stage in ("general", "finetune"):  # nothing was rebuilt for the other seed
        assert pipeline.summary(tmp_path, stage)["settings"]["profile"]["seed"] == profile.seed


def test_hard_label_rows_train_at_step_2s_settings(teacher, monkeypatch):
    """The hard-label rows accumulate and clip as step 2 does: a batch of 2 x 4 rows, not 4."""
    seen = {}
    monkeypatch.setattr(ablations, "fit", lambda **kwargs: seen.update(kwargs))
    profile = tl.get_profile("smoke", grad_accum_steps=2, max_grad_norm=0.25, intermediate_batch_size=4, prediction_batch_size=4, prediction_lr=7e-5, seed=5)
    student = tl.build_student("minilm-3l-192d", teacher=teacher, num_labels=2)
    rows = Dataset.from_dict({"sentence": ["a fine film .", "bad ."] * 4, "label": [1, 0] * 4})
    ablations.finetune_hard(student, rows, profile, 3, torch.device("cpu"))
    config = seen["config"]
    assert config.accumulation_steps == 2 and config.max_grad_norm == 0.25
    assert (config.epochs, config.lr, config.batch_size, config.seed) == (3, 7e-5, 4, 5)
    assert config == FitConfig.for_stage(profile, "prediction", epochs=3)
    assert len(seen["loader_for_epoch"](0)) == 2  # 8 rows in batches of 4


def test_each_label_only_baseline_trains_at_its_own_rate(teacher, monkeypatch):
    """The general student fine-tuned on labels trains at ``ablation_finetune_lr``, a random student at ``scratch_lr``."""
    import copy

    rates = []
    rows = Dataset.from_dict({"sentence": ["a fine film .", "bad ."] * 4, "label": [1, 0] * 4})
    monkeypatch.setattr(ablations, "get_general_student", lambda *a, **k: (tl.build_student("minilm-3l-192d", teacher=teacher), None))
    monkeypatch.setattr(ablations, "load_sst2", lambda split, limit=None: rows)
    monkeypatch.setattr(ablations, "finetune_hard", lambda student, train, profile, epochs, device: rates.append(profile.prediction_lr))
    monkeypatch.setattr(ablations, "accuracy", lambda *a, **k: 0.5)
    profile = tl.get_profile("smoke", ablation_finetune_lr=7e-4, scratch_lr=2e-4, prediction_lr=1e-5)
    tuned = copy.deepcopy(teacher).add_classifier(2)
    for name in ("general student + fine-tuning", "no distillation (fine-tune)"):
        ablations.run_variant(ablations.VARIANTS[name], profile, "unused", seed=1, device="cpu", teacher=tuned)
    assert rates == [7e-4, 2e-4]
    rates.clear()  # without a rate of its own, step 2's
    ablations.run_variant(ablations.VARIANTS["general student + fine-tuning"], profile.with_overrides(ablation_finetune_lr=None),
                          "unused", seed=1, device="cpu", teacher=tuned)
    assert rates == [1e-5]

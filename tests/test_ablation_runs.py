"""Lesson 10's variants run with seeds other than the profile's on the profile's own artifacts."""

from __future__ import annotations

import pytest

import tinybert_lib as tl
from tinybert_lib import ablations, pipeline

from conftest import MIRROR

TINY = dict(sst2_train_limit=24, sst2_dev_limit=16, augment_limit=8, corpus_max_blocks=16, max_seq_len_general=32,
            ablation_examples=16)


@pytest.mark.parametrize("name", ["tinybert", "no distillation (fine-tune)"])
def test_a_variant_with_another_seed_reuses_the_shared_artifacts(on_mirror, tmp_path, name):
    """Seeds 43, 44 train the variant anew; the teacher, augmented set and general student stay seed 42's."""
    if not MIRROR.is_dir():
        pytest.skip(f"data mirror {MIRROR} not found")
    profile = tl.get_profile("smoke", **TINY)
    for stage in ("general-distill", "finetune-teacher", "augment"):
        pipeline.run_stage(stage, profile, tmp_path, "cpu")
    run = ablations.run_variant(ablations.VARIANTS[name], profile, tmp_path, seed=profile.seed + 1, device="cpu")
    assert run["seed"] == profile.seed + 1 and 0.0 <= run["accuracy"] <= 1.0
    for stage in ("general-distill", "finetune-teacher"):  # nothing was rebuilt for the other seed
        assert pipeline.summary(tmp_path, stage)["settings"]["profile"]["seed"] == profile.seed

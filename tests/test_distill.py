"""The distillation loops on tiny budgets: they train, keep the teacher fixed, and resume."""

from __future__ import annotations

import copy

import pytest
import torch

import tinybert_lib as tl
from tinybert_lib import distill, pipeline
from tinybert_lib.checkpoints import Checkpoint
from tinybert_lib.training import FitConfig, Interrupted

TINY = dict(general_batch_size=4, general_epochs=2, log_every=1, max_seq_len_general=32, seed=3)


@pytest.fixture(scope="module")
def corpus(teacher):
    return tl.data.corpus_blocks(teacher.tokenizer, 32, max_blocks=12)


def _student(teacher):
    tl.set_seed(0)
    return tl.build_student("minilm-3l-192d", teacher=teacher)


def test_general_distillation_lowers_the_loss_and_leaves_teacher_alone(teacher, corpus, tmp_path):
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    profile = tl.get_profile("smoke", **{**TINY, "general_lr": 1e-3, "general_epochs": 4})
    result = pipeline.run_general_distillation(profile, tmp_path, "cpu", teacher=teacher, student=_student(teacher), corpus=corpus)
    totals = [r["total"] for r in result.history]
    assert len(totals) == 12 and totals[-1] < totals[0]
    assert set(result.history[0]) >= {"emb", "hid", "att", "total", "lr"}
    assert all(p.grad is None for p in teacher.parameters())
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())
    assert not teacher.training
    out = pipeline.stage_dir(tmp_path, "general")
    assert (out / "model" / "model.safetensors").is_file()
    assert (out / "projections.safetensors").is_file()


def test_interrupted_general_distillation_resumes_from_checkpoint(teacher, corpus, tmp_path):
    config = FitConfig.for_stage(tl.get_profile("smoke", **TINY), "general")
    reference = distill.general_distill(teacher, _student(teacher), corpus, config, device="cpu")

    out = tmp_path / "run"
    with pytest.raises(Interrupted, match="stopped after step 2"):
        distill.general_distill(teacher, _student(teacher), corpus, config, device="cpu", checkpoint_dir=out / "checkpoint",
                                stop_after=2)
    ckpt = Checkpoint(out / "checkpoint")
    assert ckpt.exists() and ckpt.state()["step"] == 2 and not ckpt.state()["done"]

    resumed = distill.general_distill(teacher, _student(teacher), corpus, config, device="cpu", checkpoint_dir=out / "checkpoint")
    assert resumed.train.resumed_from == 2 and resumed.train.steps == 6
    assert [r["step"] for r in resumed.history] == list(range(1, 7))
    for (name, a), b in zip(reference.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-5), name
    assert [round(r["total"], 4) for r in resumed.history] == [round(r["total"], 4) for r in reference.history]

    # A finished run is not trained again.
    again = distill.general_distill(teacher, _student(teacher), corpus, config, device="cpu", checkpoint_dir=out / "checkpoint")
    assert again.train.resumed_from == 6
    assert torch.equal(again.model.bert.encoder.layer[0].output.dense.weight, resumed.model.bert.encoder.layer[0].output.dense.weight)
    assert not list((out).glob(".*")), "no temporary folders may be left behind"


def test_teacher_finetuning_and_task_distillation(tmp_path):
    teacher = tl.load_teacher("minilm")
    profile = tl.get_profile("smoke", finetune_batch_size=8, intermediate_batch_size=8, prediction_batch_size=8, finetune_lr=1e-4,
                             prediction_epochs=2, dev_limit=16)
    sst2 = {"train": tl.data.load_sst2("train", limit=24), "dev": tl.data.load_sst2("dev", limit=16)}
    ft = distill.finetune_teacher(teacher, sst2["train"], sst2["dev"], "sst2", FitConfig.for_stage(profile, "finetune"), device="cpu")
    assert ft.model.config.num_labels == 2 and 0.0 <= ft.metrics["dev_accuracy"] <= 1.0
    assert len(ft.train.evals) == 1

    student = _student(teacher)
    s1 = distill.intermediate_distill(ft.model, student, sst2["train"], sst2["dev"], "sst2",
                                      FitConfig.for_stage(profile, "intermediate"), device="cpu")
    assert s1.projections is not None and s1.metrics["dev_total"] > 0
    # step 2 through the pipeline, which keeps the best epoch in its folder (model/)
    s2 = pipeline.run_task_distillation(profile, tmp_path, "prediction", "cpu", teacher=ft.model, student=s1.model,
                                        train=sst2["train"])
    accs = [e["dev_accuracy"] for e in s2.train.evals]
    assert len(accs) == 2 and s2.metrics["dev_accuracy"] == max(accs)
    assert tl.evaluate.accuracy(s2.model, sst2["dev"]) == pytest.approx(max(accs))  # the best epoch is kept
    kept = tl.Bert.from_folder(pipeline.stage_dir(tmp_path, "prediction") / "model")
    kept.tokenizer = s2.model.tokenizer
    assert tl.evaluate.accuracy(kept, sst2["dev"]) == pytest.approx(max(accs))  # and saved
    with pytest.raises(ValueError, match="fine-tuned teacher"):
        distill.prediction_distill(tl.load_teacher("minilm"), _student(teacher), sst2["train"], sst2["dev"], "sst2",
                                   FitConfig.for_stage(profile, "prediction"))
    with pytest.raises(ValueError, match="unknown stage"):
        pipeline.run_task_distillation(profile, tmp_path, "both")


def test_prediction_distillation_loss_is_the_soft_cross_entropy_of_step_two(teacher, sentences):
    """The loss prediction_distill trains with in step 2 (and lesson 09 checks a hand-written step against)."""
    teacher_ft = copy.deepcopy(teacher).add_classifier(2).eval()  # the session's teacher stays headless
    tl.set_seed(0)
    student = tl.build_student("minilm-3l-192d", teacher=teacher_ft, num_labels=2).eval()
    batch = dict(teacher.tokenizer(sentences, padding=True, return_tensors="pt"))
    loss = distill.prediction_distillation_loss(teacher_ft, student, temperature=2.0)(batch)["total"]
    with torch.no_grad():
        expected = tl.losses.prediction_loss(student(**batch).logits, teacher_ft(**batch).logits, 2.0)
    assert torch.allclose(loss, expected)
    loss.backward()
    assert all(p.grad is None for p in teacher_ft.parameters())  # a fixed target
    assert student.classifier.weight.grad is not None


def test_pipeline_reloads_general_student(teacher, corpus, tmp_path):
    # the corpus and held-out blocks the pipeline reads for this profile, so that it reuses the stage
    profile = tl.get_profile("smoke", **TINY, corpus_max_blocks=12)
    valid = tl.data.corpus_blocks(teacher.tokenizer, 32, split="valid", max_blocks=8)
    result = pipeline.run_general_distillation(profile, tmp_path, "cpu", teacher=teacher, student=_student(teacher), corpus=corpus,
                                               valid=valid)
    assert (pipeline.stage_dir(tmp_path, "general") / "summary.json").is_file()
    student, projections = pipeline.get_general_student(profile, tmp_path)
    assert pipeline.is_done(tmp_path, "general")
    assert student.config.num_labels == 0 and student.tokenizer is not None  # a general student has no head
    for a, b in zip(result.model.state_dict().values(), student.state_dict().values()):
        assert torch.equal(a, b)
    for a, b in zip(result.projections.state_dict().values(), projections.state_dict().values()):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="unknown stage"):
        pipeline.run_stage("distill-everything", profile, tmp_path)


def test_first_examples_keeps_whole_source_groups():
    from datasets import Dataset

    rows = Dataset.from_dict({"sentence": list("abcdefg"), "label": [0] * 7,
                              "is_original": [True, False, False, True, True, False, True]})
    assert tl.ablations._first_examples(rows, 2)["sentence"] == list("abcd")
    assert tl.ablations._first_examples(rows, 10)["sentence"] == list("abcdefg")


def test_ablation_variants_change_one_thing_each():
    base = tl.ablations.VARIANTS["tinybert"]
    assert base.general and base.augmented and base.step1 and base.step2 == "soft" and base.mapping == "uniform"
    assert tl.ablations.VARIANTS["w/o attention loss"].weights == (1.0, 1.0, 0.0)
    assert not tl.ablations.VARIANTS["w/o general distillation"].general
    assert not tl.ablations.VARIANTS["w/o data augmentation"].augmented
    assert tl.ablations.VARIANTS["w/o prediction loss"].step2 == "hard"


def test_fit_config_reads_each_stage_own_fields():
    profile = tl.get_profile("smoke", seed=7, general_epochs=2, general_batch_size=3, general_lr=1e-3, finetune_epochs=4,
                             finetune_batch_size=5, finetune_lr=2e-3, intermediate_epochs=6, intermediate_lr=3e-3,
                             prediction_epochs=8, prediction_lr=4e-3, intermediate_batch_size=9, prediction_batch_size=9, warmup_ratio=0.2,
                             weight_decay=0.03, max_grad_norm=0.4, grad_accum_steps=2, log_every=11)
    own = {"general": (2, 3, 1e-3), "finetune": (4, 5, 2e-3), "intermediate": (6, 9, 3e-3), "prediction": (8, 9, 4e-3)}
    for stage, (epochs, batch_size, lr) in own.items():
        config = FitConfig.for_stage(profile, stage)
        assert (config.epochs, config.batch_size, config.lr) == (epochs, batch_size, lr), stage
        assert (config.seed, config.warmup_ratio, config.weight_decay, config.max_grad_norm, config.accumulation_steps,
                config.log_every) == (7, 0.2, 0.03, 0.4, 2, 11), stage
        # the settings record names every field that changes a result, and log_every is not one
        assert set(FitConfig.recorded_fields(stage)) >= {"seed", "warmup_ratio", "weight_decay", "max_grad_norm",
                                                         "grad_accum_steps"} and "log_every" not in FitConfig.recorded_fields(stage)
    assert FitConfig.for_stage(profile, "prediction", epochs=1).epochs == 1
    with pytest.raises(ValueError, match="unknown stage"):
        FitConfig.for_stage(profile, "step 3")


class _Stop(Exception):
    """Raised by a stand-in for fit once it has seen its arguments."""


def test_every_stage_hands_fit_its_profile_config(teacher, corpus, monkeypatch, tmp_path):
    """The pipeline trains each stage at ``FitConfig.for_stage``'s settings, accumulation and clipping included."""
    from datasets import Dataset

    seen: list[FitConfig] = []

    def fake_fit(**kwargs):
        seen.append(kwargs["config"])
        raise _Stop

    monkeypatch.setattr(distill, "fit", fake_fit)
    profile = tl.get_profile("smoke", **TINY, grad_accum_steps=2, max_grad_norm=0.5, warmup_ratio=0.2, weight_decay=0.02)
    rows = Dataset.from_dict({"sentence": ["a fine film .", "bad ."] * 4, "label": [1, 0] * 4})
    tuned = tl.load_teacher("minilm").add_classifier(2)
    runs = {
        "general": lambda: pipeline.run_general_distillation(profile, tmp_path, "cpu", teacher=teacher, student=_student(teacher),
                                                             corpus=corpus, valid=corpus),
        "finetune": lambda: pipeline.run_teacher_finetuning(profile, tmp_path, "cpu", teacher=tl.load_teacher("minilm")),
        "intermediate": lambda: pipeline.run_task_distillation(profile, tmp_path, "intermediate", "cpu", teacher=tuned,
                                                               student=_student(teacher), train=rows),
        "prediction": lambda: pipeline.run_task_distillation(profile, tmp_path, "prediction", "cpu", teacher=tuned,
                                                             student=_student(teacher), train=rows),
    }
    for stage, run in runs.items():
        with pytest.raises(_Stop):
            run()
        assert seen[-1] == FitConfig.for_stage(profile, stage), stage
        assert seen[-1].accumulation_steps == 2 and seen[-1].max_grad_norm == 0.5, stage

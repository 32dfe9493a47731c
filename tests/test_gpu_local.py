"""The gpu-local profile: one GPU from local files only. It needs nothing from the hub, and its settings
(architecture, pooling, rates, augmentation) run through every stage here on the CPU at smoke sizes."""

from __future__ import annotations

import pytest

import tinybert_lib as tl
from tinybert_lib import pipeline
from tinybert_lib.preflight import ProfileNotReadyError, check_ready, missing_for

# The smoke profile's sizes, nothing else: every other field stays gpu-local's.
SMOKE_SIZES = ("train_limit", "dev_limit", "max_seq_len_general", "corpus_max_blocks", "general_epochs",
               "general_batch_size", "finetune_epochs", "finetune_batch_size", "augment_limit",
               "intermediate_epochs", "prediction_epochs", "intermediate_batch_size", "prediction_batch_size",
               "log_every")


def test_gpu_local_needs_nothing_from_the_hub(monkeypatch):
    def no_hub(*args, **kwargs):
        raise OSError("offline")

    monkeypatch.setattr("huggingface_hub.snapshot_download", no_hub)
    profile = tl.get_profile("gpu-local")
    assert (profile.teacher, profile.general_corpus, profile.device) == ("minilm", "wikitext-2", "cuda")
    assert missing_for(profile, device="cpu") == []


def test_the_gpu_profile_offline_points_to_gpu_local(monkeypatch):
    def no_hub(*args, **kwargs):
        raise OSError("offline")

    monkeypatch.setattr("huggingface_hub.snapshot_download", no_hub)
    with pytest.raises(ProfileNotReadyError, match=r"gpu-local"):
        check_ready("gpu", device="cpu")


def test_gpu_local_settings_run_every_stage_on_the_cpu(tmp_path):
    smoke = tl.get_profile("smoke")
    profile = tl.get_profile("gpu-local", device="cpu", **{f: getattr(smoke, f) for f in SMOKE_SIZES})
    run = pipeline.PipelineRun(profile, tmp_path, "cpu")
    student = run.get("prediction").model
    assert student.config.num_hidden_layers == 3 and student.config.hidden_size == 384
    assert student.config.classifier_pooling == "mean"
    assert 0.0 <= run.get("prediction").metrics["dev_accuracy"] <= 1.0
    assert pipeline.summary(tmp_path, "intermediate")["settings"]["profile"]["intermediate_lr"] == 1e-3

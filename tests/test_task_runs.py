"""Lesson 13's runner: every stage of a task, step 2 and the label-only baseline over seeds, one table row."""

from __future__ import annotations

import math

import pytest

import tinybert_lib as tl
from tinybert_lib import pipeline, task_runs

from conftest import MIRROR

TINY = dict(train_limit=24, dev_limit=16, augment_limit=8, corpus_max_blocks=16, max_seq_len_general=32,
            ablation_seeds=2)


def test_run_task_builds_every_stage_and_scores_every_seed(on_mirror, tmp_path):
    if not MIRROR.is_dir():
        pytest.skip(f"data mirror {MIRROR} not found")
    # named apart from "smoke", so that the profile's task settings (TASK_SETTINGS) leave these limits alone
    tiny = tl.get_profile("smoke", **TINY).with_overrides(name="tiny")
    run = task_runs.run_task(tiny, tmp_path, "rte", device="cpu")
    assert run["seeds"] == 2 and run["dev_rows"] == 16  # a small dev set: the profile's ablation_seeds
    assert [list(s) for s in run["student"]] == [["accuracy"]] * 2 and len(run["baseline"]) == 2
    assert list(run["teacher"]) == ["accuracy"]
    for stage in pipeline.STAGES:
        assert pipeline.is_done(tmp_path, stage, "rte"), stage
    row = task_runs.summary_row(run)
    assert row["task"] == "RTE" and row["paper TinyBERT4"] == 66.6 and 0 <= row["TinyBERT student"] <= 100
    assert math.isclose(row["kept"], row["TinyBERT student"] / row["teacher"])
    assert not pipeline.is_done(tmp_path, "finetune")  # SST-2's teacher is not built for RTE


def test_task_profile_applies_the_profiles_task_settings():
    p = tl.profiles.for_task("cpu", "mrpc")
    assert p.task == "mrpc" and p.finetune_batch_size == tl.profiles.TASK_SETTINGS["cpu"]["mrpc"]["finetune_batch_size"] == 16
    assert tl.profiles.for_task("gpu", "mrpc") == tl.get_profile("gpu", task="mrpc")  # no settings: the task only
    with pytest.raises(ValueError, match="unknown task"):
        tl.profiles.for_task("cpu", "qnli")

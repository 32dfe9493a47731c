"""Runs that are reproducible, and finished stages reused only when built with the settings asked for."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import tinybert_lib as tl
from tinybert_lib import pipeline
from tinybert_lib.records import StaleArtifactError

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(general_batch_size=4, general_epochs=1, log_every=1, max_seq_len_general=32, seed=3)


@pytest.fixture(scope="module")
def headless_runs(tmp_path_factory):
    """``python -m tinybert_lib run general --profile smoke`` twice, into two fresh folders."""
    root = tmp_path_factory.mktemp("headless")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "CUDA_VISIBLE_DEVICES": "",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    runs = [subprocess.Popen([sys.executable, "-m", "tinybert_lib", "run", "general", "--profile", "smoke",
                              "--device", "cpu", "--artifacts", str(root / name)], cwd=ROOT, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for name in ("a", "b")]
    for run in runs:
        out, err = run.communicate(timeout=600)
        assert run.returncode == 0, f"headless run failed:\n{out[-2000:]}\n{err[-4000:]}"
    return root


def test_two_headless_runs_give_bit_identical_students(headless_runs):
    from safetensors.torch import load_file

    for name in ("model/model.safetensors", "projections.safetensors"):
        a, b = (load_file(str(headless_runs / run / "general_student" / name)) for run in ("a", "b"))
        assert a.keys() == b.keys()
        worst = max(float((a[k] - b[k]).abs().max()) for k in a)
        assert all(torch.equal(a[k], b[k]) for k in a), f"{name}: the two runs differ by up to {worst:.3g}"


def test_changed_settings_are_refused_with_the_difference_named(headless_runs):
    folder = headless_runs / "a"
    changed = tl.get_profile("smoke", general_epochs=3, general_lr=1e-3)
    with pytest.raises(StaleArtifactError, match=r"(?s)general_epochs: 1 -> 3.*general_lr: 5e-05 -> 0\.001.*--rebuild"):
        pipeline.run_general_distillation(changed, folder, device="cpu")
    # what only changes how a run is watched does not invalidate it
    same = pipeline.run_general_distillation(tl.get_profile("smoke", log_every=1, device="cpu"), folder)
    assert same.train.resumed_from == same.train.steps > 0


@pytest.fixture(scope="module")
def corpus(teacher):
    return tl.data.corpus_blocks(teacher.tokenizer, 32, max_blocks=8)


def _general(teacher, corpus, out, **kw):
    profile = tl.get_profile("smoke", **{**TINY, **kw.pop("overrides", {})})
    tl.set_seed(0)
    return pipeline.run_general_distillation(profile, out, "cpu", teacher=teacher, corpus=corpus, valid=corpus,
                                             student=tl.build_student("minilm-3l-192d", teacher=teacher), **kw)


def test_rebuild_trains_again_with_the_new_settings(teacher, corpus, tmp_path):
    first = _general(teacher, corpus, tmp_path / "g")
    with pytest.raises(StaleArtifactError, match=r"general_lr: 5e-05 -> 0\.001"):
        _general(teacher, corpus, tmp_path / "g", overrides={"general_lr": 1e-3})
    rebuilt = _general(teacher, corpus, tmp_path / "g", overrides={"general_lr": 1e-3}, rebuild=True)
    assert rebuilt.train.resumed_from == 0 and rebuilt.train.steps == first.train.steps
    again = _general(teacher, corpus, tmp_path / "g", overrides={"general_lr": 1e-3})
    assert again.train.resumed_from == again.train.steps
    assert all(torch.equal(a, b) for a, b in zip(rebuilt.model.state_dict().values(), again.model.state_dict().values()))


def test_a_changed_upstream_invalidates_the_downstream_stage(tmp_path):
    teacher_ft = tl.load_teacher("minilm").add_classifier(2)
    profile = tl.get_profile("smoke", intermediate_batch_size=8, prediction_batch_size=8, intermediate_epochs=1, dev_limit=8)
    train = tl.data.load_sst2("train", limit=16)

    def step1(seed: int):
        tl.set_seed(seed)  # stands for a general student built again, with other weights
        student = tl.build_student("minilm-3l-192d", teacher=teacher_ft)
        return pipeline.run_task_distillation(profile, tmp_path, "intermediate", "cpu", teacher=teacher_ft, student=student,
                                              train=train)

    assert step1(0).train.resumed_from == 0
    assert step1(0).train.resumed_from > 0  # same upstream: reused
    with pytest.raises(StaleArtifactError, match=r"student: \w{12} -> \w{12}"):
        step1(1)

    # A record written before the profile fields were renamed (task_lr_intermediate, task_batch_size, ...)
    # still matches the same settings under the new names: a renaming alone makes nothing stale.
    import json

    summary_file = pipeline.stage_dir(tmp_path, "intermediate") / "summary.json"
    record = json.loads(summary_file.read_text())
    old_names = {"intermediate_epochs": "task_intermediate_epochs", "intermediate_lr": "task_lr_intermediate",
                 "intermediate_batch_size": "task_batch_size"}
    record["settings"]["profile"] = {old_names.get(k, k): v for k, v in record["settings"]["profile"].items()}
    assert "task_lr_intermediate" in record["settings"]["profile"]
    summary_file.write_text(json.dumps(record))
    assert step1(0).train.resumed_from > 0

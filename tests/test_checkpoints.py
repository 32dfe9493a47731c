"""Checkpoints: safe to load, exact to resume, robust to kills and damage, readable by the group."""

from __future__ import annotations

import os
import shutil
import stat

import pytest
import torch

import tinybert_lib as tl
from tinybert_lib import pipeline
from tinybert_lib.checkpoints import Checkpoint, CheckpointError
from tinybert_lib.training import Interrupted

# 8 blocks in batches of 4: 2 steps per epoch, 2 epochs; dropout on.
TINY = dict(general_batch_size=4, general_epochs=2, log_every=1, max_seq_len_general=32, seed=3)


@pytest.fixture(scope="module")
def corpus(teacher):
    return tl.data.corpus_blocks(teacher.tokenizer, 32, max_blocks=8)


def _student(teacher):
    tl.set_seed(0)
    return tl.build_student("minilm-3l-192d", teacher=teacher)


def _run(teacher, corpus, out, stop_after=None, **overrides):
    """Stage 1 through the pipeline; ``out`` is its folder (``<artifacts>/general_student``)."""
    profile = tl.get_profile("smoke", **{**TINY, **overrides})
    assert out.name == pipeline.stage_dir(out.parent, "general").name
    return pipeline.run_general_distillation(profile, out.parent, "cpu", stop_after, teacher=teacher, student=_student(teacher),
                                             corpus=corpus, valid=corpus)


@pytest.fixture(scope="module")
def finished(teacher, corpus, tmp_path_factory):
    """An uninterrupted run (written under umask 022) and its final weights."""
    out = pipeline.stage_dir(tmp_path_factory.mktemp("finished"), "general")
    old = os.umask(0o022)
    try:
        result = _run(teacher, corpus, out)
    finally:
        os.umask(old)
    return out, result.model.state_dict()


@pytest.fixture(scope="module")
def interrupted(teacher, corpus, tmp_path_factory):
    """A run stopped after step 1 (mid-epoch); tests work on copies of it."""
    out = pipeline.stage_dir(tmp_path_factory.mktemp("interrupted"), "general")
    with pytest.raises(Interrupted):
        _run(teacher, corpus, out, stop_after=1)
    return out


def _copy(folder, tmp_path):
    out = pipeline.stage_dir(tmp_path, "general")
    shutil.copytree(folder, out)
    return out, out / "checkpoint"


@pytest.mark.parametrize("stop_after", [1, 2], ids=["mid-epoch", "epoch-boundary"])
def test_resume_is_bit_identical(teacher, corpus, finished, interrupted, tmp_path, stop_after):
    if stop_after == 1:
        out, _ = _copy(interrupted, tmp_path)
    else:
        out = pipeline.stage_dir(tmp_path, "general")
        with pytest.raises(Interrupted):
            _run(teacher, corpus, out, stop_after=stop_after)
    assert Checkpoint(out / "checkpoint").state()["step"] == stop_after
    resumed = _run(teacher, corpus, out)
    assert resumed.train.resumed_from == stop_after
    reference = finished[1]
    worst = max(float((reference[k] - v).abs().max()) for k, v in resumed.model.state_dict().items())
    assert all(torch.equal(reference[k], v) for k, v in resumed.model.state_dict().items()), \
        f"resumed after step {stop_after}: weights differ by up to {worst:.2e}"


class _Payload:
    """Unpickling this runs code: it creates a file named in ``marker``."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_pickled_payload_in_optim_pt_is_refused_not_run(teacher, corpus, interrupted, tmp_path):
    out, ckpt = _copy(interrupted, tmp_path)
    marker = tmp_path / "payload-ran"
    saved = torch.load(ckpt / "optim.pt", weights_only=True)
    saved["extra"] = _Payload(str(marker))
    torch.save(saved, ckpt / "optim.pt")
    with pytest.raises(CheckpointError, match="optim.pt holds more than tensors"):
        _run(teacher, corpus, out)
    assert not marker.exists(), "the checkpoint's pickled payload ran"


def test_rng_states_round_trip_through_a_safe_checkpoint(tmp_path):
    import random

    import numpy as np

    from tinybert_lib.checkpoints import rng_state, set_rng_state

    model = torch.nn.Linear(2, 2)
    opt = torch.optim.AdamW(model.parameters())
    tl.set_seed(11)
    Checkpoint(tmp_path / "c").save({"m": model}, {"step": 1}, opt)
    expected = (random.random(), float(np.random.rand()), float(torch.rand(1)))
    random.random(), np.random.rand(), torch.rand(1)  # move on
    restore = Checkpoint(tmp_path / "c").load_training_state(torch.optim.AdamW(model.parameters()))
    restore()
    assert (random.random(), float(np.random.rand()), float(torch.rand(1))) == expected
    assert isinstance(rng_state()["python"], list)
    set_rng_state(rng_state())


@pytest.mark.parametrize("name", ["student.safetensors", "optim.pt", "state.json"])
def test_a_truncated_checkpoint_file_is_a_clear_error(teacher, corpus, interrupted, tmp_path, name):
    out, ckpt = _copy(interrupted, tmp_path)
    data = (ckpt / name).read_bytes()
    (ckpt / name).write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=rf"(?s)damaged \({name}.*delete that folder"):
        _run(teacher, corpus, out)


def test_a_damaged_checkpoint_does_not_block_a_finished_stage(teacher, corpus, finished, tmp_path):
    out, ckpt = _copy(finished[0], tmp_path)
    (ckpt / "student.safetensors").write_bytes(b"\0" * 10)
    again = _run(teacher, corpus, out)
    assert again.train.resumed_from == again.train.steps == 4
    assert all(torch.equal(finished[1][k], v) for k, v in again.model.state_dict().items())


def test_a_kill_between_the_two_renames_keeps_the_checkpoint(teacher, corpus, interrupted, tmp_path):
    out, ckpt = _copy(interrupted, tmp_path)
    ckpt.rename(ckpt.with_name(".checkpoint.old"))  # what a kill right after the first rename leaves
    orphan = out / f".checkpoint.tmp-{2 ** 22 + 12345}-deadbeef"  # a temp folder of a killed save
    orphan.mkdir()
    (orphan / "state.json").write_text("{")
    assert _run(teacher, corpus, out).train.resumed_from == 1, "the run restarted instead of resuming at step 1"
    assert not orphan.exists() and not (out / ".checkpoint.old").exists()
    assert not list(out.glob(".*")), "temporary or parked folders left behind"


def test_artifacts_follow_the_umask(finished):
    out = finished[0]
    paths = list(out.rglob("*"))
    assert any(p.suffix == ".safetensors" for p in paths)
    for p in [out, *paths]:
        mode = stat.S_IMODE(p.stat().st_mode)
        assert mode == (0o755 if p.is_dir() else 0o644), f"{p.relative_to(out.parent)}: {oct(mode)}"

"""The same general distillation on one process and on two CPU processes (``accelerate launch``).

The two processes are started with ``accelerate launch --multi_gpu --num_processes 2``: on a
machine without a GPU that starts two CPU processes joined by the gloo backend (through
``torch.distributed.run``). ``accelerate launch --cpu`` with several processes goes through MPI
(``mpirun``), which a plain Python environment does not have.

Two processes each take half of every global batch: they must see different blocks, together
exactly the blocks one process sees, step with the same averaged gradients (those one process
computes on the whole batch) and end with the same weights (dropout off). A two-process run
interrupted after one step and launched again must resume and end in the same place.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

SCRIPT = Path(__file__).parent / "scripts" / "general_distill_run.py"
pytestmark = pytest.mark.skipif(shutil.which("accelerate") is None and not (Path(sys.executable).parent / "accelerate").exists(),
                                reason="accelerate command not installed")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(out: Path, processes: int, *extra: str) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "CUDA_VISIBLE_DEVICES": ""}
    if processes == 1:
        cmd = [sys.executable, str(SCRIPT)]
    else:
        accelerate = shutil.which("accelerate") or str(Path(sys.executable).parent / "accelerate")
        cmd = [accelerate, "launch", "--multi_gpu", "--num_processes", str(processes), "--num_machines", "1",
               "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port()),
               str(SCRIPT)]
    done = subprocess.run(cmd + ["--out", str(out), *extra], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"


def _seen(out: Path, rank: int, attempt: int = 0) -> list[tuple[int, ...]]:
    return [tuple(r) for r in json.loads((out / f"seen_{rank}_{attempt}.json").read_text())["rows"]]


def _grads(out: Path, rank: int, attempt: int = 0) -> list[list[float]]:
    """Per optimiser step: the sum and the norm of each parameter's gradient, as the optimiser applied it."""
    return json.loads((out / f"seen_{rank}_{attempt}.json").read_text())["grads"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("accelerate")
    _run(root / "one", 1)
    _run(root / "two", 2)
    _run(root / "resumed", 2, "--stop-after", "1")
    _run(root / "resumed", 2)
    return root


def test_two_processes_see_different_halves_of_each_batch(runs):
    one, a, b = _seen(runs / "one", 0), _seen(runs / "two", 0), _seen(runs / "two", 1)
    assert len(a) == len(b) == len(one) // 2 > 0
    assert not set(a) & set(b), "both processes trained on the same blocks"
    assert sorted(a + b) == sorted(one), "together the two shards are not the single-process data"
    # batch by batch: process 0 takes the first half of each global batch of 8, process 1 the second
    assert a[:4] + b[:4] == one[:8]


def test_two_processes_step_with_the_same_averaged_gradients(runs):
    """DistributedDataParallel averaged the gradients: at every step both processes apply the same
    gradients, those of the whole global batch. Calling the wrapped modules directly would skip the
    averaging: each process would step with its own half's gradients and the two would drift apart."""
    one, a, b = _grads(runs / "one", 0), _grads(runs / "two", 0), _grads(runs / "two", 1)
    assert len(one) == len(a) == len(b) == 4 and len(a[0]) == len(one[0]) > 0
    for step, (g1, ga, gb) in enumerate(zip(one, a, b), start=1):
        assert ga == pytest.approx(gb, rel=1e-6, abs=1e-9), f"step {step}: the two processes' gradients differ"
        assert ga == pytest.approx(g1, rel=1e-3, abs=1e-6), f"step {step}: not the single process's gradients"
    # the run interrupted after step 1 and resumed: the same on both processes, and the uninterrupted run's
    ra, rb = (_grads(runs / "resumed", rank, 0) + _grads(runs / "resumed", rank, 1) for rank in (0, 1))
    assert len(ra) == len(rb) == 4
    for step, (ga, gb, g2) in enumerate(zip(ra, rb, a), start=1):
        assert ga == pytest.approx(gb, rel=1e-6, abs=1e-9), f"resumed run, step {step}: the processes' gradients differ"
        assert ga == pytest.approx(g2, rel=1e-6, abs=1e-9), f"resumed run, step {step}: not the uninterrupted run's"


def test_two_processes_end_where_one_process_ends(runs):
    w1, w2 = load_file(str(runs / "one" / "student.safetensors")), load_file(str(runs / "two" / "student.safetensors"))
    assert w1.keys() == w2.keys()
    worst = max(float((w1[k] - w2[k]).abs().max()) for k in w1)
    assert worst < 1e-4, f"weights differ by up to {worst:.2e}"
    h1, h2 = (json.loads((runs / r / "history.json").read_text()) for r in ("one", "two"))
    assert [r["step"] for r in h1] == [r["step"] for r in h2] == [1, 2, 3, 4]
    for r1, r2 in zip(h1, h2):  # the logged loss is the mean over both processes
        assert r2["total"] == pytest.approx(r1["total"], rel=1e-4)


def test_two_process_run_resumes_after_an_interruption(runs):
    first = _seen(runs / "resumed", 0, 0) + _seen(runs / "resumed", 1, 0)
    second = _seen(runs / "resumed", 0, 1) + _seen(runs / "resumed", 1, 1)
    assert len(first) == 8 and len(second) == 24  # one step of 8 blocks, then the other three
    assert not set(first) & set(second)
    state = json.loads((runs / "resumed" / "stage" / "general_student" / "checkpoint" / "state.json").read_text())
    assert state["done"] and state["num_processes"] == 2 and state["step"] == 4
    w, ref = load_file(str(runs / "resumed" / "student.safetensors")), load_file(str(runs / "two" / "student.safetensors"))
    worst = max(float((w[k] - ref[k]).abs().max()) for k in ref)
    assert worst < 1e-5, f"resumed weights differ from an uninterrupted run by up to {worst:.2e}"


def test_gradient_accumulation_equals_the_larger_batch(teacher, tmp_path):
    """Two accumulated batches of 4 make one optimiser step equal to one batch of 8."""
    from tinybert_lib import build_student
    from tinybert_lib.data import corpus_blocks
    from tinybert_lib.distill import general_distill
    from tinybert_lib.profiles import get_profile
    from tinybert_lib.runtime import set_seed
    from tinybert_lib.students import _student_config
    from tinybert_lib.training import FitConfig

    corpus = corpus_blocks(teacher.tokenizer, 32, split="train", max_blocks=16)
    weights = []
    for batch, accumulate in ((8, 1), (4, 2)):
        profile = get_profile("smoke", general_batch_size=batch, grad_accum_steps=accumulate, general_lr=1e-3,
                              warmup_ratio=0.0, log_every=1)
        set_seed(profile.seed)
        cfg = _student_config("minilm-3l-192d", teacher)
        cfg.hidden_dropout_prob = cfg.attention_probs_dropout_prob = 0.0
        student = build_student(cfg, teacher=teacher)
        result = general_distill(teacher, student, corpus, FitConfig.for_stage(profile, "general"), device="cpu")
        assert result.train.steps == 2
        weights.append({k: v.detach().clone() for k, v in student.state_dict().items()})
    worst = max(float((weights[0][k] - weights[1][k]).abs().max()) for k in weights[0])
    assert worst < 1e-5, f"accumulated run differs by up to {worst:.2e}"

"""Lesson 09, exercise 5: the check of a hand-written step-1 loop against ``fit``, on tiny models.

The loop under test is the one in solutions/09_task_distillation_solutions.ipynb, read from the
notebook, so the reference solution and this test cannot drift apart; the wrong loops are that same
source with one piece changed (no warm-up; weight decay on biases and LayerNorm weights too).
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
import torch
from datasets import Dataset

import tinybert_lib as tl
from tinybert_lib.bert import Bert, BertConfig
from tinybert_lib.exercises import PROBE, check_step1_loop
from tinybert_lib.training import FitConfig

SOLUTIONS = Path(__file__).resolve().parents[1] / "solutions" / "09_task_distillation_solutions.ipynb"
VOCAB = 60
NO_WARMUP = ("warmup = int(config.warmup_ratio * total)", "warmup = 0")
DECAY_EVERYTHING = ('[{"params": [p for p in params if p.ndim >= 2], "weight_decay": config.weight_decay},\n'
                    '                                   {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]',
                    '[{"params": params, "weight_decay": config.weight_decay}]')


def solution_source() -> str:
    """The source of ``step1_loop`` in the solutions notebook."""
    cells = json.loads(SOLUTIONS.read_text(encoding="utf-8"))["cells"]
    for cell in cells:
        source = "".join(cell["source"])
        if cell["cell_type"] == "code" and "def step1_loop(" in source:
            tree = ast.parse(source)
            node = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "step1_loop")
            return ast.get_source_segment(source, node)
    raise AssertionError(f"{SOLUTIONS.name} defines no step1_loop")


def loop_from(source: str, change: tuple[str, str] | None = None):
    """``step1_loop`` compiled from ``source``, with ``change`` (old, new) made first."""
    if change is not None:
        assert change[0] in source, f"the solution no longer contains {change[0]!r}: update this test's wrong loops"
        source = source.replace(change[0], change[1])
    namespace = {"tl": tl, "torch": torch}
    exec(compile(source, "step1_loop", "exec"), namespace)
    return namespace["step1_loop"]


@pytest.fixture(scope="module")
def setup(teacher):
    """A tiny teacher and student (vocabulary of 60, no dropout of their own), their projections, rows of
    varied lengths, and the packaged teacher's tokenizer for padding."""
    torch.manual_seed(0)
    common = dict(vocab_size=VOCAB, num_attention_heads=4, max_position_embeddings=32)
    tiny_teacher = Bert(BertConfig(hidden_size=16, num_hidden_layers=4, intermediate_size=32, **common)).eval()
    student = Bert(BertConfig(hidden_size=8, num_hidden_layers=2, intermediate_size=16, **common))
    student.tokenizer = tiny_teacher.tokenizer = teacher.tokenizer  # only pads: id 0
    projections = tl.losses.make_projections(8, 16, 2)
    mapping = tl.losses.layer_map(2, 4)

    def rows(n: int, seed: int) -> Dataset:
        g = torch.Generator().manual_seed(seed)
        lengths = torch.randint(3, 20, (n,), generator=g).tolist()
        ids = [[1] + torch.randint(4, VOCAB, (k - 2,), generator=g).tolist() + [2] for k in lengths]
        return Dataset.from_dict({"input_ids": ids, "attention_mask": [[1] * k for k in lengths],
                                  "token_type_ids": [[0] * k for k in lengths], "labels": [0] * n, "length": lengths})

    return tiny_teacher, student, projections, mapping, rows(24, 1), rows(8, 2)


# 2 epochs of 6 batches of 4: 12 steps, warm-up over the first 3; an evaluation every 4 steps (one in each epoch's middle)
CONFIG = FitConfig(epochs=2, lr=1e-2, batch_size=4, seed=7, warmup_ratio=0.25, weight_decay=0.01, max_grad_norm=1.0)


def run_check(loop, setup, capsys) -> tuple[bool, str]:
    teacher, student, projections, mapping, train_rows, dev_rows = setup
    before = {k: v.clone() for k, v in student.state_dict().items()}
    with tl.runtime.one_thread():  # tensors this small only wait for each other on several threads
        passed = check_step1_loop(loop, teacher, student, projections, mapping, train_rows, dev_rows, CONFIG,
                                  eval_every=4)
    assert all(torch.equal(before[k], v) for k, v in student.state_dict().items()), "the check trains copies only"
    return passed, capsys.readouterr().out


def test_the_solutions_loop_passes(setup, capsys):
    passed, out = run_check(loop_from(solution_source()), setup, capsys)
    assert passed, out
    assert "[✓] exercise 5" in out and "12 steps" in out and "(step 12)" in out


def test_a_loop_without_warm_up_fails_at_step_2(setup, capsys):
    passed, out = run_check(loop_from(solution_source(), NO_WARMUP), setup, capsys)
    assert not passed
    assert "[x] exercise 5" in out and "at the course's settings: step 2 is the first that differs" in out, out
    assert "warm-up starts at 0" in out


def test_weight_decay_on_biases_and_layernorm_fails_in_the_probe(setup, capsys):
    passed, out = run_check(loop_from(solution_source(), DECAY_EVERYTHING), setup, capsys)
    assert not passed
    probe = f"with lr {PROBE['lr']:g} and weight decay {PROBE['weight_decay']:g}: step "
    assert probe in out and "is the first that differs" in out, out
    step = int(out.split(probe)[1].split()[0])
    assert step >= 2, out  # the loss of step 1 comes before any update
    assert "p.ndim < 2" in out


def test_evaluations_at_the_wrong_steps_are_named(setup, capsys):
    wrong = ("if step % eval_every == 0:", "if step % eval_every == 1:")
    passed, out = run_check(loop_from(solution_source(), wrong), setup, capsys)
    assert not passed and "your evaluations come after steps [1, 5, 9], expected after every 4-th step: [4, 8, 12]" in out, out


def test_an_unsolved_exercise_says_so_without_training(setup, capsys, monkeypatch):
    def unsolved(*args):
        raise NotImplementedError

    monkeypatch.setattr(tl.training, "fit", lambda **kw: pytest.fail("fit ran for an unsolved exercise"))
    passed, out = run_check(unsolved, setup, capsys)
    assert not passed and "not attempted yet" in out

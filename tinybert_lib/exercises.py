"""Automatic checks for the lessons' exercises.

Lessons: 01-13 (every lesson's exercise checks; lesson 10's paired test has a check of its own here).

A check never raises on a wrong answer: it prints what is wrong and returns False, so a lesson
still runs top to bottom while exercises are unsolved. The reference solutions in
``solutions/`` call the same checks and assert that they pass.
"""

from __future__ import annotations

import copy
from typing import Any, Callable

import torch

# Float32 results of the same computation differ between machines (CPU model, vector units, thread
# count): by about 1e-7 of the values' scale for one operation, up to ~1e-5 after many. The lessons
# therefore compare tensors relative to their scale, with a tolerance far above that noise and far
# below what a real bug changes (a wrong scale, index or mask moves results by 1e-2 or more).
RTOL = 1e-4


def relative_difference(got: Any, expected: Any) -> float:
    """max |got - expected| / max |expected| (0 when both are zero)."""
    got_t, exp_t = torch.as_tensor(got, dtype=torch.float64), torch.as_tensor(expected, dtype=torch.float64)
    diff = (got_t - exp_t).abs().max().item() if exp_t.numel() else 0.0
    scale = exp_t.abs().max().item() if exp_t.numel() else 0.0
    return diff / scale if scale > 0 else diff


def close(got: Any, expected: Any, rtol: float = RTOL) -> bool:
    """True when ``got`` equals ``expected`` up to float32 noise, relative to ``expected``'s scale."""
    got_t, exp_t = torch.as_tensor(got), torch.as_tensor(expected)
    return got_t.shape == exp_t.shape and relative_difference(got_t.detach(), exp_t.detach()) <= rtol


def check(name: str, test: Callable[[], Any]) -> bool:
    """Run ``test`` (which asserts what a correct answer must satisfy) and report pass / not yet."""
    try:
        test()
    except NotImplementedError:
        print(f"[ ] {name}: not attempted yet (replace the `raise NotImplementedError`).")
        return False
    except AssertionError as err:
        print(f"[x] {name}: not yet — {err}")
        return False
    except Exception as err:  # a learner's bug should explain itself, not stop the lesson
        print(f"[x] {name}: your code raised {type(err).__name__}: {err}")
        return False
    print(f"[✓] {name}: passed")
    return True


def assert_close(got: Any, expected: Any, atol: float = 1e-5, what: str = "value") -> None:
    """Assert two numbers or tensors are equal within ``atol``, with a readable message."""
    got_t, exp_t = torch.as_tensor(got, dtype=torch.float64), torch.as_tensor(expected, dtype=torch.float64)
    assert got_t.shape == exp_t.shape, f"{what} has shape {tuple(got_t.shape)}, expected {tuple(exp_t.shape)}"
    diff = (got_t - exp_t).abs().max().item() if got_t.numel() else 0.0
    assert diff <= atol, f"{what} differs from the expected one by {diff:.3g} (tolerance {atol:g})"


def assert_paired_p_value(p_value: Callable[[list[int], list[int]], float],
                          pairs: Any = (), rtol: float = 1e-9) -> None:
    """Lesson 10, exercise 3: ``p_value(correct_a, correct_b)`` must give McNemar's exact two-sided p-value.

    It is compared with ``tl.evaluate.mcnemar`` (relative tolerance ``rtol``) on a few small cases, a larger
    random one and every ``(correct_a, correct_b)`` in ``pairs``. A failure names the case and how far off the
    answer is, and what the likely slip is, never the expected value itself.
    """
    import random

    from .evaluate import mcnemar

    rng = random.Random(10)
    a_big = [int(rng.random() < 0.85) for _ in range(500)]
    b_big = [x if rng.random() < 0.9 else 1 - x for x in a_big]
    cases = [([1, 0, 1, 0], [1, 0, 1, 0]),  # no discordant sentence
             ([1, 1, 1, 0], [0, 0, 0, 0]),
             ([1, 0, 1, 0, 1, 1], [0, 1, 0, 1, 1, 1]),  # b = c
             ([0] * 12 + [1] * 30, [1] * 12 + [1] * 30),
             (a_big, b_big), *pairs]
    for a, b in cases:
        a, b = list(a), list(b)
        only_a, only_b, expected = mcnemar(a, b)
        where = f"for {len(a)} sentences of which {only_a} only model A and {only_b} only model B gets right"
        got = p_value(list(a), list(b))
        assert hasattr(got, "__float__") and not isinstance(got, bool), \
            f"{where}, your function returned {type(got).__name__}; return the p-value alone, a float"
        got = float(got)
        assert 0.0 <= got <= 1.0, f"{where}, your p-value is {got:.4g}: a probability lies in [0, 1] (cap the doubled tail at 1)"
        error = abs(got - expected) / expected
        if error <= rtol:
            continue
        hint = ""
        if abs(2 * got - expected) <= rtol * expected:
            hint = ": exactly half the two-sided value; count both directions (double the smaller tail)"
        elif error < 0.5:
            hint = (": close but not exact; sum the binomial probabilities C(n, k) / 2^n of the smaller tail "
                    "(no chi-square approximation, no continuity correction)")
        raise AssertionError(f"{where}, your p-value is off by a relative {error:.2g} (tolerance {rtol:g}){hint}")


# --- lesson 09, exercise 5: step 1's whole loop, against fit -----------------------------------

#: The second, short run of :func:`check_step1_loop`: a strong weight decay and learning rate, under
#: which decaying a bias or a LayerNorm weight moves the losses by far more than float noise (at the
#: course's 0.01 it moves them by 1e-6 of their scale in 20 smoke steps, 4e-5 in 100 at the cpu profile's
#: learning rate: below any tolerance safe from float noise).
PROBE = {"steps": 8, "lr": 1e-3, "weight_decay": 10.0}


def _copy_without_dropout(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``model`` on the CPU (sharing its tokenizer, which nothing changes) with every dropout
    layer's probability set to 0, so that training mode draws no random number that matters."""
    tokenizer = getattr(model, "tokenizer", None)
    model = copy.deepcopy(model, memo={} if tokenizer is None else {id(tokenizer): tokenizer}).to(torch.device("cpu"))
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    return model


def _first_difference(got: list[float], expected: list[float], rtol: float) -> tuple[int, float] | None:
    """(1-based index, relative difference) of the first value that differs by more than ``rtol`` of
    ``expected``'s scale (its largest magnitude), or None."""
    scale = max((abs(x) for x in expected), default=0.0) or 1.0
    for i, (a, b) in enumerate(zip(got, expected), start=1):
        if not abs(a - b) <= rtol * scale:  # `not <=`: a NaN differs too
            return i, abs(a - b) / scale
    return None


def _step_hint(step: int, total: int) -> str:
    """What a loop that first differs from fit's at ``step`` most likely does otherwise."""
    if step == 1:
        return ("the first batch or its loss differs: the loader (rows, batch size, shuffle, seed + epoch) or the "
                "step-1 loss")
    if step == 2:
        return ("the first update differs: the learning rate of step 1 (the warm-up starts at 0; step the scheduler "
                "after the optimiser), the optimiser or the clipping")
    return ("the updates drift apart: the schedule (warm-up length, linear decay to 0 at the last of the "
            f"{total} steps), the parameter groups and their weight decay, or the clipping")


def check_step1_loop(your_loop: Callable[..., Any], teacher: torch.nn.Module, student: torch.nn.Module,
                     projections: torch.nn.Module, mapping: list[int], train_rows: Any, dev_rows: Any, config: Any,
                     eval_every: int, name: str = "exercise 5: step 1's whole loop", rtol: float = RTOL) -> bool:
    """Lesson 09, exercise 5: run ``your_loop`` and :func:`~tinybert_lib.training.fit` from the same start and compare.

    ``your_loop(teacher, student, projections, mapping, train_rows, dev_rows, config, eval_every)`` trains
    ``student`` and ``projections`` on ``train_rows`` (tokenised) and returns ``(losses, evals)``: the
    training loss of every step and ``(step, dev loss)`` after every ``eval_every``-th step.

    Fair to the loop: each run gets its own copy of ``student``, ``projections`` and ``teacher``, on the CPU
    in float32 (``cpu_bf16`` off), with dropout off (probability 0). ``fit`` puts the modules in training
    mode and puts back the random state that starting a DataLoader draws (``training._epoch_batches``), so
    with dropout on, the masks would depend on where random numbers were drawn, not on whether the loop is
    right. Both runs read the same batches: ``config.loader_for_epoch`` (seed + epoch), which ``fit`` uses.
    ``fit``'s reference evaluations are taken by its loss function, before the batch that follows every
    ``eval_every``-th step (and after ``fit`` for the last step). Then both run again with :data:`PROBE`'s
    settings for one epoch on the first rows (and no evaluation), where weight decay on the wrong
    parameters shows. Losses and evaluations must agree within ``rtol`` of their scale; the message names
    the first step that does not. Prints like :func:`check`, and returns whether the loop passed.
    """
    import dataclasses

    from .distill import distillation_loss_on, layer_distillation_loss
    from .training import fit

    cpu = torch.device("cpu")
    # one batch per step, float32: what a hand-written loop does; log_every=1: fit records every step's loss
    config = dataclasses.replace(config, accumulation_steps=1, cpu_bf16=False, log_every=1)
    mapping = list(mapping)
    start = {"teacher": teacher, "student": student, "projections": projections}
    summary: dict[str, Any] = {}

    def fresh() -> tuple[torch.nn.Module, torch.nn.Module, torch.nn.Module]:
        t, s, p = (_copy_without_dropout(start[k]) for k in ("teacher", "student", "projections"))
        return t.eval(), s, p

    def dev_loss(t, s, p, run_config) -> float:
        return distillation_loss_on(t, s, dev_rows, mapping, p, run_config.batch_size, device=cpu)["total"]

    def fit_run(rows, run_config, every) -> tuple[list[float], list[tuple[int, float]]]:
        t, s, p = fresh()
        step_loss = layer_distillation_loss(t, s, mapping, p)
        evals: list[tuple[int, float]] = []
        batches = [0]

        def loss_fn(batch):  # called once per batch, so once per step: `batches[0]` steps are done
            if batches[0] and batches[0] % every == 0:
                evals.append((batches[0], dev_loss(t, s, p, run_config)))
            batches[0] += 1
            return step_loss(batch)

        torch.manual_seed(run_config.seed)
        result = fit(modules={"student": s, "projections": p}, loss_fn=loss_fn,
                     loader_for_epoch=run_config.loader_for_epoch(rows, s.tokenizer), config=run_config, device=cpu,
                     desc="fit (reference)")
        if result.steps % every == 0:
            evals.append((result.steps, dev_loss(t, s, p, run_config)))
        return [r["total"] for r in result.history], evals

    def compare(rows, run_config, every, where: str) -> None:
        t, s, p = fresh()
        torch.manual_seed(run_config.seed)
        out = your_loop(t, s, p, list(mapping), rows, dev_rows, run_config, every)
        assert isinstance(out, (tuple, list)) and len(out) == 2, \
            f"your loop returned {type(out).__name__}; return a pair (losses, evals)"
        losses = [float(x) for x in out[0]]
        evals = [(int(step), float(value)) for step, value in out[1]]
        expected, expected_evals = fit_run(rows, run_config, every)
        total = len(expected)
        assert len(losses) == total, (f"{where}: your loop took {len(losses)} steps, fit takes {total} "
                                      f"(len(loader) x config.epochs = {total // run_config.epochs} x {run_config.epochs})")
        first = _first_difference(losses, expected, rtol)
        if first is not None:
            step, diff = first
            agree = {1: "no step agrees", 2: "step 1 agrees"}.get(step, f"steps 1-{step - 1} agree")
            raise AssertionError(
                f"{where}: step {step} is the first that differs — your loss {losses[step - 1]:.6g}, fit's "
                f"{expected[step - 1]:.6g}, {diff:.1e} of the losses' scale (tolerance {rtol:g}); {agree}. "
                f"Most likely {_step_hint(step, total)}.")
        steps, expected_steps = [s for s, _ in evals], [s for s, _ in expected_evals]
        assert steps == expected_steps, (f"{where}: your evaluations come after steps {steps}, expected after every "
                                         f"{every}-th step: {expected_steps}")
        first = _first_difference([v for _, v in evals], [v for _, v in expected_evals], rtol)
        if first is not None:
            i, diff = first
            raise AssertionError(
                f"{where}: the evaluation after step {steps[i - 1]} differs — yours {evals[i - 1][1]:.6g}, the dev loss "
                f"of fit's model at that step {expected_evals[i - 1][1]:.6g} ({diff:.1e} of their scale): evaluate "
                "the student and projections being trained, on dev_rows, with distillation_loss_on's total")
        summary.setdefault("main", (losses, evals))

    def test() -> None:
        compare(train_rows, config, eval_every, "at the course's settings")
        probe = dataclasses.replace(config, epochs=1, lr=PROBE["lr"], weight_decay=PROBE["weight_decay"])
        rows = train_rows.select(range(min(len(train_rows), PROBE["steps"] * config.batch_size)))
        try:
            # eval_every beyond the last step: no evaluation (the first run checked them), so the probe costs little
            compare(rows, probe, PROBE["steps"] + 1, f"with lr {PROBE['lr']:g} and weight decay {PROBE['weight_decay']:g}")
        except AssertionError as err:
            raise AssertionError(f"{err} Your loop matched fit at the course's settings: does it read every setting "
                                 "from config, and decay the matrices only (no decay for biases and LayerNorm "
                                 "weights, p.ndim < 2)?") from None

    passed = check(name, test)
    if passed:
        losses, evals = summary["main"]
        print(f"    {len(losses)} steps, loss {losses[0]:.4g} at step 1 and {losses[-1]:.4g} at step {len(losses)}; dev loss "
              + ", ".join(f"{v:.4g} (step {s})" for s, v in evals) + f"; fit's agree within {rtol:g} of their scale")
    return passed

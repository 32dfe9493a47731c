"""Automatic checks for the lessons' exercises.

Lessons: 01-13 (every lesson's exercise checks).

A check never raises on a wrong answer: it prints what is wrong and returns False, so a lesson
still runs top to bottom while exercises are unsolved. The reference solutions in
``solutions/`` call the same checks and assert that they pass.
"""

from __future__ import annotations

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

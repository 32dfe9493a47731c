"""Evaluating a classifier: predictions, accuracy, a task's GLUE metrics, confusion matrix; comparing two
classifiers scored on the same sentences (McNemar's exact test, a paired bootstrap).

Lessons: 07-10.
"""

from __future__ import annotations

import math
from typing import Any, Optional

import numpy as np
import torch
from datasets import Dataset

from .data import make_loader, tokenize_task
from .tasks import Task, get_task, task_metrics
from .training import move


@torch.no_grad()
def predict(model: torch.nn.Module, dataset: Dataset, tokenizer: Any = None, batch_size: int = 64,
            max_length: int = 64, device: Optional[torch.device] = None, task: Task | str = "sst2") -> torch.Tensor:
    """Logits (N, C) of ``model`` on a raw (the task's text columns) or tokenised (``input_ids``) dataset, in order."""
    tokenizer = tokenizer if tokenizer is not None else model.tokenizer
    if "input_ids" not in dataset.column_names:
        dataset = tokenize_task(dataset, task, tokenizer, max_length=max_length)
    device = device if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    logits = [model(**move(batch, device)).logits.float().cpu() for batch in make_loader(dataset, batch_size, tokenizer)]
    model.train(was_training)
    return torch.cat(logits)


def _labels(dataset: Dataset) -> torch.Tensor:
    return torch.tensor(dataset["label"] if "label" in dataset.column_names else dataset["labels"])


def correct_per_example(model: torch.nn.Module, dataset: Dataset, **kwargs: Any) -> torch.Tensor:
    """Per example, in order: True where the arg-max prediction equals the ``label`` (what the paired tests take)."""
    return predict(model, dataset, **kwargs).argmax(-1) == _labels(dataset)


def accuracy(model: torch.nn.Module, dataset: Dataset, **kwargs: Any) -> float:
    """Share of examples whose arg-max prediction equals the ``label``."""
    return correct_per_example(model, dataset, **kwargs).float().mean().item()


def evaluate_task(model: torch.nn.Module, dataset: Dataset, task: Task | str = "sst2", **kwargs: Any) -> dict[str, float]:
    """The task's GLUE metrics of ``model`` on ``dataset`` (``{"f1": ..., "accuracy": ...}`` for MRPC).

    ``kwargs`` go to :func:`predict` (``max_length``, ``batch_size``, ...).
    """
    task = get_task(task)
    predictions = predict(model, dataset, task=task, **kwargs).argmax(-1)
    return task_metrics(task, predictions, _labels(dataset))


def confusion_matrix(model: torch.nn.Module, dataset: Dataset, num_labels: int = 2, **kwargs: Any) -> torch.Tensor:
    """Counts (true label, predicted label)."""
    labels = torch.tensor(dataset["label"])
    preds = predict(model, dataset, **kwargs).argmax(-1)
    cm = torch.zeros(num_labels, num_labels, dtype=torch.long)
    for t, p in zip(labels.tolist(), preds.tolist()):
        cm[t, p] += 1
    return cm


# ---------------------------------------------------------------------------------------------------------------
# Two models scored on the same sentences (lesson 10)
#
# Both tests take each model's per-sentence correctness (1 right, 0 wrong; the same sentences in the same order)
# and ask about the *pair*, sentence by sentence. The unpaired rule of thumb -- each accuracy has a standard error
# SE = sqrt(p(1 - p)/n), so a difference needs more than 2·sqrt(2)·SE -- treats the two accuracies as measured on
# two independent samples of sentences. On one shared dev set they are not: two models agree on most sentences,
# so their errors are strongly correlated, and
#     Var(acc_a - acc_b) = Var(acc_a) + Var(acc_b) - 2 Cov(acc_a, acc_b),
# much smaller than the sum of the variances the unpaired rule assumes. A sentence both models get right (or both
# get wrong) says nothing about which is better; only the discordant sentences do. The unpaired rule therefore
# misses differences the dev set does resolve, and it cannot tell a pair that disagrees on 2% of the sentences
# from one that disagrees on 20%.
# Neither test measures seed noise: they compare two *trained models*; whether retraining (another seed) keeps
# the order is the other question, answered by the spread over seeds (``tl.ablations.compare``).


def _as_correct(values: Any, name: str) -> list[int]:
    """0/1 per sentence from a list, tuple, array, tensor or a string of '0'/'1' (as results records store it)."""
    if isinstance(values, str):
        items: list[Any] = list(values)
    elif isinstance(values, torch.Tensor):
        items = values.detach().flatten().tolist()
    else:
        items = list(np.asarray(values).reshape(-1).tolist())
    out = []
    for v in items:
        if v in ("0", "1") or (isinstance(v, (bool, int, float)) and v in (0, 1)):
            out.append(int(v))
        else:
            raise ValueError(f"{name} must hold one 0/1 (or False/True) per sentence: 1 where that model is right; "
                             f"got {v!r} (accuracies, logits or labels instead of per-sentence correctness?)")
    return out


def _paired(correct_a: Any, correct_b: Any) -> tuple[list[int], list[int]]:
    a, b = _as_correct(correct_a, "correct_a"), _as_correct(correct_b, "correct_b")
    if len(a) != len(b):
        raise ValueError(f"correct_a has {len(a)} sentences and correct_b {len(b)}: a paired test compares two models "
                         "on the same sentences, in the same order; score both on one dev set")
    if not a:
        raise ValueError("no sentences: give each model's per-sentence correctness (one 0/1 per dev sentence)")
    return a, b


def mcnemar(correct_a: Any, correct_b: Any) -> tuple[int, int, float]:
    """McNemar's exact test: do two models scored on the same sentences differ in accuracy?

    ``correct_a``, ``correct_b``: per sentence, 1 (or True) where that model is right, 0 where it is wrong; the
    same sentences in the same order (lists, tuples, arrays, tensors, or a string such as ``"0110"``).

    Returns ``(b, c, p_value)``: ``b`` sentences that only model A gets right, ``c`` that only model B gets right,
    and the exact two-sided p-value. If the two models were equally accurate, each of the ``n = b + c`` discordant
    sentences would be a fair coin (b ~ Binomial(n, 1/2)), so

        p = min(1, 2 · sum_{k=0}^{min(b, c)} C(n, k) / 2^n)

    computed exactly with integers (no scipy; equal to ``scipy.stats.binomtest(b, n, 0.5).pvalue``); p = 1 when
    the models never disagree. Sentences both models get right or both get wrong carry no information about which
    is better and do not enter at all.

    Use it for a yes/no verdict on accuracy (the p-value), exact at any size. Use :func:`paired_bootstrap` for
    *how large* the difference is (an interval) or for a metric other than accuracy. Do not use the unpaired
    rule 2·sqrt(2)·SE for two models on the same sentences: it ignores that they agree on most of them (see the
    note above this function), so it asks for a difference several times larger than the dev set can resolve
    when the two models agree closely. Neither test covers seed noise: pair it with the spread over seeds.
    """
    a, b_ = _paired(correct_a, correct_b)
    b = sum(1 for x, y in zip(a, b_) if x and not y)
    c = sum(1 for x, y in zip(a, b_) if y and not x)
    n = b + c
    if n == 0:
        return b, c, 1.0
    tail = sum(math.comb(n, k) for k in range(min(b, c) + 1))  # exact integer
    return b, c, min(1.0, 2 * tail / 2 ** n)  # int / int: correctly rounded, even for a huge n


def paired_bootstrap(correct_a: Any, correct_b: Any, n: int = 10000, seed: int = 0) -> tuple[float, tuple[float, float]]:
    """The accuracy difference of two models on the same sentences, with a 95% interval from resampling sentences.

    ``correct_a``, ``correct_b``: per-sentence 0/1 correctness of each model, the same sentences in the same order
    (as for :func:`mcnemar`). Returns ``(acc_a - acc_b, (low, high))``: the observed difference and the 2.5% and
    97.5% percentiles of the difference over ``n`` bootstrap samples of the dev set, each drawn sentence by
    sentence with replacement (a sentence keeps *both* models' answers: that is what makes it paired), from a
    generator seeded with ``seed`` (the same inputs and seed give the same interval).

    Each sentence contributes -1, 0 or +1 to the difference, so a resample is fully described by how many of each
    kind it drew: the draws are multinomial counts, the same distribution as resampling indices, at a fraction
    of the cost.

    Use it for the *size* of a difference, with its uncertainty from the choice of sentences; it extends to any
    per-sentence metric. For a p-value on accuracy, :func:`mcnemar` is exact. An interval that excludes 0 says
    the dev set resolves the difference; like McNemar it says nothing about seed noise. The unpaired
    2·sqrt(2)·SE rule is wrong for this case: it ignores that the two models agree on most sentences, so its
    interval is far wider than this one.
    """
    a, b = _paired(correct_a, correct_b)
    if n < 1:
        raise ValueError(f"n = {n}: draw at least one bootstrap sample (10,000 is usual)")
    size = len(a)
    only_a = sum(1 for x, y in zip(a, b) if x and not y)
    only_b = sum(1 for x, y in zip(a, b) if y and not x)
    diff = (only_a - only_b) / size
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(size, np.array([only_b, size - only_a - only_b, only_a]) / size, size=n)
    diffs = (counts[:, 2] - counts[:, 0]) / size
    low, high = np.quantile(diffs, [0.025, 0.975])
    return diff, (float(low), float(high))

"""Evaluating a classifier: predictions, accuracy, a task's GLUE metrics, confusion matrix.

Lessons: 07-09.
"""

from __future__ import annotations

from typing import Any, Optional

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


def accuracy(model: torch.nn.Module, dataset: Dataset, **kwargs: Any) -> float:
    """Share of examples whose arg-max prediction equals the ``label``."""
    return (predict(model, dataset, **kwargs).argmax(-1) == _labels(dataset)).float().mean().item()


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

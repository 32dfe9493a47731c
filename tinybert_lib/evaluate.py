"""Evaluating a classifier: predictions, accuracy, confusion matrix."""

from __future__ import annotations

from typing import Any, Optional

import torch
from datasets import Dataset

from .data import make_loader, tokenize_sst2
from .training import move


@torch.no_grad()
def predict(model: torch.nn.Module, dataset: Dataset, tokenizer: Any = None, batch_size: int = 64,
            max_length: int = 64, device: Optional[torch.device] = None) -> torch.Tensor:
    """Logits (N, C) of ``model`` on a raw (``sentence``) or tokenised (``input_ids``) dataset, in order."""
    tokenizer = tokenizer if tokenizer is not None else model.tokenizer
    if "input_ids" not in dataset.column_names:
        dataset = tokenize_sst2(dataset, tokenizer, max_length=max_length)
    device = device if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    logits = [model(**move(batch, device)).logits.float().cpu() for batch in make_loader(dataset, batch_size, tokenizer)]
    model.train(was_training)
    return torch.cat(logits)


def accuracy(model: torch.nn.Module, dataset: Dataset, **kwargs: Any) -> float:
    """Share of examples whose arg-max prediction equals the ``label``."""
    labels = torch.tensor(dataset["label"] if "label" in dataset.column_names else dataset["labels"])
    return (predict(model, dataset, **kwargs).argmax(-1) == labels).float().mean().item()


def confusion_matrix(model: torch.nn.Module, dataset: Dataset, num_labels: int = 2, **kwargs: Any) -> torch.Tensor:
    """Counts (true label, predicted label)."""
    labels = torch.tensor(dataset["label"])
    preds = predict(model, dataset, **kwargs).argmax(-1)
    cm = torch.zeros(num_labels, num_labels, dtype=torch.long)
    for t, p in zip(labels.tolist(), preds.tolist()):
        cm[t, p] += 1
    return cm

"""TinyBERT's two stages, and teacher fine-tuning, as calls on the shared training loop.

Lessons: 06-07, 09-11.

This module is the algorithm and nothing else: each stage is one function that takes models,
data and a :class:`~tinybert_lib.training.FitConfig`, and returns the trained model. None of them
knows a folder or a profile; :mod:`~tinybert_lib.pipeline` reads a profile, keeps the artifacts
and decides what is done.

- ``general_distill`` (stage 1): Transformer-layer distillation (embedding + hidden + attention
  losses through the layer mapping) of a randomly initialised student from a *pre-trained*
  teacher on unlabeled text. No prediction layer.
- ``finetune_teacher``: the teacher learns the task with ordinary cross-entropy.
- ``intermediate_distill`` (stage 2, step 1): the same layer losses against the *fine-tuned*
  teacher on the (augmented) task data, starting from the general student.
- ``prediction_distill`` (stage 2, step 2): soft cross-entropy against the teacher's logits at
  temperature t, keeping the epoch with the best dev score (the task's main metric), as the
  original implementation does.

The teacher always runs in eval mode under ``torch.no_grad()``: it is a fixed target, so it
needs neither dropout nor an autograd graph (the original code leaves its dropout on).

Each stage passes ``checkpoint_dir``, ``settings`` and ``stop_after`` to :func:`~tinybert_lib.training.fit`
unchanged: where to keep a resumable checkpoint, what the run is checked against when it resumes,
and a stand-in for a kill.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import torch
from datasets import Dataset
from torch import nn
from torch.profiler import record_function

from .bert import Bert
from .data import make_loader, tokenize_task
from .evaluate import evaluate_task
from .losses import layer_map, make_projections, prediction_loss, transformer_loss
from .runtime import set_seed
from .tasks import Task, get_task
from .training import FitConfig, TrainResult, fit, move

MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


@dataclass
class StageResult:
    """A finished stage: the trained model (and projections), its curves and its scores."""

    model: Bert
    train: TrainResult
    projections: Optional[nn.ModuleList] = None
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def history(self) -> list[dict[str, float]]:
        return self.train.history


def _inputs(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: batch[k] for k in MODEL_INPUTS if k in batch}


# --- the losses a batch gives ---------------------------------------------------------------


def layer_distillation_loss(teacher: Bert, student: Bert, mapping: Sequence[int], projections: nn.ModuleList,
                            weights: tuple[float, float, float] = (1.0, 1.0, 1.0), attention_kind: str = "mse"):
    """The per-batch Transformer-layer loss (``transformer_loss``) of ``student`` against ``teacher``.

    The teacher runs under ``torch.no_grad()`` and only up to the last teacher layer the mapping
    reads, without its pooler and head: the loss uses nothing beyond. On a batch that is mostly
    padding its linear maps run on the real tokens only (``Bert.forward(skip_padding=True)``):
    the masked losses never read padded positions ("mse_original" does, so it keeps the full pass).
    """
    last = max(mapping)
    may_skip_padding = attention_kind != "mse_original"

    def loss_fn(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        # Packing the real tokens costs a few copies per layer: worth it once a fifth of the batch is padding.
        skip = may_skip_padding and float(batch["attention_mask"].float().mean()) < 0.8
        # record_function: the phases bench.profile_step reports (free when no profiler runs)
        with torch.no_grad(), record_function("teacher forward"):  # a fixed target: no graph, no gradients
            t = teacher(**_inputs(batch), num_layers=last, skip_padding=skip)
        with record_function("student forward"):
            s = student(**_inputs(batch))
        with record_function("losses"):
            return transformer_loss(s, t, mapping, projections, attention_mask=batch["attention_mask"],
                                    weights=weights, attention_kind=attention_kind)

    return loss_fn


def prediction_distillation_loss(teacher: Bert, student: Bert, temperature: float = 1.0):
    """The per-batch loss of step 2 (``prediction_loss``): soft cross-entropy of ``student``'s
    logits against ``teacher``'s at ``temperature``; the teacher runs under ``torch.no_grad()``."""

    def loss_fn(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        with torch.no_grad():  # a fixed target, as in step 1
            t_logits = teacher(**_inputs(batch)).logits
        return {"total": prediction_loss(student(**_inputs(batch)).logits, t_logits, temperature)}

    return loss_fn


def gold_label_loss(model: Bert):
    """The per-batch loss of ordinary fine-tuning: cross-entropy against the gold labels."""

    def loss_fn(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        logits = model(**_inputs(batch)).logits
        return {"total": nn.functional.cross_entropy(logits.float(), batch["labels"])}

    return loss_fn


@torch.no_grad()
def distillation_loss_on(teacher: Bert, student: Bert, dataset: Dataset, mapping: Sequence[int], projections: nn.ModuleList,
                         batch_size: int = 32, attention_kind: str = "mse", device: Optional[torch.device] = None) -> dict[str, float]:
    """Mean Transformer-layer loss components of ``student`` on held-out ``dataset`` (tokenised)."""
    device = device or next(student.parameters()).device
    was = student.training
    student.eval()
    teacher.eval()
    totals: dict[str, float] = {}
    n = 0
    for batch in make_loader(dataset, batch_size, student.tokenizer):
        batch = move(batch, device)
        t, s = teacher(**_inputs(batch)), student(**_inputs(batch))
        losses = transformer_loss(s, t, mapping, projections, attention_mask=batch["attention_mask"], attention_kind=attention_kind)
        for k, v in losses.items():
            totals[k] = totals.get(k, 0.0) + float(v) * len(batch["input_ids"])
        n += len(batch["input_ids"])
    student.train(was)
    return {k: v / max(n, 1) for k, v in totals.items()}


def _dev_metrics(model: Bert, dev_raw: Dataset, task: Task | str, length: int) -> dict[str, float]:
    """The task's metrics on dev, as ``{"dev_<metric>": value}`` (main metric first)."""
    return {f"dev_{k}": v for k, v in evaluate_task(model, dev_raw, get_task(task), max_length=length).items()}


def _with_head(student: Bert, teacher: Bert) -> None:
    """Give ``student`` a fresh classification head like the teacher's, if it has none."""
    if student.config.num_labels == 0:
        student.add_classifier(teacher.config.num_labels, pooling=teacher.config.classifier_pooling,
                               label_names=teacher.config.label_names)


def _check_task_teacher(teacher: Bert, task: Task) -> None:
    if teacher.config.num_labels == 0:
        raise ValueError("task distillation needs a fine-tuned teacher with a classification head: "
                         "run finetune_teacher first (lesson 07).")
    if teacher.config.num_labels != task.num_labels:
        raise ValueError(f"the teacher's head has {teacher.config.num_labels} classes, task {task.name!r} has "
                         f"{task.num_labels} ({', '.join(task.label_names)}): fine-tune a teacher on {task.display} first "
                         f"(tl.pipeline.run_teacher_finetuning with the profile's task set to {task.name!r}, lesson 07).")


def _layer_targets(teacher: Bert, student: Bert, mapping: Optional[Sequence[int]], projections: Optional[nn.ModuleList],
                   device: torch.device) -> tuple[list[int], nn.ModuleList]:
    """The layer mapping (uniform unless given) and the projections W_e / W_h^(m) (fresh unless given), on ``device``."""
    mapping = list(mapping) if mapping is not None else layer_map(student.config.num_hidden_layers, teacher.config.num_hidden_layers)
    if projections is None:
        projections = make_projections(student.config.hidden_size, teacher.config.hidden_size, student.config.num_hidden_layers)
    return mapping, projections.to(device)


def _start_task_step(teacher: Bert, student: Bert, train: Dataset, task: Task | str, config: FitConfig, max_length: int,
                     device: torch.device | str) -> tuple[Task, torch.device, Dataset]:
    """What both steps of stage 2 do first: check the teacher, seed, give the student a head, tokenize the rows."""
    task = get_task(task)
    _check_task_teacher(teacher, task)
    set_seed(config.seed)  # a fresh head's weights and the dropout masks
    device = torch.device(device)
    teacher.to(device).eval()
    _with_head(student, teacher)
    student.to(device)
    return task, device, tokenize_task(train, task, student.tokenizer, max_length)


# --- stage 1 --------------------------------------------------------------------------------


def general_distill(
    teacher: Bert,
    student: Bert,
    corpus: Dataset,
    config: FitConfig,
    *,
    mapping: Optional[Sequence[int]] = None,
    projections: Optional[nn.ModuleList] = None,
    weights: tuple[float, float, float] = (1.0, 1.0, 1.0),
    attention_kind: str = "mse",
    valid: Optional[Dataset] = None,
    device: torch.device | str = "cpu",
    checkpoint_dir: Optional[str | Path] = None,
    settings: Optional[dict[str, Any]] = None,
    stop_after: Optional[int] = None,
) -> StageResult:
    """Stage 1: Transformer-layer distillation on unlabeled text blocks (``data.corpus_blocks``).

    L = Σ_m λ·L_layer(S_m, T_g(m)) with L_emb at m = 0 and L_hid + L_att for m = 1..M, the uniform
    mapping by default, through fresh projections W_e / W_h^(m) unless ``projections`` are given.
    ``valid``: optional held-out blocks on which the final loss is reported (``valid_*`` metrics).
    """
    set_seed(config.seed)  # the projections' initial weights and the dropout masks
    device = torch.device(device)
    teacher.to(device).eval()
    mapping, projections = _layer_targets(teacher, student, mapping, projections, device)
    loss_fn = layer_distillation_loss(teacher, student, mapping, projections, weights, attention_kind)
    train = fit(modules={"student": student, "projections": projections}, loss_fn=loss_fn,
                loader_for_epoch=config.loader_for_epoch(corpus, student.tokenizer, group_by_length=False),
                config=config, device=device, checkpoint_dir=checkpoint_dir, desc="general distillation",
                stop_after=stop_after, settings=settings)
    result = StageResult(student, train, projections)
    student.eval()
    if valid is not None:
        result.metrics.update({f"valid_{k}": v for k, v in distillation_loss_on(
            teacher, student, valid, mapping, projections, config.batch_size, attention_kind, device).items()})
    return result


# --- teacher fine-tuning --------------------------------------------------------------------


def finetune_teacher(
    teacher: Bert,
    train: Dataset,
    dev: Dataset,
    task: Task | str,
    config: FitConfig,
    *,
    max_length: int = 64,
    pooling: str = "cls",
    device: torch.device | str = "cpu",
    checkpoint_dir: Optional[str | Path] = None,
    settings: Optional[dict[str, Any]] = None,
    stop_after: Optional[int] = None,
) -> StageResult:
    """Fine-tune the teacher on ``task``'s ``train`` rows with cross-entropy; score ``dev`` each epoch.

    ``train``/``dev``: the task's text columns and ``label``. A teacher without a head gets one of
    the task's classes, named by its labels, pooled by ``pooling`` (``"cls"`` or ``"mean"``).
    """
    task = get_task(task)
    set_seed(config.seed)  # the new head's weights and the dropout masks
    device = torch.device(device)
    if teacher.config.num_labels == 0:
        teacher.add_classifier(task.num_labels, pooling=pooling, label_names=task.label_names)
    tok = teacher.tokenizer
    train_set = tokenize_task(train, task, tok, max_length)

    def evaluate() -> dict[str, float]:
        return _dev_metrics(teacher, dev, task, max_length)

    run = fit(modules={"teacher": teacher}, loss_fn=gold_label_loss(teacher), loader_for_epoch=config.loader_for_epoch(train_set, tok),
              config=config, device=device, checkpoint_dir=checkpoint_dir, eval_fn=evaluate,
              desc="teacher fine-tuning", stop_after=stop_after, settings=settings)
    teacher.eval()
    scores = ({k: run.evals[-1][k] for k in run.evals[-1] if k.startswith("dev_")} if run.evals else evaluate())
    return StageResult(teacher, run, metrics=scores)


# --- stage 2 --------------------------------------------------------------------------------


def intermediate_distill(
    teacher: Bert,
    student: Bert,
    train: Dataset,
    dev: Dataset,
    task: Task | str,
    config: FitConfig,
    *,
    max_length: int = 64,
    mapping: Optional[Sequence[int]] = None,
    projections: Optional[nn.ModuleList] = None,
    weights: tuple[float, float, float] = (1.0, 1.0, 1.0),
    attention_kind: str = "mse",
    device: torch.device | str = "cpu",
    checkpoint_dir: Optional[str | Path] = None,
    settings: Optional[dict[str, Any]] = None,
    stop_after: Optional[int] = None,
) -> StageResult:
    """Stage 2, step 1: emb + hid + att losses against the fine-tuned ``teacher`` on task rows
    (augmented or not), from the general student and its ``projections``.

    The student gets a fresh classification head like the teacher's, for step 2 (it has no loss here).
    Reports the held-out distillation loss on ``dev`` (``dev_*`` metrics).
    """
    task, device, train_tok = _start_task_step(teacher, student, train, task, config, max_length, device)
    tok = student.tokenizer
    mapping, projections = _layer_targets(teacher, student, mapping, projections, device)
    loss_fn = layer_distillation_loss(teacher, student, mapping, projections, weights, attention_kind)
    run = fit(modules={"student": student, "projections": projections}, loss_fn=loss_fn,
              loader_for_epoch=config.loader_for_epoch(train_tok, tok), config=config, device=device,
              checkpoint_dir=checkpoint_dir, desc="task distillation (intermediate)", stop_after=stop_after, settings=settings)
    student.eval()
    result = StageResult(student, run, projections)
    dev_tok = tokenize_task(dev, task, tok, max_length)
    result.metrics.update({f"dev_{k}": v for k, v in distillation_loss_on(
        teacher, student, dev_tok, mapping, projections, config.batch_size, attention_kind, device).items()})
    return result


def prediction_distill(
    teacher: Bert,
    student: Bert,
    train: Dataset,
    dev: Dataset,
    task: Task | str,
    config: FitConfig,
    *,
    max_length: int = 64,
    temperature: float = 1.0,
    keep_best_epoch: bool = True,
    on_kept: Optional[Callable[[Bert], None]] = None,
    device: torch.device | str = "cpu",
    checkpoint_dir: Optional[str | Path] = None,
    settings: Optional[dict[str, Any]] = None,
    stop_after: Optional[int] = None,
) -> StageResult:
    """Stage 2, step 2: soft cross-entropy between the student's and the teacher's logits at
    ``temperature`` (gold labels are never used), from step 1's student.

    Scores ``dev`` each epoch and keeps the epoch best at the task's main metric
    (``keep_best_epoch=False``: the last epoch, as a comparison that scores on the same dev rows
    must); ``on_kept(student)`` runs whenever an epoch becomes the kept one (the pipeline saves it).
    """
    task, device, train_tok = _start_task_step(teacher, student, train, task, config, max_length, device)
    tok = student.tokenizer
    main = f"dev_{task.main_metric}"
    best: dict[str, Any] = {"score": float("-inf"), "state": None}

    def evaluate() -> dict[str, float]:
        scores = _dev_metrics(student, dev, task, max_length)
        if scores[main] > best["score"] or not keep_best_epoch:  # the best epoch, as the original does
            best["score"] = scores[main]
            best["state"] = {k: v.detach().cpu().clone() for k, v in student.state_dict().items()}
            if on_kept is not None:
                on_kept(student)
        return scores

    run = fit(modules={"student": student}, loss_fn=prediction_distillation_loss(teacher, student, temperature),
              loader_for_epoch=config.loader_for_epoch(train_tok, tok), config=config, device=device,
              checkpoint_dir=checkpoint_dir, eval_fn=evaluate, desc="task distillation (prediction)",
              stop_after=stop_after, settings=settings)
    if best["state"] is not None:
        student.load_state_dict(best["state"])
    student.eval()
    result = StageResult(student, run)
    epochs_scores = [{k: v for k, v in e.items() if k.startswith("dev_")} for e in run.evals]
    epochs_scores = epochs_scores or [_dev_metrics(student, dev, task, max_length)]
    # the kept epoch's scores: the first best at the main metric, as evaluate() kept it
    kept = max(epochs_scores, key=lambda e: e[main]) if keep_best_epoch else epochs_scores[-1]
    result.metrics.update(kept)
    result.metrics[f"last_epoch_{main}"] = epochs_scores[-1][main]
    return result

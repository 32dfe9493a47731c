"""TinyBERT's two stages, and teacher fine-tuning, as calls on the shared training loop.

Stage 1, ``general_distill``: Transformer-layer distillation (embedding + hidden + attention
losses through the layer mapping) of a randomly initialised student from a *pre-trained*
teacher on unlabeled text. No prediction layer.

``finetune_teacher``: the teacher learns the task (SST-2) with ordinary cross-entropy.

Stage 2, ``task_distill``: from the general student and the *fine-tuned* teacher on the
(augmented) task data — step 1 ``stage="intermediate"`` (emb + hid + att again), then step 2
``stage="prediction"`` (soft cross-entropy against the teacher's logits at temperature t),
keeping the epoch with the best dev accuracy as the original implementation does.

The teacher always runs in eval mode under ``torch.no_grad()``: it is a fixed target, so it
needs neither dropout nor an autograd graph (the original code leaves its dropout on).
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import torch
from datasets import Dataset
from safetensors.torch import load_file, save_file
from torch import nn
from torch.profiler import record_function

from .bert import Bert
from .data import load_sst2, make_loader, tokenize_sst2
from .evaluate import accuracy
from .export import export_hf
from .losses import layer_map, make_projections, prediction_loss, transformer_loss
from .profiles import Profile, get_profile
from .runtime import is_main_process, pick_device, set_seed, wait_for_everyone
from .training import TrainResult, dedupe_tensors, fit, move

log = logging.getLogger(__name__)
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


def _prepare(profile: Profile | str, device: Optional[str]) -> tuple[Profile, torch.device]:
    profile = get_profile(profile)
    set_seed(profile.seed)
    return profile, pick_device(device or profile.device)


def _dir(out_dir: Optional[str | Path], sub: str) -> Optional[Path]:
    return Path(out_dir) / sub if out_dir is not None else None


def save_projections(projections: nn.ModuleList, path: str | Path) -> None:
    """Write the projections W_e / W_h as safetensors (atomically)."""
    path = Path(path)
    # A shared projection is stored once (load_projections refills the other indices).
    tensors = {k: v.detach().cpu().contiguous() for k, v in dedupe_tensors(projections.state_dict()).items()}
    tmp = path.with_name(f".{path.name}.tmp")
    save_file(tensors, str(tmp))
    os.replace(tmp, path)


def load_projections(path: str | Path, student_width: int, teacher_width: int, num_student_layers: int) -> nn.ModuleList:
    """Read projections written by :func:`save_projections`."""
    tensors = load_file(str(path))
    shared = "1.linear.weight" not in tensors and num_student_layers > 0
    projections = make_projections(student_width, teacher_width, num_student_layers, shared=shared)
    full = {k: tensors[k] if k in tensors else tensors[f"0.{k.split('.', 1)[1]}"] for k in projections.state_dict()}
    projections.load_state_dict(full)
    return projections


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


def _finished_before(out_dir: Optional[Path], train: TrainResult) -> bool:
    """True when ``fit`` found this stage already finished and its outputs are on disk."""
    return (out_dir is not None and train.resumed_from > 0 and train.resumed_from == train.steps
            and (out_dir / "summary.json").is_file() and (out_dir / "model" / "config.json").is_file())


def _reuse_summary(out_dir: Path, result: StageResult) -> StageResult:
    """Fill a reloaded stage's metrics from its summary instead of re-exporting it."""
    result.metrics = json.loads((out_dir / "summary.json").read_text()).get("metrics", {})
    result.model.eval()
    log.info("%s was already finished: reusing its outputs", out_dir)
    return result


def _write_summary(out_dir: Optional[Path], name: str, result: StageResult, extra: dict[str, Any]) -> None:
    if out_dir is None:
        return
    summary = {"stage": name, "steps": result.train.steps, "seconds": round(result.train.seconds, 1),
               "metrics": result.metrics, "evals": result.train.evals, **extra}
    tmp = out_dir / ".summary.json.tmp"
    tmp.write_text(json.dumps(summary, indent=1))
    os.replace(tmp, out_dir / "summary.json")


def _layer_distillation(teacher: Bert, student: Bert, mapping: Optional[Sequence[int]], projections: Optional[nn.ModuleList],
                        weights: tuple[float, float, float], attention_kind: str, device: torch.device):
    """Mapping, projections and the per-batch Transformer-layer loss shared by stage 1 and step 1."""
    mapping = list(mapping) if mapping is not None else layer_map(student.config.num_hidden_layers, teacher.config.num_hidden_layers)
    if projections is None:
        projections = make_projections(student.config.hidden_size, teacher.config.hidden_size, student.config.num_hidden_layers)
    projections.to(device)
    return mapping, projections, layer_distillation_loss(teacher, student, mapping, projections, weights, attention_kind)


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


# --- stage 1 --------------------------------------------------------------------------------


def general_distill(
    teacher: Bert,
    student: Bert,
    corpus: Dataset,
    profile: Profile | str,
    *,
    out_dir: Optional[str | Path] = None,
    mapping: Optional[Sequence[int]] = None,
    projections: Optional[nn.ModuleList] = None,
    weights: tuple[float, float, float] = (1.0, 1.0, 1.0),
    attention_kind: str = "mse",
    valid: Optional[Dataset] = None,
    device: Optional[str] = None,
    stop_after: Optional[int] = None,
) -> StageResult:
    """Stage 1: Transformer-layer distillation on unlabeled text blocks (``data.corpus_blocks``).

    L = Σ_m λ·L_layer(S_m, T_g(m)) with L_emb at m = 0 and L_hid + L_att for m = 1..M, the uniform
    mapping by default. ``out_dir`` holds a resumable checkpoint, the final student
    (``model/``, a Hugging Face folder) and its projections (``projections.safetensors``).
    ``valid``: optional held-out blocks on which the final loss is reported.
    """
    profile, dev = _prepare(profile, device)
    out = Path(out_dir) if out_dir is not None else None
    teacher.to(dev).eval()
    mapping, projections, loss_fn = _layer_distillation(teacher, student, mapping, projections, weights, attention_kind, dev)

    def loader(epoch: int):
        return make_loader(corpus, profile.general_batch_size, student.tokenizer, shuffle=True,
                           seed=profile.seed + epoch, group_by_length=False)

    train = fit(modules={"student": student, "projections": projections}, loss_fn=loss_fn, loader_for_epoch=loader,
                epochs=profile.general_epochs, lr=profile.general_lr, device=dev, warmup_ratio=profile.warmup_ratio,
                weight_decay=profile.weight_decay, max_grad_norm=profile.max_grad_norm,
                accumulation_steps=profile.grad_accum_steps, checkpoint_dir=_dir(out, "checkpoint"),
                log_every=profile.log_every, desc="general distillation",
                stop_after=stop_after)
    result = StageResult(student, train, projections)
    if _finished_before(out, train):
        return _reuse_summary(out, result)
    student.eval()
    if valid is not None:
        result.metrics.update({f"valid_{k}": v for k, v in distillation_loss_on(
            teacher, student, valid, mapping, projections, profile.general_batch_size, attention_kind, dev).items()})
    if out is not None and is_main_process():
        export_hf(student, student.tokenizer, out / "model")
        save_projections(projections, out / "projections.safetensors")
        _write_summary(out, "general distillation", result, {"mapping": mapping, "weights": list(weights)})
    wait_for_everyone()
    return result


# --- teacher fine-tuning --------------------------------------------------------------------


def _task_splits(profile: Profile, sst2: Any) -> tuple[Dataset, Dataset]:
    if sst2 is None:
        return load_sst2("train", limit=profile.sst2_train_limit), load_sst2("dev", limit=profile.sst2_dev_limit)
    return sst2["train"], sst2["dev"]


def gold_label_loss(model: Bert):
    """The per-batch loss of ordinary fine-tuning: cross-entropy against the gold labels."""

    def loss_fn(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        logits = model(**_inputs(batch)).logits
        return {"total": nn.functional.cross_entropy(logits.float(), batch["labels"])}

    return loss_fn


def finetune_teacher(
    teacher: Bert,
    sst2: Any = None,
    profile: Profile | str = "smoke",
    *,
    out_dir: Optional[str | Path] = None,
    num_labels: int = 2,
    device: Optional[str] = None,
    stop_after: Optional[int] = None,
) -> StageResult:
    """Fine-tune the teacher on SST-2 train with cross-entropy; report dev accuracy each epoch.

    ``sst2``: a mapping with ``"train"`` and ``"dev"`` datasets (``sentence``, ``label``), or
    ``None`` to load them with the profile's limits. A teacher without a head gets one.
    """
    profile, dev = _prepare(profile, device)
    out = Path(out_dir) if out_dir is not None else None
    train_raw, dev_raw = _task_splits(profile, sst2)
    if teacher.config.num_labels == 0:
        teacher.add_classifier(num_labels)
    tok = teacher.tokenizer
    train_set = tokenize_sst2(train_raw, tok, profile.max_seq_len_task)

    loss_fn = gold_label_loss(teacher)

    def loader(epoch: int):
        return make_loader(train_set, profile.finetune_batch_size, tok, shuffle=True, seed=profile.seed + epoch)

    def evaluate() -> dict[str, float]:
        return {"dev_accuracy": accuracy(teacher, dev_raw, max_length=profile.max_seq_len_task)}

    train = fit(modules={"teacher": teacher}, loss_fn=loss_fn, loader_for_epoch=loader, epochs=profile.finetune_epochs,
                lr=profile.finetune_lr, device=dev, warmup_ratio=profile.warmup_ratio, weight_decay=profile.weight_decay,
                max_grad_norm=profile.max_grad_norm, accumulation_steps=profile.grad_accum_steps,
                checkpoint_dir=_dir(out, "checkpoint"), log_every=profile.log_every, eval_fn=evaluate, desc="teacher fine-tuning", stop_after=stop_after)
    teacher.eval()
    if _finished_before(out, train):
        return _reuse_summary(out, StageResult(teacher, train))
    result = StageResult(teacher, train, metrics={"dev_accuracy": train.evals[-1]["dev_accuracy"] if train.evals else evaluate()["dev_accuracy"]})
    if out is not None and is_main_process():
        export_hf(teacher, tok, out / "model")
        _write_summary(out, "teacher fine-tuning", result, {"train_rows": len(train_raw), "dev_rows": len(dev_raw)})
    wait_for_everyone()
    return result


# --- stage 2 --------------------------------------------------------------------------------


def task_distill(
    teacher_ft: Bert,
    student: Bert,
    train_set: Dataset,
    profile: Profile | str,
    stage: str = "intermediate",
    *,
    dev_set: Optional[Dataset] = None,
    projections: Optional[nn.ModuleList] = None,
    mapping: Optional[Sequence[int]] = None,
    weights: tuple[float, float, float] = (1.0, 1.0, 1.0),
    attention_kind: str = "mse",
    temperature: Optional[float] = None,
    out_dir: Optional[str | Path] = None,
    device: Optional[str] = None,
    stop_after: Optional[int] = None,
    keep_best_epoch: bool = True,
) -> StageResult:
    """Stage 2 of TinyBERT on task data (``sentence``, ``label``; augmented or not).

    ``stage="intermediate"`` (step 1): emb + hid + att losses against the fine-tuned teacher,
    starting from the general student; reports the held-out distillation loss on dev.
    ``stage="prediction"`` (step 2): soft cross-entropy between student and teacher logits at
    temperature t (gold labels are never used), starting from step 1's student; the epoch with
    the best dev accuracy is kept (``keep_best_epoch=False``: the last epoch, as a comparison
    that scores on the same dev rows must). The student gets a classification head if it has none.
    """
    if stage not in {"intermediate", "prediction"}:
        raise ValueError(f"unknown stage {stage!r}: use 'intermediate' (step 1) or 'prediction' (step 2).")
    if teacher_ft.config.num_labels == 0:
        raise ValueError("task distillation needs a fine-tuned teacher with a classification head: run finetune_teacher first (lesson 07).")
    profile, dev = _prepare(profile, device)
    out = Path(out_dir) if out_dir is not None else None
    teacher_ft.to(dev).eval()
    if student.config.num_labels == 0:
        student.add_classifier(teacher_ft.config.num_labels)
    student.to(dev)
    tok = student.tokenizer
    dev_raw = dev_set if dev_set is not None else load_sst2("dev", limit=profile.sst2_dev_limit)
    train_tok = tokenize_sst2(train_set, tok, profile.max_seq_len_task)
    temperature = profile.temperature if temperature is None else temperature

    if stage == "intermediate":
        mapping, projections, loss_fn = _layer_distillation(teacher_ft, student, mapping, projections, weights, attention_kind, dev)
        modules: dict[str, nn.Module] = {"student": student, "projections": projections}
        epochs, lr = profile.task_intermediate_epochs, profile.task_lr_intermediate
        evaluate = None
    else:
        modules = {"student": student}
        epochs, lr = profile.task_prediction_epochs, profile.task_lr_prediction
        best: dict[str, Any] = {"dev_accuracy": -1.0, "state": None}

        def loss_fn(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
            with torch.no_grad():
                t_logits = teacher_ft(**_inputs(batch)).logits
            return {"total": prediction_loss(student(**_inputs(batch)).logits, t_logits, temperature)}

        def evaluate() -> dict[str, float]:
            acc = accuracy(student, dev_raw, max_length=profile.max_seq_len_task)
            if acc > best["dev_accuracy"] or not keep_best_epoch:  # the best epoch, as the original does
                best["dev_accuracy"] = acc
                best["state"] = {k: v.detach().cpu().clone() for k, v in student.state_dict().items()}
                if out is not None and is_main_process():
                    export_hf(student, tok, out / "model")
            return {"dev_accuracy": acc}

    def loader(epoch: int):
        return make_loader(train_tok, profile.task_batch_size, tok, shuffle=True, seed=profile.seed + epoch)

    train = fit(modules=modules, loss_fn=loss_fn, loader_for_epoch=loader, epochs=epochs, lr=lr, device=dev,
                warmup_ratio=profile.warmup_ratio, weight_decay=profile.weight_decay, max_grad_norm=profile.max_grad_norm,
                accumulation_steps=profile.grad_accum_steps, checkpoint_dir=_dir(out, "checkpoint"),
                log_every=profile.log_every, eval_fn=evaluate, desc=f"task distillation ({stage})", stop_after=stop_after)
    result = StageResult(student, train, projections if stage == "intermediate" else None)
    if _finished_before(out, train):
        if stage == "prediction":  # the checkpoint holds the last epoch; model/ holds the best one
            student.load_state_dict(Bert.from_folder(out / "model").state_dict())
        return _reuse_summary(out, result)
    student.eval()
    if stage == "intermediate":
        dev_tok = tokenize_sst2(dev_raw, tok, profile.max_seq_len_task)
        result.metrics.update({f"dev_{k}": v for k, v in distillation_loss_on(
            teacher_ft, student, dev_tok, mapping, projections, profile.task_batch_size, attention_kind, dev).items()})
        if out is not None and is_main_process():
            export_hf(student, tok, out / "model")
            save_projections(projections, out / "projections.safetensors")
    else:
        if best["state"] is not None:
            student.load_state_dict(best["state"])
        elif out is not None and (out / "model" / "model.safetensors").is_file():  # resumed a finished run
            student.load_state_dict(Bert.from_folder(out / "model").state_dict())
        student.eval()
        accs = [e["dev_accuracy"] for e in train.evals] or [accuracy(student, dev_raw, max_length=profile.max_seq_len_task)]
        result.metrics["dev_accuracy"] = max(accs) if keep_best_epoch else accs[-1]
        result.metrics["last_epoch_dev_accuracy"] = accs[-1]
    if is_main_process():
        _write_summary(out, f"task distillation ({stage})", result, {"train_rows": len(train_set), "temperature": temperature})
    wait_for_everyone()
    return result

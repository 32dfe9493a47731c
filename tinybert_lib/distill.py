"""TinyBERT's two stages, and teacher fine-tuning, as calls on the shared training loop.

Lessons: 06-07, 09, 11.

Stage 1, ``general_distill``: Transformer-layer distillation (embedding + hidden + attention
losses through the layer mapping) of a randomly initialised student from a *pre-trained*
teacher on unlabeled text. No prediction layer.

``finetune_teacher``: the teacher learns the task (the profile's ``task``: SST-2 in the lessons,
or MRPC, RTE, CoLA, or one of your own; see :mod:`~tinybert_lib.tasks`) with ordinary cross-entropy.

Stage 2, ``task_distill``: from the general student and the *fine-tuned* teacher on the
(augmented) task data — step 1 ``stage="intermediate"`` (emb + hid + att again), then step 2
``stage="prediction"`` (soft cross-entropy against the teacher's logits at temperature t),
keeping the epoch with the best dev score (the task's main metric) as the original implementation does.

The teacher always runs in eval mode under ``torch.no_grad()``: it is a fixed target, so it
needs neither dropout nor an autograd graph (the original code leaves its dropout on).
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import torch
from datasets import Dataset
from safetensors.torch import load_file, save_file
from torch import nn
from torch.profiler import record_function

from .bert import Bert
from .checkpoints import dedupe_tensors
from .data import load_task, make_loader, tokenize_task
from .evaluate import evaluate_task
from .export import export_hf
from .losses import layer_map, make_projections, prediction_loss, transformer_loss
from .atomic import atomic_file, atomic_write_text, old_sibling
from .profiles import Profile, get_profile
from .records import check_reuse, fingerprint_dataset, fingerprint_tensors, profile_fields
from .runtime import is_main_process, pick_device, set_seed, wait_for_everyone
from .tasks import Task, get_task
from .training import FitConfig, TrainResult, fit, move

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
    with atomic_file(path) as tmp:
        save_file(tensors, str(tmp))


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


STAGE_OUTPUTS = ("checkpoint", "model", "projections.safetensors", "summary.json")


def _teacher_record(model: Bert) -> dict[str, Any]:
    return {"sha256": fingerprint_tensors(model), "layers": model.config.num_hidden_layers,
            "hidden_size": model.config.hidden_size}


def _clear_outputs(out_dir: Path) -> None:
    """Remove what a stage wrote in ``out_dir`` (``rebuild=True``), and nothing else."""
    if is_main_process():
        for name in STAGE_OUTPUTS:
            for path in (out_dir / name, old_sibling(out_dir / name)):
                if path.is_dir():
                    shutil.rmtree(path)
                else:
                    path.unlink(missing_ok=True)
        log.info("%s: previous outputs removed, building again", out_dir)
    wait_for_everyone()


def _finished(out_dir: Optional[Path], settings: dict[str, Any], what: str, rebuild: bool) -> Optional[dict[str, Any]]:
    """The summary of a finished stage in ``out_dir`` built with ``settings`` (None: train it).

    Reads only ``summary.json`` and ``model/``, never the checkpoint, so a damaged checkpoint
    does not block a finished stage. Other recorded settings raise StaleArtifactError.
    """
    if out_dir is None:
        return None
    if rebuild:
        _clear_outputs(out_dir)
        return None
    if not ((out_dir / "summary.json").is_file() and (out_dir / "model" / "model.safetensors").is_file()):
        return None
    try:
        summary = json.loads((out_dir / "summary.json").read_text())
    except ValueError as err:
        raise RuntimeError(f"{out_dir / 'summary.json'} is damaged ({err}); delete {out_dir} or rebuild it "
                           "(rebuild=True, or --rebuild on the command line).") from err
    check_reuse(out_dir, summary.get("settings"), settings, what)
    return summary


def _reused(out_dir: Path, summary: dict[str, Any], model: Bert, device: torch.device,
            projections: Optional[nn.ModuleList] = None) -> StageResult:
    """A finished stage's result, read from its outputs (``model/``, ``projections.safetensors``)."""
    model.load_state_dict(Bert.from_folder(out_dir / "model").state_dict())
    model.to(device)
    if projections is not None:
        projections.load_state_dict(load_projections(out_dir / "projections.safetensors", model.config.hidden_size,
                                                     projections[0].linear.out_features, model.config.num_hidden_layers).state_dict())
        projections.to(device)
    steps = int(summary.get("steps", 0))
    train = TrainResult(history=summary.get("history", []), evals=summary.get("evals", []), steps=steps,
                        seconds=float(summary.get("seconds", 0.0)), resumed_from=steps)
    log.info("%s was already finished with these settings: reusing its outputs", out_dir)
    return StageResult(model.eval(), train, projections, metrics=dict(summary.get("metrics", {})))


def _write_summary(out_dir: Optional[Path], name: str, result: StageResult, extra: dict[str, Any],
                   settings: Optional[dict[str, Any]] = None) -> None:
    """``summary.json``, written last: the stage's scores, curves, settings and output fingerprint."""
    if out_dir is None:
        return
    summary = {"stage": name, "steps": result.train.steps, "seconds": round(result.train.seconds, 1),
               "metrics": result.metrics, "evals": result.train.evals, **extra,
               "fingerprint": fingerprint_tensors(result.model), "settings": settings,
               "history": result.train.history}
    atomic_write_text(out_dir / "summary.json", json.dumps(summary, indent=1))


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


def prediction_distillation_loss(teacher: Bert, student: Bert, temperature: float = 1.0):
    """The per-batch loss of step 2 (``prediction_loss``): soft cross-entropy of ``student``'s
    logits against ``teacher``'s at ``temperature``; the teacher runs under ``torch.no_grad()``."""

    def loss_fn(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        with torch.no_grad():  # a fixed target, as in step 1
            t_logits = teacher(**_inputs(batch)).logits
        return {"total": prediction_loss(student(**_inputs(batch)).logits, t_logits, temperature)}

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
    rebuild: bool = False,
) -> StageResult:
    """Stage 1: Transformer-layer distillation on unlabeled text blocks (``data.corpus_blocks``).

    L = Σ_m λ·L_layer(S_m, T_g(m)) with L_emb at m = 0 and L_hid + L_att for m = 1..M, the uniform
    mapping by default. ``out_dir`` holds a resumable checkpoint, the final student
    (``model/``, a Hugging Face folder) and its projections (``projections.safetensors``).
    ``valid``: optional held-out blocks on which the final loss is reported.

    A finished ``out_dir`` built with the same settings (see :mod:`~tinybert_lib.records`) is
    reused, one built with others is refused; ``rebuild=True`` trains it again from scratch.
    """
    profile, dev = _prepare(profile, device)
    out = Path(out_dir) if out_dir is not None else None
    given_projections = None if projections is None else fingerprint_tensors(projections)
    teacher.to(dev).eval()
    mapping, projections, loss_fn = _layer_distillation(teacher, student, mapping, projections, weights, attention_kind, dev)
    train_settings = {
        "stage": "general distillation",
        "profile": profile_fields(profile, FitConfig.recorded_fields("general")),
        # a fresh student: its config and the seed (class names change nothing that is trained)
        "teacher": _teacher_record(teacher), "student": {k: v for k, v in student.config.to_dict().items() if k != "label_names"},
        "projections": given_projections, "mapping": mapping, "weights": list(weights), "attention_kind": attention_kind,
        "corpus": fingerprint_dataset(corpus),
    }
    settings = {**train_settings, "valid": None if valid is None else fingerprint_dataset(valid)}
    done = _finished(out, settings, "the general student", rebuild)
    if done is not None:
        return _reused(out, done, student, dev, projections)

    config = FitConfig.for_stage(profile, "general")
    train = fit(modules={"student": student, "projections": projections}, loss_fn=loss_fn,
                loader_for_epoch=config.loader_for_epoch(corpus, student.tokenizer, group_by_length=False),
                config=config, device=dev, checkpoint_dir=_dir(out, "checkpoint"), desc="general distillation",
                stop_after=stop_after, settings=train_settings)
    result = StageResult(student, train, projections)
    student.eval()
    if valid is not None:
        result.metrics.update({f"valid_{k}": v for k, v in distillation_loss_on(
            teacher, student, valid, mapping, projections, config.batch_size, attention_kind, dev).items()})
    if out is not None and is_main_process():
        export_hf(student, student.tokenizer, out / "model")
        save_projections(projections, out / "projections.safetensors")
        _write_summary(out, "general distillation", result, {"mapping": mapping, "weights": list(weights)}, settings)
    wait_for_everyone()
    return result


# --- teacher fine-tuning --------------------------------------------------------------------


def _task_splits(profile: Profile, task: Task, given: Any) -> tuple[Dataset, Dataset]:
    if given is None:
        return (load_task(task, "train", limit=profile.sst2_train_limit),
                load_task(task, "dev", limit=profile.sst2_dev_limit))
    return given["train"], given["dev"]


def _stage_task(profile: Profile, task: Optional[Task | str]) -> Task:
    """The task a stage works on: the one given, else the profile's."""
    return get_task(task if task is not None else profile.task)


def task_record(task: Task) -> dict[str, Any]:
    """The task, for a settings record: ``{}`` for SST-2, whose records were written before tasks
    were recorded (adding a key would make every existing SST-2 artifact stale), ``{"task": name}``
    for any other, so an artifact built for one task is never reused for another."""
    return {} if task.name == "sst2" else {"task": task.name}


def max_length(profile: Profile, task: Task) -> int:
    """Tokens per example: ``max_seq_len_pair`` for a sentence pair, ``max_seq_len_task`` otherwise."""
    return profile.max_seq_len_pair if task.is_pair else profile.max_seq_len_task


def _length_fields(task: Task) -> tuple[str, ...]:
    # SST-2's records hold max_seq_len_task only; a pair task records the length it really uses too.
    return ("max_seq_len_task", "max_seq_len_pair") if task.is_pair else ("max_seq_len_task",)


def dev_metrics(model: Bert, dev_raw: Dataset, task: Task, length: int) -> dict[str, float]:
    """The task's metrics on dev, as ``{"dev_<metric>": value}`` (main metric first)."""
    return {f"dev_{k}": v for k, v in evaluate_task(model, dev_raw, task, max_length=length).items()}


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
    num_labels: Optional[int] = None,
    device: Optional[str] = None,
    stop_after: Optional[int] = None,
    rebuild: bool = False,
    task: Optional[Task | str] = None,
) -> StageResult:
    """Fine-tune the teacher on the task's train set with cross-entropy; report its dev metrics each epoch.

    ``task``: the task (default: the profile's, SST-2 unless set). ``sst2``: a mapping with
    ``"train"`` and ``"dev"`` datasets (the task's text columns and ``label``), or ``None`` to load
    them with the profile's limits. A teacher without a head gets one of ``num_labels`` classes
    (default: the task's), named by the task's label names. ``out_dir`` is reused or refused as in
    :func:`general_distill` (``rebuild=True``: train again).
    """
    profile, dev = _prepare(profile, device)
    task = _stage_task(profile, task)
    out = Path(out_dir) if out_dir is not None else None
    train_raw, dev_raw = _task_splits(profile, task, sst2)
    length = max_length(profile, task)
    num_labels = task.num_labels if num_labels is None else num_labels
    pretrained = _teacher_record(teacher)
    if teacher.config.num_labels == 0:
        teacher.add_classifier(num_labels, pooling=profile.classifier_pooling,
                               label_names=task.label_names if num_labels == task.num_labels else None)
    train_settings = {
        "stage": "teacher fine-tuning",
        "profile": profile_fields(profile, FitConfig.recorded_fields("finetune") + (*_length_fields(task), "classifier_pooling")),
        **task_record(task),
        "teacher": pretrained, "num_labels": teacher.config.num_labels, "train": fingerprint_dataset(train_raw),
    }
    settings = {**train_settings, "dev": fingerprint_dataset(dev_raw)}
    done = _finished(out, settings, "the fine-tuned teacher", rebuild)
    if done is not None:
        return _reused(out, done, teacher, dev)
    tok = teacher.tokenizer
    train_set = tokenize_task(train_raw, task, tok, length)

    loss_fn = gold_label_loss(teacher)

    def evaluate() -> dict[str, float]:
        return dev_metrics(teacher, dev_raw, task, length)

    config = FitConfig.for_stage(profile, "finetune")
    train = fit(modules={"teacher": teacher}, loss_fn=loss_fn, loader_for_epoch=config.loader_for_epoch(train_set, tok),
                config=config, device=dev, checkpoint_dir=_dir(out, "checkpoint"), eval_fn=evaluate,
                desc="teacher fine-tuning", stop_after=stop_after, settings=train_settings)
    teacher.eval()
    scores = ({k: train.evals[-1][k] for k in train.evals[-1] if k.startswith("dev_")} if train.evals else evaluate())
    result = StageResult(teacher, train, metrics=scores)
    if out is not None and is_main_process():
        export_hf(teacher, tok, out / "model")
        _write_summary(out, "teacher fine-tuning", result, {"train_rows": len(train_raw), "dev_rows": len(dev_raw)}, settings)
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
    rebuild: bool = False,
    task: Optional[Task | str] = None,
) -> StageResult:
    """Stage 2 of TinyBERT on task data (the task's text columns and ``label``; augmented or not).

    ``stage="intermediate"`` (step 1): emb + hid + att losses against the fine-tuned teacher,
    starting from the general student; reports the held-out distillation loss on dev.
    ``stage="prediction"`` (step 2): soft cross-entropy between student and teacher logits at
    temperature t (gold labels are never used), starting from step 1's student; it reports the
    task's dev metrics each epoch, and the epoch best at the task's main metric is kept
    (``keep_best_epoch=False``: the last epoch, as a comparison that scores on the same dev rows
    must). The student gets a classification head if it has none.
    ``task``: the task (default: the profile's); ``dev_set``: its dev rows (default: loaded with
    the profile's limit).
    ``out_dir`` is reused or refused as in :func:`general_distill` (``rebuild=True``: train again);
    the fine-tuned teacher, the student and the projections given are recorded by fingerprint, so
    a rebuilt upstream stage invalidates this one.
    """
    if stage not in {"intermediate", "prediction"}:
        raise ValueError(f"unknown stage {stage!r}: use 'intermediate' (step 1) or 'prediction' (step 2).")
    if teacher_ft.config.num_labels == 0:
        raise ValueError("task distillation needs a fine-tuned teacher with a classification head: run finetune_teacher first (lesson 07).")
    profile, dev = _prepare(profile, device)
    task = _stage_task(profile, task)
    if teacher_ft.config.num_labels != task.num_labels:
        raise ValueError(f"the teacher's head has {teacher_ft.config.num_labels} classes, task {task.name!r} has "
                         f"{task.num_labels} ({', '.join(task.label_names)}): fine-tune a teacher on {task.display} first "
                         f"(finetune_teacher(..., task={task.name!r}), lesson 07).")
    length = max_length(profile, task)
    out = Path(out_dir) if out_dir is not None else None
    given = {"teacher": _teacher_record(teacher_ft), "student": fingerprint_tensors(student),
             "projections": None if projections is None else fingerprint_tensors(projections)}
    teacher_ft.to(dev).eval()
    if student.config.num_labels == 0:
        student.add_classifier(teacher_ft.config.num_labels, pooling=teacher_ft.config.classifier_pooling,
                               label_names=teacher_ft.config.label_names)
    student.to(dev)
    tok = student.tokenizer
    dev_raw = dev_set if dev_set is not None else load_task(task, "dev", limit=profile.sst2_dev_limit)
    temperature = profile.temperature if temperature is None else temperature
    config = FitConfig.for_stage(profile, stage)
    train_settings: dict[str, Any] = {
        "stage": f"task distillation ({stage})",
        "profile": profile_fields(profile, FitConfig.recorded_fields(stage) + _length_fields(task)),
        **task_record(task), **given, "train": fingerprint_dataset(train_set),
    }
    dev_record = fingerprint_dataset(dev_raw)
    if stage == "intermediate":
        train_settings.update(mapping=None if mapping is None else list(mapping), weights=list(weights),
                              attention_kind=attention_kind)
    else:  # the dev set picks the epoch that is kept
        train_settings.update(temperature=temperature, keep_best_epoch=keep_best_epoch, dev=dev_record)
    settings = {**train_settings, "dev": dev_record}
    done = _finished(out, settings, f"task distillation ({stage})", rebuild)
    if done is not None:
        if stage == "intermediate":
            _, projections, _ = _layer_distillation(teacher_ft, student, mapping, projections, weights, attention_kind, dev)
        return _reused(out, done, student, dev, projections if stage == "intermediate" else None)
    train_tok = tokenize_task(train_set, task, tok, length)
    main = f"dev_{task.main_metric}"

    if stage == "intermediate":
        mapping, projections, loss_fn = _layer_distillation(teacher_ft, student, mapping, projections, weights, attention_kind, dev)
        modules: dict[str, nn.Module] = {"student": student, "projections": projections}
        evaluate = None
    else:
        modules = {"student": student}
        best: dict[str, Any] = {"score": float("-inf"), "state": None}

        loss_fn = prediction_distillation_loss(teacher_ft, student, temperature)

        def evaluate() -> dict[str, float]:
            scores = dev_metrics(student, dev_raw, task, length)
            if scores[main] > best["score"] or not keep_best_epoch:  # the best epoch, as the original does
                best["score"] = scores[main]
                best["state"] = {k: v.detach().cpu().clone() for k, v in student.state_dict().items()}
                if out is not None and is_main_process():
                    export_hf(student, tok, out / "model")
            return scores

    train = fit(modules=modules, loss_fn=loss_fn, loader_for_epoch=config.loader_for_epoch(train_tok, tok), config=config,
                device=dev, checkpoint_dir=_dir(out, "checkpoint"), eval_fn=evaluate, desc=f"task distillation ({stage})",
                stop_after=stop_after, settings=train_settings)
    result = StageResult(student, train, projections if stage == "intermediate" else None)
    student.eval()
    if stage == "intermediate":
        dev_tok = tokenize_task(dev_raw, task, tok, length)
        result.metrics.update({f"dev_{k}": v for k, v in distillation_loss_on(
            teacher_ft, student, dev_tok, mapping, projections, config.batch_size, attention_kind, dev).items()})
        if out is not None and is_main_process():
            export_hf(student, tok, out / "model")
            save_projections(projections, out / "projections.safetensors")
    else:
        if best["state"] is not None:
            student.load_state_dict(best["state"])
        elif out is not None and (out / "model" / "model.safetensors").is_file():  # resumed a finished run
            student.load_state_dict(Bert.from_folder(out / "model").state_dict())
        student.eval()
        epochs_scores = [{k: v for k, v in e.items() if k.startswith("dev_")} for e in train.evals]
        epochs_scores = epochs_scores or [dev_metrics(student, dev_raw, task, length)]
        # the kept epoch's scores: the first best at the main metric, as evaluate() kept it
        kept = max(epochs_scores, key=lambda e: e[main]) if keep_best_epoch else epochs_scores[-1]
        result.metrics.update(kept)
        result.metrics[f"last_epoch_{main}"] = epochs_scores[-1][main]
    if is_main_process():
        _write_summary(out, f"task distillation ({stage})", result, {"train_rows": len(train_set), "temperature": temperature},
                       settings)
    wait_for_everyone()
    return result

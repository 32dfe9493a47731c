"""The one training loop every stage shares: optimiser, schedule, AMP, logging, checkpoints.

Lessons: 06-07, 09, 11.

General distillation, teacher fine-tuning and both task-distillation steps differ only in
*what loss a batch gives*; everything else lives here once:

- the settings of a run (:class:`FitConfig`), read from the profile by one builder for every
  stage (:meth:`FitConfig.for_stage`), so no stage can forget one;
- AdamW with weight decay on matrices only, linear warm-up then linear decay;
- gradient clipping; mixed precision (bf16, or fp16 with a scaler) on CUDA only;
- a tqdm progress bar that works in JupyterLab and in papermill logs;
- the loss components logged every ``log_every`` steps into a history list;
- a checkpoint (safetensors weights + optimiser/scheduler/RNG state + a small JSON) written
  atomically every ``checkpoint_every`` steps and at the end of each epoch, so an interrupted
  run resumes at the step it stopped and a finished run is not trained twice.

Devices, mixed precision, gradient accumulation and (under ``accelerate launch``) data
sharding and gradient averaging across processes go through Hugging Face Accelerate. In a
single process Accelerate changes nothing you can see: the modules stay plain modules and
the loop reads like any PyTorch loop. With N processes each one takes 1/N of every batch
(the profile's batch size stays the *global* batch), gradients are averaged, and only the
main process writes checkpoints, logs and progress bars.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import pickle
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

import numpy as np
import torch
from accelerate import Accelerator, DataLoaderConfiguration, DistributedDataParallelKwargs
from accelerate.state import AcceleratorState, GradientState, is_initialized
from accelerate.utils import gather_object
from safetensors.torch import load_file, save_file
from torch import nn
from torch.profiler import record_function
from tqdm.auto import tqdm

from .atomic import atomic_folder, recover_folder
from .data import make_loader
from .profiles import Profile
from .records import check_reuse
from .runtime import is_main_process, keep_freed_memory, process_index, world_size

log = logging.getLogger(__name__)

LossFn = Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]]


#: Profile fields every stage reads, besides its own three: the seed and the optimiser's settings.
#: ``log_every`` is not among them: it changes how a run is watched, not what it gives.
COMMON_FIELDS = ("seed", "warmup_ratio", "weight_decay", "max_grad_norm", "grad_accum_steps")

#: The profile fields that give each stage its epochs, batch size and learning rate, in the order
#: the stage's settings record lists them.
STAGE_FIELDS: dict[str, dict[str, str]] = {
    "general": {"epochs": "general_epochs", "batch_size": "general_batch_size", "lr": "general_lr"},
    "finetune": {"epochs": "finetune_epochs", "batch_size": "finetune_batch_size", "lr": "finetune_lr"},
    "intermediate": {"epochs": "task_intermediate_epochs", "lr": "task_lr_intermediate", "batch_size": "task_batch_size"},
    "prediction": {"epochs": "task_prediction_epochs", "lr": "task_lr_prediction", "batch_size": "task_batch_size"},
}


@dataclass(frozen=True)
class FitConfig:
    """Everything :func:`fit` needs besides the modules, the loss and the data.

    Build it with :meth:`for_stage`, the one place where a profile becomes a training run;
    ``batch_size`` and ``seed`` are for the stage's loader (:meth:`loader_for_epoch`).
    """

    epochs: int
    lr: float
    batch_size: int = 32  # the global batch: all processes together, before accumulation
    seed: int = 42  # epoch e shuffles with seed + e
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    accumulation_steps: int = 1  # batches whose gradients add up before one optimiser step
    log_every: int = 10  # optimiser steps between two history records
    checkpoint_every: int = 200  # optimiser steps between two checkpoints (and one at each epoch's end)

    @classmethod
    def for_stage(cls, profile: Profile, stage: str, **overrides: Any) -> "FitConfig":
        """The run of ``stage`` (``general``, ``finetune``, ``intermediate``, ``prediction``) under ``profile``.

        ``overrides`` change fields of the result, e.g. ``epochs=1`` for a shorter run at a stage's settings.
        """
        if stage not in STAGE_FIELDS:
            raise ValueError(f"unknown stage {stage!r}: use {', '.join(STAGE_FIELDS)}.")
        own = {key: getattr(profile, name) for key, name in STAGE_FIELDS[stage].items()}
        config = cls(**own, seed=profile.seed, warmup_ratio=profile.warmup_ratio, weight_decay=profile.weight_decay,
                     max_grad_norm=profile.max_grad_norm, accumulation_steps=profile.grad_accum_steps,
                     log_every=profile.log_every)
        return dataclasses.replace(config, **overrides)

    @staticmethod
    def recorded_fields(stage: str) -> tuple[str, ...]:
        """The profile fields :meth:`for_stage` reads that change a result (a stage's settings record)."""
        return COMMON_FIELDS + tuple(STAGE_FIELDS[stage].values())

    def loader_for_epoch(self, dataset: Any, tokenizer: Any, group_by_length: bool = True) -> Callable[[int], Any]:
        """The batches of epoch ``e``: ``dataset`` shuffled with ``seed + e`` (the same ``e``, the same batches)."""

        def loader(epoch: int):
            return make_loader(dataset, self.batch_size, tokenizer, shuffle=True, seed=self.seed + epoch,
                               group_by_length=group_by_length)

        return loader


class Interrupted(RuntimeError):
    """Raised by :func:`fit` when ``stop_after`` steps are done (used to show resuming)."""


@dataclass
class TrainResult:
    """What a training run leaves behind."""

    history: list[dict[str, float]] = field(default_factory=list)  # one record per logged step
    evals: list[dict[str, float]] = field(default_factory=list)  # one record per epoch
    steps: int = 0
    seconds: float = 0.0
    resumed_from: int = 0  # step the run resumed at (0 = fresh start)


def make_optimizer(modules: Iterable[nn.Module], lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW (fused); biases and LayerNorm weights get no weight decay (BERT's convention)."""
    decay, no_decay, seen = [], [], set()
    for module in modules:
        for name, p in module.named_parameters():
            if not p.requires_grad or id(p) in seen:  # shared projections appear once
                continue
            seen.add(id(p))
            (no_decay if p.ndim < 2 else decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    # fused: one kernel per tensor instead of a dozen element-wise passes, the same update (equal
    # to float rounding) several times faster on a CPU, where the student's whole embedding table
    # (5.9M numbers) is updated at every step. CPU, CUDA and MPS all have the kernel.
    return torch.optim.AdamW(groups, lr=lr, fused=True)


def linear_schedule(optimizer: torch.optim.Optimizer, total_steps: int, warmup_ratio: float) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up over ``warmup_ratio`` of the steps, then linear decay to 0."""
    from transformers import get_linear_schedule_with_warmup

    return get_linear_schedule_with_warmup(optimizer, int(warmup_ratio * total_steps), max(total_steps, 1))


def mixed_precision_for(device: torch.device) -> str:
    """Mixed precision on CUDA (bf16 where supported, else fp16); full precision elsewhere."""
    if device.type != "cuda":
        return "no"
    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


def make_accelerator(device: torch.device, accumulation_steps: int = 1) -> Accelerator:
    """The Accelerate handle of one run: device, precision, gradient sync and accumulation.

    ``split_batches=True``: every process takes its share of the same global batch, so a run
    on N processes sees the batches a single process would (only faster).
    """
    precision = mixed_precision_for(device)
    if world_size() == 1 and is_initialized():
        state = AcceleratorState()
        if state.device.type != device.type or state.mixed_precision != precision:
            # Accelerate keeps one global state per process; a notebook that trains on the CPU
            # and then on a GPU (or the reverse) starts it afresh. Never done with N processes.
            AcceleratorState._reset_state(reset_partial_state=True)
            GradientState._reset_state()
    accelerator = Accelerator(
        cpu=device.type == "cpu",
        mixed_precision=precision,
        gradient_accumulation_steps=accumulation_steps,
        dataloader_config=DataLoaderConfiguration(split_batches=True),
        # the pooler (and, in stage 1, the classifier) take no part in some losses
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
    )
    # Which process writes files is decided in one place (runtime.is_main_process, from the launcher's
    # variables); a launcher that does not set them would let every process believe it is the main one.
    if (accelerator.process_index, accelerator.num_processes) != (process_index(), world_size()):
        raise RuntimeError(
            f"Accelerate sees process {accelerator.process_index} of {accelerator.num_processes}, but RANK/WORLD_SIZE "
            f"say {process_index()} of {world_size()}: start several processes with `accelerate launch` or `torchrun`, "
            "which set both.")
    return accelerator


class TrainStep(nn.Module):
    """The trained modules and the loss of one batch, as one module.

    Wrapping them lets Accelerate place them on the device and, with several processes,
    wrap them once in DistributedDataParallel so that the gradients of every module are
    averaged across processes. The teacher stays outside: it lives in ``loss_fn``'s closure
    and has no gradients to share.
    """

    def __init__(self, modules: dict[str, nn.Module], loss_fn: LossFn) -> None:
        super().__init__()
        self.parts = nn.ModuleDict(modules)
        self.loss_fn = loss_fn

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return self.loss_fn(batch)


def training_step(accelerator: Accelerator, train_step: nn.Module, batch: dict[str, torch.Tensor], optimizer, scheduler,
                  params: list[nn.Parameter], max_grad_norm: float) -> dict[str, torch.Tensor]:
    """One batch of :func:`fit`: loss, backward and, once the accumulated gradients are complete,
    clipping and the optimiser step. ``bench.course_step`` times this same function."""
    with accelerator.accumulate(train_step):
        losses = train_step(batch)
        with record_function("backward"):  # the phases bench.profile_step reports
            accelerator.backward(losses["total"])
        with record_function("optimizer"):
            if accelerator.sync_gradients:
                accelerator.clip_grad_norm_(params, max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
    return losses


def move(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


# --- checkpoints ----------------------------------------------------------------------------


class CheckpointError(RuntimeError):
    """A checkpoint folder that cannot be read back; the message says what to delete."""


class Checkpoint:
    """A checkpoint folder: ``<name>.safetensors`` per module, ``optim.pt``, ``state.json``.

    ``save`` writes a complete new folder beside the old one and swaps it in
    (:func:`~tinybert_lib.atomic.atomic_folder`), so a kill at any moment leaves either the
    previous checkpoint or the new one, never a mix; :meth:`recover` finishes an interrupted
    swap. ``optim.pt`` holds only tensors and plain values and is read with
    ``weights_only=True``: a file carrying pickled code is refused, never run.
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    def recover(self) -> None:
        """Put back a checkpoint parked by a kill mid-swap; remove orphaned temporary folders."""
        recover_folder(self.folder)

    def exists(self) -> bool:
        return (self.folder / "state.json").is_file()

    def _damaged(self, name: str, err: BaseException) -> CheckpointError:
        detail = str(err).splitlines()[0] if str(err) else type(err).__name__
        return CheckpointError(
            f"checkpoint {self.folder} is damaged ({name}: {detail}); delete that folder to train this stage "
            "again from step 0 (the stage's finished outputs beside it, if any, are not affected)."
        )

    def state(self) -> dict[str, Any]:
        try:
            state = json.loads((self.folder / "state.json").read_text())
        except (OSError, ValueError) as err:
            raise self._damaged("state.json", err) from err
        if not isinstance(state, dict) or "step" not in state:
            raise self._damaged("state.json", ValueError("no 'step' recorded"))
        return state

    def save(self, modules: dict[str, nn.Module], state: dict[str, Any], optimizer=None, scheduler=None, scaler=None,
             rng_states: Optional[list[dict[str, Any]]] = None) -> None:
        """Write the folder; ``rng_states``: one :func:`rng_state` per process (default: this one's)."""
        with atomic_folder(self.folder) as tmp:
            for name, module in modules.items():
                # safetensors refuses aliased tensors (a shared projection); store each storage once,
                # deduplicated before the copy to the CPU, which would hide the aliasing on a GPU.
                tensors = {k: v.detach().cpu().contiguous() for k, v in dedupe_tensors(module.state_dict()).items()}
                save_file(tensors, str(tmp / f"{name}.safetensors"))
            if optimizer is not None:
                torch.save(
                    {
                        "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict() if scheduler is not None else None,
                        "scaler": scaler.state_dict() if scaler is not None else None,
                        "rng_states": rng_states if rng_states is not None else [rng_state()],
                    },
                    tmp / "optim.pt",
                )
            (tmp / "state.json").write_text(json.dumps(state, indent=1))

    def load_modules(self, modules: dict[str, nn.Module]) -> None:
        for name, module in modules.items():
            try:
                tensors = load_file(str(self.folder / f"{name}.safetensors"))
            except Exception as err:  # missing, truncated or not safetensors at all
                raise self._damaged(f"{name}.safetensors", err) from err
            module.load_state_dict(_undedupe(tensors, module), strict=True)

    def load_training_state(self, optimizer, scheduler=None, scaler=None, process: int = 0) -> Callable[[], None]:
        """Restore optimiser, schedule and scaler; return a function that restores the RNGs.

        The RNGs (``process``'s own, when several processes saved theirs) are restored right
        before the first resumed step.
        """
        path = self.folder / "optim.pt"
        try:
            saved = torch.load(path, weights_only=True, map_location="cpu")
        except pickle.UnpicklingError as err:
            raise CheckpointError(
                f"{path} holds more than tensors and plain values, so it was not loaded (unpickling it could run "
                f"code). If you did not write it, do not trust {self.folder}: delete that folder to train this "
                "stage again from step 0."
            ) from err
        except Exception as err:  # missing or truncated
            raise self._damaged("optim.pt", err) from err
        optimizer.load_state_dict(saved["optimizer"])
        if scheduler is not None and saved["scheduler"] is not None:
            scheduler.load_state_dict(saved["scheduler"])
        if scaler is not None and saved["scaler"] is not None:
            scaler.load_state_dict(saved["scaler"])

        states = saved["rng_states"]
        if len(states) <= process:
            log.warning("checkpoint saved by %d process(es); process %d continues with process 0's random state",
                        len(states), process)
        own = states[process] if process < len(states) else states[0]
        return lambda: set_rng_state(own)


def rng_state() -> dict[str, Any]:
    """This process's random state (Python, NumPy, torch on the CPU and every GPU it sees).

    Only tensors, lists and numbers, so that a checkpoint can be read with ``weights_only=True``.
    """
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {"cpu": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            "python": [version, list(internal), gauss],
            "numpy": [str(kind), torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)]}


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["cpu"])
    if state["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if state.get("python") is not None:  # absent from checkpoints written before it was saved
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))
    if state.get("numpy") is not None:
        kind, keys, pos, has_gauss, cached = state["numpy"]
        np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))


def dedupe_tensors(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Keep one name per underlying storage (aliased tensors such as a shared projection)."""
    out, seen = {}, set()
    for k, v in tensors.items():
        key = (v.data_ptr(), tuple(v.shape))
        if key in seen:
            continue
        seen.add(key)
        out[k] = v
    return out


def _undedupe(tensors: dict[str, torch.Tensor], module: nn.Module) -> dict[str, torch.Tensor]:
    """Refill names that :func:`dedupe_tensors` dropped, from the module's own aliasing."""
    full, by_ptr = dict(tensors), {}
    for k, v in module.state_dict().items():
        by_ptr.setdefault((v.data_ptr(), tuple(v.shape)), []).append(k)
    for names in by_ptr.values():
        present = [n for n in names if n in tensors]
        for n in names:
            if n not in full and present:
                full[n] = tensors[present[0]]
    return full


# --- the loop -------------------------------------------------------------------------------


def fit(
    *,
    modules: dict[str, nn.Module],
    loss_fn: LossFn,
    loader_for_epoch: Callable[[int], Any],
    config: FitConfig,
    device: torch.device,
    checkpoint_dir: Optional[str | Path] = None,
    eval_fn: Optional[Callable[[], dict[str, float]]] = None,
    desc: str = "train",
    stop_after: Optional[int] = None,
    settings: Optional[dict[str, Any]] = None,
) -> TrainResult:
    """Train ``modules`` to minimise ``loss_fn(batch)["total"]``; resume from ``checkpoint_dir``.

    ``loader_for_epoch(e)`` must give the same batches for the same ``e`` (seed the shuffle
    with the epoch, as :meth:`FitConfig.loader_for_epoch` does) so a resumed run skips exactly
    the batches it has already seen. ``config``: epochs, learning rate and the optimiser's
    settings; with ``config.accumulation_steps`` batches whose gradients add up, a step is that
    many batches. ``eval_fn`` runs after each epoch (e.g. dev accuracy), in every
    process. ``stop_after`` raises :class:`Interrupted` after that many steps, after
    checkpointing — it stands in for a kill (at the end of an epoch: after that epoch's
    evaluation and checkpoint, as a kill right after them). ``settings``: what determines the
    result (see :mod:`~tinybert_lib.records`); stored in the checkpoint, and a checkpoint
    written with other settings is refused rather than resumed.
    """
    epochs, accumulation_steps, log_every = config.epochs, config.accumulation_steps, config.log_every
    accelerator = make_accelerator(device, accumulation_steps)
    if device.type == "cpu":
        keep_freed_memory()
    main = is_main_process()  # the one that writes checkpoints, logs and the progress bar
    for m in modules.values():
        m.train()
    batches_per_epoch = len(loader_for_epoch(0))
    steps_per_epoch = math.ceil(batches_per_epoch / accumulation_steps)
    total = steps_per_epoch * epochs
    optimizer = make_optimizer(modules.values(), config.lr, config.weight_decay)
    scheduler = linear_schedule(optimizer, total, config.warmup_ratio)
    train_step, optimizer, scheduler = accelerator.prepare(TrainStep(modules, loss_fn), optimizer, scheduler)
    ckpt = Checkpoint(checkpoint_dir) if checkpoint_dir is not None else None
    result, step = TrainResult(), 0
    restore_rng: Optional[Callable[[], None]] = None

    if ckpt is not None and main:
        ckpt.recover()  # a kill between the two renames of a save, or in the middle of one
    accelerator.wait_for_everyone()
    if ckpt is not None and ckpt.exists():
        state = ckpt.state()
        if settings is not None:
            check_reuse(ckpt.folder, state.get("settings"), settings, f"the {desc} checkpoint")
        ckpt.load_modules(modules)
        result.history, result.evals = state["history"], state["evals"]
        result.seconds = state.get("seconds", 0.0)
        step = result.resumed_from = state["step"]
        if state.get("done"):
            if main:
                log.info("%s: finished checkpoint found in %s; not training again", desc, ckpt.folder)
            result.steps = step
            return result
        restore_rng = ckpt.load_training_state(optimizer, scheduler, accelerator.scaler, process_index())
        if main:
            log.info("%s: resuming at step %d of %d from %s", desc, step, total, ckpt.folder)

    def save(done: bool = False) -> None:
        if ckpt is None:
            return
        rng_states = gather_object([rng_state()])  # every process's own dropout stream
        if main:
            state = {"step": step, "total_steps": total, "done": done, "history": result.history,
                     "evals": result.evals, "seconds": result.seconds, "num_processes": world_size()}
            if settings is not None:
                state["settings"] = settings
            ckpt.save(modules, state, optimizer, scheduler, accelerator.scaler, rng_states)
        accelerator.wait_for_everyone()

    params = [p for g in optimizer.param_groups for p in g["params"]]
    start = time.perf_counter() - result.seconds
    bar = tqdm(total=total, initial=step, desc=desc, mininterval=2.0, dynamic_ncols=True, disable=not main)
    window: dict[str, torch.Tensor] = {}  # loss components summed over the batches of one step
    in_window = 0
    for epoch in range(step // steps_per_epoch, epochs):
        loader = accelerator.prepare_data_loader(loader_for_epoch(epoch))
        done_in_epoch = (step - epoch * steps_per_epoch) * accumulation_steps
        if done_in_epoch:  # seen before the interruption
            loader = accelerator.skip_first_batches(loader, done_in_epoch)
        # Iterating a DataLoader draws a worker seed from the global generator; undo that draw at
        # the first batch (or restore the checkpoint's state), so that a run resumed at any step,
        # an epoch boundary included, draws the dropout masks an uninterrupted run draws.
        rng_before: Optional[torch.Tensor] = torch.get_rng_state()
        for batch in loader:
            if restore_rng is not None:  # dropout masks continue exactly where they stopped
                restore_rng()
                restore_rng = None
            elif rng_before is not None:
                torch.set_rng_state(rng_before)
            rng_before = None
            losses = training_step(accelerator, train_step, batch, optimizer, scheduler, params, config.max_grad_norm)
            for k, v in losses.items():
                window[k] = window.get(k, 0.0) + v.detach().float()
            in_window += 1
            if not accelerator.sync_gradients:
                continue
            step += 1
            bar.update(1)
            if step % log_every == 0 or step == total:
                names = sorted(window)  # the mean over this step's batches and over all processes
                means = accelerator.reduce(torch.stack([window[k] for k in names]), reduction="mean")
                record = {"step": step, "epoch": epoch, "lr": scheduler.get_last_lr()[0]}
                record.update({k: float(v) / in_window for k, v in zip(names, means)})
                result.history.append(record)
                bar.set_postfix(loss=f"{record['total']:.4f}", refresh=False)
            window, in_window = {}, 0
            result.seconds = time.perf_counter() - start
            if ckpt is not None and step % config.checkpoint_every == 0 and step < total:
                save()
            epoch_done = step == (epoch + 1) * steps_per_epoch  # then stop after the epoch's own checkpoint
            if stop_after is not None and step >= stop_after and step < total and not epoch_done:
                save()
                bar.close()
                raise Interrupted(f"{desc}: stopped after step {step} (checkpoint in {checkpoint_dir})")
        if eval_fn is not None:
            metrics = eval_fn()
            result.evals.append({"epoch": epoch, "step": step, **metrics})
            if main:
                log.info("%s: epoch %d %s", desc, epoch, metrics)
            for m in modules.values():
                m.train()
        result.seconds = time.perf_counter() - start
        save(done=epoch == epochs - 1)
        if stop_after is not None and step >= stop_after and step < total:
            bar.close()
            raise Interrupted(f"{desc}: stopped after step {step}, the end of epoch {epoch} (checkpoint in {checkpoint_dir})")
    bar.close()
    result.steps = step
    return result

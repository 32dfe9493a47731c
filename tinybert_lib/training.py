"""The one training loop every stage shares: optimiser, schedule, AMP, logging, checkpoints.

Lessons: 06-07, 09, 11.

General distillation, teacher fine-tuning and both task-distillation steps differ only in
*what loss a batch gives*; everything else lives here once:

- the settings of a run (:class:`FitConfig`), read from the profile by one builder for every
  stage (:meth:`FitConfig.for_stage`), so no stage can forget one;
- AdamW with weight decay on matrices only, linear warm-up then linear decay;
- gradient clipping; mixed precision: bf16, or fp16 with a scaler, on CUDA; bf16 on a CPU that computes
  it natively when the profile asks (``cpu_bf16``);
- a tqdm progress bar that works in JupyterLab and in papermill logs;
- the loss components logged every ``log_every`` steps into a history list;
- a checkpoint (:mod:`~tinybert_lib.checkpoints`: weights, optimiser/scheduler/RNG state and a
  small JSON) written atomically every ``checkpoint_every`` steps and at the end of each epoch, so
  an interrupted run resumes bit for bit at the step it stopped and a finished run is not trained twice.

:func:`fit` reads as the loop it is (for each epoch, for each batch: forward, backward, clip, step,
log, checkpoint); what it does besides training sits in two helpers below it: the batches of an
epoch, resumed where they stopped (``_epoch_batches``), and the bookkeeping (``_Bookkeeping``:
resuming, records, the progress bar, evaluation, checkpoints, interruptions).

Devices, mixed precision, gradient accumulation and (under ``accelerate launch``) data
sharding and gradient averaging across processes go through Hugging Face Accelerate. In a
single process Accelerate changes nothing you can see: the modules stay plain modules and
the loop reads like any PyTorch loop. With N processes each one takes 1/N of every batch
(the profile's batch size stays the *global* batch), gradients are averaged (the loop calls the
DistributedDataParallel wrapper ``accelerator.prepare`` returns), and only the main process writes
checkpoints, logs and progress bars.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional

import torch
from accelerate import Accelerator, DataLoaderConfiguration, DistributedDataParallelKwargs
from accelerate.state import AcceleratorState, GradientState, is_initialized
from accelerate.utils import gather_object
from torch import nn
from torch.profiler import record_function
from tqdm.auto import tqdm

# Checkpoint is also reached as tl.training.Checkpoint: lessons 06-07 read a stage's checkpoint through it.
from .checkpoints import Checkpoint, rng_state
from .data import make_loader
from .profiles import Profile
from .records import check_reuse
from .runtime import is_main_process, keep_freed_memory, native_cpu_bf16, process_index, world_size
from .stages import STAGES, TRAINING_STAGES

log = logging.getLogger(__name__)

LossFn = Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]]


#: Profile fields every stage reads, besides its own three: the seed and the optimiser's settings.
#: ``log_every`` is not among them: it changes how a run is watched, not what it gives.
COMMON_FIELDS = ("seed", "warmup_ratio", "weight_decay", "max_grad_norm", "grad_accum_steps")

#: The profile fields that give each training stage its epochs, batch size and learning rate
#: (``<stage>_epochs``, ``<stage>_batch_size``, ``<stage>_lr``: see :mod:`~tinybert_lib.stages`).
STAGE_FIELDS: dict[str, dict[str, str]] = {name: STAGES[name].fit_fields for name in TRAINING_STAGES}


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
    cpu_bf16: bool = False  # bf16 autocast on a CPU with native bf16 (see Profile.cpu_bf16)

    @classmethod
    def for_stage(cls, profile: Profile, stage: str, **overrides: Any) -> "FitConfig":
        """The run of training ``stage`` (``general``, ``finetune``, ``intermediate``, ``prediction``) under ``profile``.

        ``overrides`` change fields of the result, e.g. ``epochs=1`` for a shorter run at a stage's settings.
        """
        if stage not in STAGE_FIELDS:
            raise ValueError(f"unknown stage {stage!r}: use {', '.join(STAGE_FIELDS)}.")
        own = {key: getattr(profile, name) for key, name in STAGE_FIELDS[stage].items()}
        config = cls(**own, seed=profile.seed, warmup_ratio=profile.warmup_ratio, weight_decay=profile.weight_decay,
                     max_grad_norm=profile.max_grad_norm, accumulation_steps=profile.grad_accum_steps,
                     log_every=profile.log_every, cpu_bf16=profile.cpu_bf16)
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


def _mixed_precision_for(device: torch.device, cpu_bf16: bool = False) -> str:
    """Mixed precision on CUDA (bf16 where supported, else fp16); bf16 on a CPU with native bf16 when
    ``cpu_bf16``; full precision otherwise."""
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if device.type == "cpu" and cpu_bf16:
        if native_cpu_bf16():
            return "bf16"
        log.warning("cpu_bf16: this CPU has no native bf16 instructions (AVX512-BF16 or AMX); emulated bf16 is "
                    "slower than float32, so this run trains in float32")
    return "no"


def make_accelerator(device: torch.device, accumulation_steps: int = 1, cpu_bf16: bool = False) -> Accelerator:
    """The Accelerate handle of one run: device, precision, gradient sync and accumulation.

    ``split_batches=True``: every process takes its share of the same global batch, so a run
    on N processes sees the batches a single process would (only faster). ``cpu_bf16``: on a CPU
    with native bf16, the forward passes run under bf16 autocast (matrix products in bf16,
    accumulated in float32; the weights, the optimiser and the losses stay float32).
    """
    precision = _mixed_precision_for(device, cpu_bf16)
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
    and has no gradients to share. Call the object ``accelerator.prepare`` returns, not this
    one: only the wrapper's forward prepares the averaging (and, on CUDA, mixed precision).
    """

    def __init__(self, modules: dict[str, nn.Module], loss_fn: LossFn) -> None:
        super().__init__()
        self.parts = nn.ModuleDict(modules)
        self.loss_fn = loss_fn

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return self.loss_fn(batch)


def move(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


# --- the loop -------------------------------------------------------------------------------


def training_step(accelerator: Accelerator, model: nn.Module, batch: dict[str, torch.Tensor], optimizer, scheduler,
                  params: list[nn.Parameter], max_grad_norm: float) -> dict[str, torch.Tensor]:
    """One batch of :func:`fit`: loss, backward and, once the accumulated gradients are complete,
    clipping and the optimiser step. ``model``: what ``accelerator.prepare`` gave for a
    :class:`TrainStep`. ``bench.course_step`` times this same function."""
    with accelerator.accumulate(model):
        losses = model(batch)
        with record_function("backward"):  # the phases bench.profile_step reports
            accelerator.backward(losses["total"])
        with record_function("optimizer"):
            if accelerator.sync_gradients:
                accelerator.clip_grad_norm_(params, max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
    return losses


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
    accelerator = make_accelerator(device, config.accumulation_steps, config.cpu_bf16)
    if device.type == "cpu":
        keep_freed_memory()
    for m in modules.values():
        m.train()
    steps_per_epoch = math.ceil(len(loader_for_epoch(0)) / config.accumulation_steps)
    total = steps_per_epoch * config.epochs
    optimizer = make_optimizer(modules.values(), config.lr, config.weight_decay)
    scheduler = linear_schedule(optimizer, total, config.warmup_ratio)
    # The loop calls what prepare returns, never `modules` themselves: with several processes it is
    # the DistributedDataParallel wrapper, whose forward sets up the averaging of the gradients.
    model, optimizer, scheduler = accelerator.prepare(TrainStep(modules, loss_fn), optimizer, scheduler)
    params = [p for g in optimizer.param_groups for p in g["params"]]
    books = _Bookkeeping(accelerator, modules, optimizer, scheduler, checkpoint_dir, settings, desc, total)
    step, restore_rng = books.resume()
    if books.finished:
        return books.result

    try:
        for epoch in range(step // steps_per_epoch, config.epochs):
            seen = (step - epoch * steps_per_epoch) * config.accumulation_steps  # batches trained on before a resume
            for batch in _epoch_batches(accelerator, loader_for_epoch(epoch), seen, restore_rng):
                losses = training_step(accelerator, model, batch, optimizer, scheduler, params, config.max_grad_norm)
                books.add(losses)
                if not accelerator.sync_gradients:
                    continue  # gradients still adding up: no optimiser step yet
                step += 1
                books.step_done(step, epoch, scheduler.get_last_lr()[0], config.log_every)
                # stop_after at an epoch's last step stops after the epoch's evaluation, below
                stop = stop_after is not None and stop_after <= step < (epoch + 1) * steps_per_epoch
                if (step % config.checkpoint_every == 0 and step < total) or stop:
                    books.save(step)
                if stop:
                    books.interrupt(step)
            restore_rng = None  # the checkpoint's random state starts the first resumed epoch only
            if eval_fn is not None:
                books.evaluate(eval_fn, epoch, step)
            books.save(step, done=epoch == config.epochs - 1)
            if stop_after is not None and stop_after <= step < total:
                books.interrupt(step, epoch)
    except BaseException:  # an error or Ctrl-C: end the bar's line, so the message stands on its own
        books.close_bar()
        raise
    return books.finish(step)


def _epoch_batches(accelerator: Accelerator, loader: Any, skip: int,
                   restore_rng: Optional[Callable[[], None]]) -> Iterator[dict[str, torch.Tensor]]:
    """The batches of one epoch after the first ``skip``, this process's share of each.

    Starting to iterate a DataLoader draws a worker seed from the global generator; that draw is
    undone at the first batch (or the checkpoint's random state put back: ``restore_rng``), so a
    run resumed at any step, an epoch boundary included, draws the dropout masks an uninterrupted
    run draws.
    """
    loader = accelerator.prepare_data_loader(loader)
    if skip:
        loader = accelerator.skip_first_batches(loader, skip)
    rng_before = torch.get_rng_state()
    for i, batch in enumerate(loader):
        if i == 0:
            if restore_rng is not None:
                restore_rng()
            else:
                torch.set_rng_state(rng_before)
        yield batch


class _Bookkeeping:
    """What :func:`fit` does besides training: resuming, loss records, the progress bar, the clock,
    evaluation, checkpoints and interruptions. Only the main process writes, logs and shows a bar."""

    def __init__(self, accelerator: Accelerator, modules: dict[str, nn.Module], optimizer, scheduler,
                 checkpoint_dir: Optional[str | Path], settings: Optional[dict[str, Any]], desc: str,
                 total: int) -> None:
        self.accelerator, self.modules, self.optimizer, self.scheduler = accelerator, modules, optimizer, scheduler
        self.checkpoint_dir, self.settings, self.desc, self.total = checkpoint_dir, settings, desc, total
        self.ckpt = Checkpoint(checkpoint_dir) if checkpoint_dir is not None else None
        self.main = is_main_process()
        self.result, self.finished = TrainResult(), False
        self.window: dict[str, torch.Tensor] = {}  # loss components summed over the batches of one step
        self.in_window = 0
        self.start = 0.0  # the clock and the bar start in resume(), once the run is known to train
        self.bar: Optional[tqdm] = None

    def resume(self) -> tuple[int, Optional[Callable[[], None]]]:
        """Load the checkpoint, if any: the step to start at, and the function that puts back its random state."""
        ckpt, result, restore_rng = self.ckpt, self.result, None
        if ckpt is not None and self.main:
            ckpt.recover()  # a kill between the two renames of a save, or in the middle of one
        self.accelerator.wait_for_everyone()
        if ckpt is not None and ckpt.exists():
            state = ckpt.state()
            if self.settings is not None:
                check_reuse(ckpt.folder, state.get("settings"), self.settings, f"the {self.desc} checkpoint")
            ckpt.load_modules(self.modules)
            result.history, result.evals = state["history"], state["evals"]
            result.seconds = state.get("seconds", 0.0)
            result.resumed_from = state["step"]
            if state.get("done"):
                if self.main:
                    log.info("%s: finished checkpoint found in %s; not training again", self.desc, ckpt.folder)
                result.steps, self.finished = result.resumed_from, True
                return result.resumed_from, None
            restore_rng = ckpt.load_training_state(self.optimizer, self.scheduler, self.accelerator.scaler,
                                                   process_index())
            if self.main:
                log.info("%s: resuming at step %d of %d from %s", self.desc, result.resumed_from, self.total,
                         ckpt.folder)
        self.start = time.perf_counter() - result.seconds
        self.bar = tqdm(total=self.total, initial=result.resumed_from, desc=self.desc, mininterval=2.0,
                        dynamic_ncols=True, disable=not self.main)
        return result.resumed_from, restore_rng

    def add(self, losses: dict[str, torch.Tensor]) -> None:
        """Add one batch's loss components to the current step's."""
        for k, v in losses.items():
            self.window[k] = self.window.get(k, 0.0) + v.detach().float()
        self.in_window += 1

    def step_done(self, step: int, epoch: int, lr: float, log_every: int) -> None:
        """Count the step; every ``log_every`` steps (and at the last) record the mean of each loss
        component over this step's batches and over all processes."""
        self.bar.update(1)
        if step % log_every == 0 or step == self.total:
            names = sorted(self.window)
            means = self.accelerator.reduce(torch.stack([self.window[k] for k in names]), reduction="mean")
            record = {"step": step, "epoch": epoch, "lr": lr}
            record.update({k: float(v) / self.in_window for k, v in zip(names, means)})
            self.result.history.append(record)
            self.bar.set_postfix(loss=f"{record['total']:.4f}", refresh=False)
        self.window, self.in_window = {}, 0
        self.result.seconds = time.perf_counter() - self.start

    def evaluate(self, eval_fn: Callable[[], dict[str, float]], epoch: int, step: int) -> None:
        """Run ``eval_fn`` at the end of ``epoch`` and record its metrics."""
        metrics = eval_fn()
        self.result.evals.append({"epoch": epoch, "step": step, **metrics})
        if self.main:
            log.info("%s: epoch %d %s", self.desc, epoch, metrics)
        for m in self.modules.values():  # back to training mode after the evaluation
            m.train()

    def save(self, step: int, done: bool = False) -> None:
        """Write the checkpoint (the main process), with every process's own random state (its dropout stream)."""
        self.result.seconds = time.perf_counter() - self.start
        if self.ckpt is None:
            return
        rng_states = gather_object([rng_state()])
        if self.main:
            result = self.result
            state = {"step": step, "total_steps": self.total, "done": done, "history": result.history,
                     "evals": result.evals, "seconds": result.seconds, "num_processes": world_size()}
            if self.settings is not None:
                state["settings"] = self.settings
            self.ckpt.save(self.modules, state, self.optimizer, self.scheduler, self.accelerator.scaler, rng_states)
        self.accelerator.wait_for_everyone()

    def close_bar(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def interrupt(self, step: int, epoch: Optional[int] = None) -> None:
        """Stop as a kill would, after the checkpoint: raise :class:`Interrupted`."""
        self.bar.close()
        where = f"step {step}" if epoch is None else f"step {step}, the end of epoch {epoch}"
        raise Interrupted(f"{self.desc}: stopped after {where} (checkpoint in {self.checkpoint_dir})")

    def finish(self, step: int) -> TrainResult:
        """The result of a run that trained to the end."""
        self.bar.close()
        self.result.steps = step
        return self.result

"""The one training loop every stage shares: optimiser, schedule, AMP, logging, checkpoints.

General distillation, teacher fine-tuning and both task-distillation steps differ only in
*what loss a batch gives*; everything else lives here once:

- AdamW with weight decay on matrices only, linear warm-up then linear decay;
- gradient clipping; mixed precision (bf16, or fp16 with a scaler) on CUDA only;
- a tqdm progress bar that works in JupyterLab and in papermill logs;
- the loss components logged every ``log_every`` steps into a history list;
- a checkpoint (safetensors weights + optimiser/scheduler/RNG state + a small JSON) written
  atomically every ``checkpoint_every`` steps and at the end of each epoch, so an interrupted
  run resumes at the step it stopped and a finished run is not trained twice.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm.auto import tqdm

log = logging.getLogger(__name__)

LossFn = Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]]


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
    """AdamW; biases and LayerNorm weights get no weight decay (BERT's convention)."""
    decay, no_decay, seen = [], [], set()
    for module in modules:
        for name, p in module.named_parameters():
            if not p.requires_grad or id(p) in seen:  # shared projections appear once
                continue
            seen.add(id(p))
            (no_decay if p.ndim < 2 else decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr)


def linear_schedule(optimizer: torch.optim.Optimizer, total_steps: int, warmup_ratio: float) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up over ``warmup_ratio`` of the steps, then linear decay to 0."""
    from transformers import get_linear_schedule_with_warmup

    return get_linear_schedule_with_warmup(optimizer, int(warmup_ratio * total_steps), max(total_steps, 1))


def autocast_for(device: torch.device):
    """Mixed precision on CUDA (bf16 where supported, else fp16); full precision elsewhere."""
    if device.type != "cuda":
        return contextlib.nullcontext(), None
    if torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16), None
    return torch.autocast("cuda", dtype=torch.float16), torch.amp.GradScaler("cuda")


def move(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


# --- checkpoints ----------------------------------------------------------------------------


class Checkpoint:
    """A checkpoint folder: ``<name>.safetensors`` per module, ``optim.pt``, ``state.json``.

    ``save`` writes a complete new folder beside the old one and swaps it in, so a kill at any
    moment leaves either the previous checkpoint or the new one, never a mix.
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    def exists(self) -> bool:
        return (self.folder / "state.json").is_file()

    def state(self) -> dict[str, Any]:
        return json.loads((self.folder / "state.json").read_text())

    def save(self, modules: dict[str, nn.Module], state: dict[str, Any], optimizer=None, scheduler=None, scaler=None) -> None:
        self.folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{self.folder.name}.", dir=self.folder.parent))
        try:
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
                        "rng_cpu": torch.get_rng_state(),
                        "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
                    },
                    tmp / "optim.pt",
                )
            (tmp / "state.json").write_text(json.dumps(state, indent=1))
            old = self.folder.with_name(f".{self.folder.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            if self.folder.exists():
                os.replace(self.folder, old)
            os.replace(tmp, self.folder)
            shutil.rmtree(old, ignore_errors=True)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def load_modules(self, modules: dict[str, nn.Module]) -> None:
        for name, module in modules.items():
            tensors = load_file(str(self.folder / f"{name}.safetensors"))
            module.load_state_dict(_undedupe(tensors, module), strict=True)

    def load_training_state(self, optimizer, scheduler=None, scaler=None) -> Callable[[], None]:
        """Restore optimiser, schedule and scaler; return a function that restores the RNGs.

        The RNGs are restored later, right before the first resumed step, because creating a
        DataLoader iterator draws from the global generator.
        """
        saved = torch.load(self.folder / "optim.pt", weights_only=False)
        optimizer.load_state_dict(saved["optimizer"])
        if scheduler is not None and saved["scheduler"] is not None:
            scheduler.load_state_dict(saved["scheduler"])
        if scaler is not None and saved["scaler"] is not None:
            scaler.load_state_dict(saved["scaler"])

        def restore_rng() -> None:
            torch.set_rng_state(saved["rng_cpu"])
            if saved["rng_cuda"] is not None and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(saved["rng_cuda"])

        return restore_rng


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
    epochs: int,
    lr: float,
    device: torch.device,
    warmup_ratio: float = 0.1,
    weight_decay: float = 0.01,
    max_grad_norm: float = 1.0,
    checkpoint_dir: Optional[str | Path] = None,
    checkpoint_every: int = 200,
    log_every: int = 10,
    eval_fn: Optional[Callable[[], dict[str, float]]] = None,
    desc: str = "train",
    stop_after: Optional[int] = None,
) -> TrainResult:
    """Train ``modules`` to minimise ``loss_fn(batch)["total"]``; resume from ``checkpoint_dir``.

    ``loader_for_epoch(e)`` must give the same batches for the same ``e`` (seed the shuffle
    with the epoch) so a resumed run skips exactly the batches it has already seen.
    ``eval_fn`` runs after each epoch (e.g. dev accuracy). ``stop_after`` raises
    :class:`Interrupted` after that many steps, after checkpointing — it stands in for a kill.
    """
    for m in modules.values():
        m.to(device).train()
    steps_per_epoch = len(loader_for_epoch(0))
    total = steps_per_epoch * epochs
    optimizer = make_optimizer(modules.values(), lr, weight_decay)
    scheduler = linear_schedule(optimizer, total, warmup_ratio)
    autocast, scaler = autocast_for(device)
    ckpt = Checkpoint(checkpoint_dir) if checkpoint_dir is not None else None
    result, step = TrainResult(), 0
    restore_rng: Optional[Callable[[], None]] = None

    if ckpt is not None and ckpt.exists():
        state = ckpt.state()
        ckpt.load_modules(modules)
        result.history, result.evals = state["history"], state["evals"]
        result.seconds = state.get("seconds", 0.0)
        step = result.resumed_from = state["step"]
        if state.get("done"):
            log.info("%s: finished checkpoint found in %s; not training again", desc, ckpt.folder)
            result.steps = step
            return result
        restore_rng = ckpt.load_training_state(optimizer, scheduler, scaler)
        log.info("%s: resuming at step %d of %d from %s", desc, step, total, ckpt.folder)

    def save(done: bool = False) -> None:
        if ckpt is not None:
            state = {"step": step, "total_steps": total, "done": done, "history": result.history,
                     "evals": result.evals, "seconds": result.seconds}
            ckpt.save(modules, state, optimizer, scheduler, scaler)

    params = [p for g in optimizer.param_groups for p in g["params"]]
    start = time.perf_counter() - result.seconds
    bar = tqdm(total=total, initial=step, desc=desc, mininterval=2.0, dynamic_ncols=True)
    for epoch in range(step // steps_per_epoch, epochs):
        for i, batch in enumerate(loader_for_epoch(epoch)):
            if epoch * steps_per_epoch + i < step:
                continue  # seen before the interruption
            if restore_rng is not None:  # dropout masks continue exactly where they stopped
                restore_rng()
                restore_rng = None
            with autocast:
                losses = loss_fn(move(batch, device))
            loss = losses["total"]
            optimizer.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.unscale_(optimizer)
            else:
                loss.backward()
            torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
            if scaler is not None:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            scheduler.step()
            step += 1
            bar.update(1)
            if step % log_every == 0 or step == total:
                record = {"step": step, "epoch": epoch, "lr": scheduler.get_last_lr()[0]}
                record.update({k: float(v.detach()) for k, v in losses.items()})
                result.history.append(record)
                bar.set_postfix(loss=f"{record['total']:.4f}", refresh=False)
            result.seconds = time.perf_counter() - start
            if ckpt is not None and step % checkpoint_every == 0 and step < total:
                save()
            if stop_after is not None and step >= stop_after and step < total:
                save()
                bar.close()
                raise Interrupted(f"{desc}: stopped after step {step} (checkpoint in {checkpoint_dir})")
        if eval_fn is not None:
            metrics = eval_fn()
            result.evals.append({"epoch": epoch, "step": step, **metrics})
            log.info("%s: epoch %d %s", desc, epoch, metrics)
            for m in modules.values():
                m.train()
        result.seconds = time.perf_counter() - start
        save(done=epoch == epochs - 1)
    bar.close()
    result.steps = step
    return result

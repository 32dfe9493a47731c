"""Exact resume: a checkpoint folder, and the random state that makes a resumed run bit-identical.

Lessons: 06-07 (a stage's checkpoint, read as ``tl.training.Checkpoint``).

A run killed at any step and started again must end where an uninterrupted run ends. That needs
more than the weights:

- the optimiser's moments, the schedule's position and (fp16 on CUDA) the loss scaler;
- every process's random state (Python, NumPy, torch on the CPU and GPUs), so that dropout draws
  the masks the uninterrupted run would have drawn;
- the step reached and the records so far (``state.json``), written by :func:`~tinybert_lib.training.fit`.

A folder is swapped in whole (:func:`~tinybert_lib.atomic.atomic_folder`), so a kill leaves the old
checkpoint or the new one; ``optim.pt`` is read with ``weights_only=True``, so a file that carries
pickled code is refused, never run; a damaged file is an error that says which folder to delete.
"""

from __future__ import annotations

import json
import logging
import pickle
import random
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from .atomic import atomic_folder, recover_folder
from .errors import CourseError

log = logging.getLogger(__name__)


class CheckpointError(CourseError, RuntimeError):
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
        with atomic_folder(self.folder, "checkpoint") as tmp:
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


# --- random state ---------------------------------------------------------------------------


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
    """Put back a state :func:`rng_state` gave."""
    torch.set_rng_state(state["cpu"])
    if state["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if state.get("python") is not None:  # absent from checkpoints written before it was saved
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))
    if state.get("numpy") is not None:
        kind, keys, pos, has_gauss, cached = state["numpy"]
        np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))


# --- shared tensors -------------------------------------------------------------------------


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

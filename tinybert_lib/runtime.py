"""Seeds and devices: the two things every run sets first."""

from __future__ import annotations

import os
import random

import numpy as np
import torch


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and every GPU) so a re-run gives the same numbers."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device
    os.environ["PYTHONHASHSEED"] = str(seed)


def pick_device(preference: "str | torch.device" = "auto") -> torch.device:
    """Return the device to train on.

    ``"auto"`` takes CUDA, then Apple's MPS, then the CPU. ``"cpu"``, ``"cuda"``, ``"cuda:1"`` or
    ``"mps"`` force one; asking for an accelerator that is not there is an error, not a silent
    fall-back, so a long run never ends up on the wrong device by accident.
    """
    if isinstance(preference, torch.device):
        return preference
    pref = preference.lower()
    if pref == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if pref == "cpu":
        return torch.device("cpu")
    if pref.startswith("cuda"):
        if not torch.cuda.is_available():
            raise RuntimeError(
                f"device {preference!r} asked for, but this torch build sees no CUDA GPU "
                f"(torch {torch.__version__}); use device='auto' or 'cpu', or install a CUDA build of torch "
                "(see README, 'Running on a GPU')."
            )
        return torch.device(pref)
    if pref == "mps":
        if not (getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()):
            raise RuntimeError("device 'mps' asked for, but Apple's MPS backend is not available here; use 'auto' or 'cpu'.")
        return torch.device("mps")
    raise ValueError(f"unknown device {preference!r}: use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'.")

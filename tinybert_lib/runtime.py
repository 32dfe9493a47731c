"""Seeds, devices and processes: the things every run sets first.

Lessons: 00-13 (``set_seed``, ``pick_device``).

A run is one process (a notebook, ``python -m tinybert_lib``) unless it was started by
``accelerate launch`` / ``torchrun``, which set ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK``
for each of several processes. The helpers below read those variables, so single-process
code never touches ``torch.distributed``.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import random
from typing import Iterator

import numpy as np
import torch


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and every GPU) so a re-run gives the same numbers."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device
    os.environ["PYTHONHASHSEED"] = str(seed)


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run the block on one CPU thread, then restore the thread count.

    Two computations of the same step agree to the last bit only if their sums add up in the same
    order; with several threads a sum's split can differ between them. A bitwise comparison
    matters for AdamW: its first step moves each weight by about lr * sign(gradient), so a
    rounding difference in a near-zero gradient becomes a whole step (lessons 06 and 09).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def pick_device(preference: "str | torch.device" = "auto") -> torch.device:
    """Return the device to train on.

    ``"auto"`` takes CUDA, then Apple's MPS, then the CPU. ``"cpu"``, ``"cuda"``, ``"cuda:1"`` or
    ``"mps"`` force one; asking for an accelerator that is not there is an error, not a silent
    fall-back, so a long run never ends up on the wrong device by accident.
    """
    if isinstance(preference, torch.device):
        return preference
    pref = preference.lower()
    if pref in {"auto", "cuda"} and world_size() > 1 and torch.cuda.is_available():
        return torch.device("cuda", _local_process_index())  # one GPU per launched process
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


def keep_freed_memory() -> bool:
    """Let this process reuse the memory it frees instead of handing it back to the OS at once.

    A training step allocates and frees the same large tensors (attention maps, feed-forward
    activations) at every step. By default glibc returns such blocks to the OS when they are
    freed, so the next step pays page faults to get them back: on the CPU an element-wise
    operation on a fresh 25 MB tensor takes about twice as long as on reused memory. Returns
    False (and changes nothing) where the C library is not glibc.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # mallopt's parameter numbers (malloc.h)
    # Blocks up to 32 MB (the most glibc accepts) come from the reusable heap, and up to 1 GiB
    # of free memory may stay in it.
    return bool(libc.mallopt(m_mmap_threshold, 32 * 2**20)) and bool(libc.mallopt(m_trim_threshold, 2**30))


# --- several processes (``accelerate launch``) ------------------------------------------------


def world_size() -> int:
    """How many processes train together (1 unless started by ``accelerate launch``)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def process_index() -> int:
    """This process's rank among all processes (0 = the main process)."""
    return int(os.environ.get("RANK", "0"))


def _local_process_index() -> int:
    """This process's rank on its own machine (which GPU it uses)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main_process() -> bool:
    """True in the one process that writes files, logs and progress bars.

    The one answer the whole library uses, the training loop included (``training.make_accelerator``
    checks that Accelerate agrees).
    """
    return process_index() == 0


def wait_for_everyone() -> None:
    """Block until every process gets here (nothing to wait for in a single process)."""
    if world_size() > 1:
        from accelerate import PartialState

        PartialState().wait_for_everyone()


@contextlib.contextmanager
def main_process_first() -> Iterator[None]:
    """Run the block in the main process first (e.g. to build a cached file), then in the others."""
    if world_size() == 1:
        yield
        return
    from accelerate import PartialState

    with PartialState().main_process_first():
        yield


def native_cpu_bf16() -> bool:
    """Whether this CPU multiplies bf16 matrices in hardware (AVX512-BF16 or AMX), not by emulation."""
    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:  # a torch build without these probes (not x86): assume emulation
        return False

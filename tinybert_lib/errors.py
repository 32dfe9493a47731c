"""The course's errors: one line that says what went wrong, which file, and what to do.

Tooling: not taught (every command prints these without a traceback; ``--debug`` or
``TINYBERT_DEBUG=1`` shows it).

Every error a person can cause (bad input, a damaged or missing file, a full disk, Ctrl-C, a second
run into the same folder) is a :class:`CourseError`. The command line catches exactly these; anything
else is a bug in the course and keeps its traceback.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from pathlib import Path
from typing import Iterator


class CourseError(Exception):
    """An error the course explains in one line (the command line prints it without a traceback)."""


class ArtifactError(CourseError, RuntimeError):
    """A file the course wrote (or was given) that cannot be read, or is not what its record says."""


class WriteFailedError(CourseError, OSError):
    """A save that could not be finished (full disk, file-size limit); what was there before is intact."""


class InterruptedRun(CourseError, KeyboardInterrupt):
    """Ctrl-C during a run: the folder is clean and the same command resumes."""


def debug_enabled() -> bool:
    """``TINYBERT_DEBUG=1`` (or ``--debug`` on the command line): show tracebacks."""
    return os.environ.get("TINYBERT_DEBUG", "").strip().lower() in {"1", "true", "yes", "on"}


def _first_line(err: BaseException) -> str:
    """The first line of an exception's message (its type when it has none)."""
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0][:300]}" if text else type(err).__name__


# Reading a damaged file fails in many libraries' own ways: safetensors, json, datasets, pyarrow, torch.
_READ_ERRORS: tuple[type[BaseException], ...] = (OSError, ValueError, KeyError, IndexError, TypeError, RuntimeError)
try:  # safetensors' own error is none of the above
    from safetensors import SafetensorError

    _READ_ERRORS += (SafetensorError,)
    _WRITE_ERRORS: tuple[type[BaseException], ...] = (OSError, RuntimeError, SafetensorError)
except ImportError:  # pragma: no cover - safetensors is a dependency
    _WRITE_ERRORS = (OSError, RuntimeError)


@contextlib.contextmanager
def reading(path: str | Path, fix: str) -> Iterator[None]:
    """Turn any failure to read ``path`` into one :class:`ArtifactError` that names it and says ``fix``."""
    try:
        yield
    except CourseError:
        raise
    except _READ_ERRORS as err:
        raise ArtifactError(f"{path} is damaged or unreadable ({_first_line(err)}); {fix}") from err


_NO_SPACE = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))


def _write_failure(err: BaseException, folder: str | Path) -> str | None:
    """Why writing into ``folder`` failed when the cause is the disk or a size limit, else None.

    torch's zip writer reports a full disk as ``RuntimeError: [enforce fail at inline_container.cc]
    ... unexpected pos`` and safetensors as ``os error 28``: such messages are told apart by the
    space left on the disk.
    """
    if isinstance(err, OSError) and err.errno in _NO_SPACE:
        return "no space left on device"
    if isinstance(err, OSError) and err.errno == errno.EFBIG:
        return "a file grew past this process's file-size limit"
    text = str(err)
    if not any(sign in text for sign in ("No space left", "os error 28", "unexpected pos", "file write failed",
                                         "File too large", "os error 27")):
        return None
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        free = 0
    if free < 64 * 2**20 or "No space left" in text or "os error 28" in text:
        return "no space left on device"
    return "the write failed (a file-size limit, or the disk filled up meanwhile)"


@contextlib.contextmanager
def writing(dest: str | Path, what: str = "version") -> Iterator[None]:
    """Turn a write that failed for lack of space into one :class:`WriteFailedError` naming ``dest``.

    Only for writes that go beside ``dest`` and replace it at the end (``atomic``): the previous
    ``what`` is then untouched, and the message says so.
    """
    dest = Path(dest)
    existed = dest.exists()
    try:
        yield
    except CourseError:
        raise
    except _WRITE_ERRORS as err:
        reason = _write_failure(err, dest.parent if dest.parent.exists() else Path.cwd())
        if reason is None:
            raise
        kept = f"the previous {what} is intact" if existed else "nothing was replaced"
        raise WriteFailedError(f"{reason} while writing {dest}; {kept}. Free some space and rerun the same "
                               "command: it resumes from the last checkpoint.") from err

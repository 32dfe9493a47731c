"""One run per artifacts folder: a lock held for as long as a run writes there.

Tooling: not taught (the command line holds it for the whole run; each pipeline stage holds it
while it builds or reads its artifact, so a lesson and a command line cannot mix their files).

The lock is ``fcntl.flock`` on ``<artifacts>/.lock``: the kernel releases it when its process
ends, however it ends (Ctrl-C, an error, kill -9), so a lock left by a process that is gone is
simply taken over. The file holds the holder's pid and command, for the message a second run gets.
Within one process the lock is re-entrant (a run's stages nest inside the command line's lock).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Iterator

from .errors import CourseError

LOCK_NAME = ".lock"

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no flock; runs are not kept apart there
    fcntl = None  # type: ignore[assignment]


class FolderBusyError(CourseError, RuntimeError):
    """Another running process holds the artifacts folder."""


_held: dict[Path, list] = {}  # folder -> [open lock file, depth], this process's locks


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text())
        return f"pid {info['pid']}, started {info['started']}: {info['command']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "a process that has not written its name yet"


def _command() -> str:
    """How this process was started, as a person would type it."""
    program = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python"
    if program == "__main__.py":
        program = "python -m tinybert_lib"
    elif program in {"ipykernel_launcher.py", "-c"}:
        program = "a notebook kernel" if program != "-c" else "python -c"
    return " ".join([program, *sys.argv[1:]])[:200] if program != "a notebook kernel" else program


@contextlib.contextmanager
def artifacts_lock(folder: str | Path, wait: float = 0.0) -> Iterator[None]:
    """Hold ``folder``'s lock; another process's run into it waits up to ``wait`` seconds, then stops.

    Raises :class:`FolderBusyError` (one line naming the running process) when the folder stays busy.
    """
    folder = Path(folder).expanduser().resolve()
    if fcntl is None:
        yield
        return
    if folder in _held:  # re-entrant: a stage inside a run that already holds the folder
        _held[folder][1] += 1
        try:
            yield
        finally:
            _held[folder][1] -= 1
        return
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    handle = open(path, "a+")
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() >= deadline:
                handle.close()
                raise FolderBusyError(
                    f"another run is using {folder} ({_holder(path)}); wait for it to finish, or give this run "
                    "another artifacts folder (--artifacts PATH, or artifacts_dir in a lesson).") from None
            time.sleep(0.5)
    # The lock is ours (a stale file from a process that is gone is simply overwritten).
    handle.seek(0)
    handle.truncate()
    handle.write(json.dumps({"pid": os.getpid(), "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                             "command": _command()}))
    handle.flush()
    _held[folder] = [handle, 1]
    try:
        yield
    finally:
        del _held[folder]
        handle.close()  # closing the file releases the flock

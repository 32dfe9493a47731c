"""Writing files and folders so that a kill at any moment leaves the old version or the new one.

Tooling: not taught (every artifact the stages write goes through it).

Every artifact the course writes (checkpoints, exported models, summaries) goes through the
helpers below: write beside the final place, flush to disk, then rename into place. Files and
folders get the modes the user's umask gives (``tempfile`` would make them private, 0600/0700).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from pathlib import Path
from typing import Iterator

from .errors import writing

TMP_TAG = ".tmp-"  # temporary siblings are named ``.<name>.tmp-<pid>-<random>``


def _current_umask() -> int:
    """The process's umask (read by setting and restoring it; there is no getter)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _apply_umask(path: str | Path) -> None:
    """Give ``path`` (and everything under a folder) the modes a plain ``open``/``mkdir`` would."""
    mask = _current_umask()
    path = Path(path)
    if path.is_dir():
        os.chmod(path, 0o777 & ~mask)
        for root, dirs, files in os.walk(path):
            for d in dirs:
                os.chmod(os.path.join(root, d), 0o777 & ~mask)
            for f in files:
                os.chmod(os.path.join(root, f), 0o666 & ~mask)
    else:
        os.chmod(path, 0o666 & ~mask)


def _fsync_path(path: Path) -> None:
    flags = os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if path.is_dir() else 0)
    try:
        fd = os.open(path, flags)
    except OSError:  # some filesystems refuse to open folders; the data is still written
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_tree(path: str | Path) -> None:
    """Flush a file, or every file and folder under ``path``, to disk."""
    path = Path(path)
    if path.is_dir():
        for root, _, files in os.walk(path):
            for f in files:
                _fsync_path(Path(root) / f)
            _fsync_path(Path(root))
    else:
        _fsync_path(path)


def _temp_sibling(dest: str | Path) -> Path:
    """A fresh name beside ``dest`` (same filesystem, so renaming onto ``dest`` is atomic)."""
    dest = Path(dest)
    return dest.with_name(f".{dest.name}{TMP_TAG}{os.getpid()}-{uuid.uuid4().hex[:8]}")


def old_sibling(dest: str | Path) -> Path:
    """Where :func:`atomic_folder` parks the previous version during the swap."""
    dest = Path(dest)
    return dest.with_name(f".{dest.name}.old")


def _atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temp file, fsync, rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_sibling(path)
    try:
        with writing(path, "file"), open(tmp, "wb") as f:  # plain open: the umask's mode, not mkstemp's 0600
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_path(path.parent)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return _atomic_write_bytes(path, text.encode("utf-8"))


@contextlib.contextmanager
def atomic_file(path: str | Path, what: str = "file") -> Iterator[Path]:
    """Yield a temporary path to write (by any library); on success it replaces ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_sibling(path)
    try:
        with writing(path, what):
            yield tmp
            _apply_umask(tmp)
            _fsync_tree(tmp)
        os.replace(tmp, path)
        _fsync_path(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_folder(dest: str | Path, what: str = "version") -> Iterator[Path]:
    """Yield an empty temporary folder to fill; on success it replaces ``dest`` as a whole.

    The previous ``dest`` is parked at ``.<name>.old`` between the two renames, so a kill
    there leaves a complete folder that :func:`recover_folder` puts back.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    recover_folder(dest)
    tmp = _temp_sibling(dest)
    tmp.mkdir()
    try:
        with writing(dest, what):  # a full disk: one line, and the previous folder stays in place
            yield tmp
            _apply_umask(tmp)
            _fsync_tree(tmp)
        old = old_sibling(dest)
        shutil.rmtree(old, ignore_errors=True)
        if dest.exists():
            os.replace(dest, old)
        os.replace(tmp, dest)
        _fsync_path(dest.parent)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists but belongs to someone else
        return True
    return True


def recover_folder(dest: str | Path) -> None:
    """Undo what a kill during :func:`atomic_folder` left behind.

    A kill between the two renames leaves only ``.<name>.old``: it is complete, so it is put
    back. An ``.old`` beside a present ``dest`` is stale and removed, and so are temporary
    siblings whose writing process is gone.
    """
    dest = Path(dest)
    old = old_sibling(dest)
    if old.is_dir():
        if dest.exists():
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(old, dest)
    if not dest.parent.is_dir():
        return
    prefix = f".{dest.name}{TMP_TAG}"
    for orphan in dest.parent.glob(f"{prefix}*"):
        pid = orphan.name[len(prefix):].split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and _pid_alive(int(pid)):
            continue  # another live process is writing it
        if orphan.is_dir():
            shutil.rmtree(orphan, ignore_errors=True)
        else:
            orphan.unlink(missing_ok=True)

"""Data faults the checks used to miss: a same-size edit with its mtime set back, a byte that is not UTF-8.

Every test works on a temporary copy of the local data mirror (``TINYBERT_DATA_DIR`` points the
loaders at it), never on the repository's ``data/`` folder, and never reaches the network.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from conftest import MIRROR
from tinybert_lib import data, data_setup

pytestmark = pytest.mark.skipif(not MIRROR.is_dir(), reason=f"data mirror {MIRROR} not found")

TRAIN = "sst2/train.tsv"
SST2_FILES = ("sst2/train.tsv", "sst2/dev.tsv")
# Filesystems stamp times from a coarse clock (a few ms): wait that long so a change shows in ctime.
CLOCK_TICK_S = 0.05


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No developer settings, and a fresh in-process record of checked files (as in a new process)."""
    for var in ("DATA_MIRROR", "TINYBERT_DATA_DIR", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(data_setup, "_VERIFIED", {})


def _prepared(root: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A data folder filled by ``prepare_data`` from the mirror (with its manifest), used by the loaders."""
    data_setup.prepare_data(mirror=MIRROR, target=root)
    monkeypatch.setenv("TINYBERT_DATA_DIR", str(root))
    return root


def _linked_copy(root: Path, *copied: str) -> Path:
    """A folder laid out like the mirror: real copies of ``copied``, symlinks (cheap) for the rest."""
    for relpath in data_setup.EXPECTED_SHA256:
        dest = root / relpath
        dest.parent.mkdir(parents=True, exist_ok=True)
        if relpath in copied:
            dest.write_bytes((MIRROR / relpath).read_bytes())
        else:
            dest.symlink_to(MIRROR / relpath)
    return root


def _swap_two_labels_keeping_size_and_mtime(path: Path) -> None:
    """Flip one negative and one positive label in place, then set the mtime back.

    Size, mtime, inode and label counts all stay the same: only the bytes (and the inode change
    time, which user code cannot set back) differ.
    """
    before = path.stat()
    raw = bytearray(path.read_bytes())
    negative, positive = raw.index(b"\t0\n"), raw.index(b"\t1\n")  # both found before either changes
    raw[negative + 1], raw[positive + 1] = ord("1"), ord("0")
    assert raw != path.read_bytes()
    time.sleep(CLOCK_TICK_S)
    with path.open("r+b") as f:  # overwrite in place: the same inode
        f.write(raw)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = path.stat()
    for field in ("st_size", "st_mtime_ns", "st_ino"):
        assert getattr(after, field) == getattr(before, field)


def _put_bytes_at_line_start(path: Path, line_no: int, text: bytes) -> int:
    """Overwrite the start of line ``line_no`` (1-based) with ``text``; returns that line's byte offset."""
    lines = path.read_bytes().splitlines(keepends=True)
    lines[line_no - 1] = text + lines[line_no - 1][len(text):]
    path.write_bytes(b"".join(lines))
    return sum(len(line) for line in lines[: line_no - 1])


# --------------------------------------------------------------------------------------
# A: size and mtime can be restored; the inode change time cannot
# --------------------------------------------------------------------------------------


def test_flipped_labels_with_size_and_mtime_restored_are_refused(tmp_path, monkeypatch):
    root = _prepared(tmp_path / "data", monkeypatch)
    assert len(data.load_sst2("train", limit=4)) == 4  # checked once, remembered in this process
    _swap_two_labels_keeping_size_and_mtime(root / TRAIN)

    # In the same process (it checked the file before) ...
    verified = r"sst2/train\.tsv is not the file `data prepare` verified"
    with pytest.raises(data.DataIntegrityError, match=verified) as info:
        data.load_sst2("train", limit=4)
    message = str(info.value)
    assert "\n" not in message and "data prepare" in message
    # ... and in a new one, which has only the manifest to go on.
    monkeypatch.setattr(data_setup, "_VERIFIED", {})
    with pytest.raises(data.DataIntegrityError, match=r"sst2/train\.tsv is not the file"):
        data_setup._require(TRAIN, strict=True)


def test_an_old_manifest_costs_one_rehash_and_still_catches_a_restored_mtime(tmp_path, monkeypatch):
    root = _prepared(tmp_path / "data", monkeypatch)
    manifest_path = root / data_setup.MANIFEST
    # A manifest as written before inode and ctime were recorded: size, mtime and sha256 only.
    old = {relpath: {k: v for k, v in entry.items() if k not in ("ino", "ctime_ns")}
           for relpath, entry in json.loads(manifest_path.read_text()).items()}
    manifest_path.write_text(json.dumps(old))
    calls: list[str] = []
    real = data_setup._sha256
    monkeypatch.setattr(data_setup, "_sha256", lambda path: calls.append(path.name) or real(path))

    data_setup._require(TRAIN, strict=True)
    assert calls == ["train.tsv"], "a manifest without inode and ctime must make the check hash the file once"
    assert {"ino", "ctime_ns"} <= set(json.loads(manifest_path.read_text())[TRAIN])
    monkeypatch.setattr(data_setup, "_VERIFIED", {})
    data_setup._require(TRAIN, strict=True)
    assert calls == ["train.tsv"], "once recorded again, the check is cheap"

    manifest_path.write_text(json.dumps(old))  # back to the old manifest, then the fooling edit
    monkeypatch.setattr(data_setup, "_VERIFIED", {})
    _swap_two_labels_keeping_size_and_mtime(root / TRAIN)
    with pytest.raises(data_setup.DataIntegrityError, match=r"sst2/train\.tsv is not the file"):
        data_setup._require(TRAIN, strict=True)


def test_an_unchanged_file_is_not_hashed_again_and_a_touched_one_once(tmp_path, monkeypatch):
    root = _prepared(tmp_path / "data", monkeypatch)
    calls: list[str] = []
    real = data_setup._sha256
    monkeypatch.setattr(data_setup, "_sha256", lambda path: calls.append(path.name) or real(path))

    for relpath in SST2_FILES:  # warm: the manifest prepare_data wrote matches
        data_setup._require(relpath, strict=True)
    assert calls == []

    train = root / TRAIN
    time.sleep(CLOCK_TICK_S)
    os.chmod(train, train.stat().st_mode)  # the same bytes and mode: only the inode change time moves
    monkeypatch.setattr(data_setup, "_VERIFIED", {})  # a new process
    start = time.perf_counter()
    for relpath in SST2_FILES:
        data_setup._require(relpath, strict=True)
    cold_s = time.perf_counter() - start
    assert calls == ["train.tsv"]
    assert cold_s < 2.0, f"checking SST-2 after a ctime change took {cold_s:.2f} s"
    entry = json.loads((root / data_setup.MANIFEST).read_text())[TRAIN]
    assert (entry["ino"], entry["ctime_ns"]) == (train.stat().st_ino, train.stat().st_ctime_ns)

    monkeypatch.setattr(data_setup, "_VERIFIED", {})
    for relpath in SST2_FILES:
        data_setup._require(relpath, strict=True)
    assert calls == ["train.tsv"], "the manifest was updated: the next check must not hash again"


# --------------------------------------------------------------------------------------
# B: a byte that is not UTF-8 is one line naming the file, the line and the byte
# --------------------------------------------------------------------------------------


def test_prepare_names_the_file_and_line_of_a_byte_that_is_not_utf8(tmp_path, monkeypatch, capsys):
    root = _linked_copy(tmp_path / "data", TRAIN)  # no mirror: prepare reads the folder's own files
    offset = _put_bytes_at_line_start(root / TRAIN, 17, b"caf\xe9")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    assert data_setup.main(["prepare", "--target", str(root)]) == 1
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and "Traceback" not in err
    where = f"(byte 0xe9 at column 4, byte offset {offset + 3:,} in the file)"
    assert f"sst2/train.tsv, line 17: not valid UTF-8 {where}" in err


def test_loaders_name_the_file_and_line_of_a_byte_that_is_not_utf8(tmp_path, monkeypatch):
    root = _linked_copy(tmp_path / "data", TRAIN, "wikitext-2/wiki.valid.tokens")  # no manifest
    _put_bytes_at_line_start(root / TRAIN, 17, b"caf\xe9")
    _put_bytes_at_line_start(root / "wikitext-2/wiki.valid.tokens", 3, b"\xff")
    monkeypatch.setenv("TINYBERT_DATA_DIR", str(root))

    with pytest.raises(data.DataIntegrityError,
                       match=r"sst2/train\.tsv, line 17: not valid UTF-8 \(byte 0xe9 at column 4"):
        data.load_sst2("train")
    with pytest.raises(data.DataIntegrityError,
                       match=r"wiki\.valid\.tokens, line 3: not valid UTF-8 \(byte 0xff at column 1"):
        data.load_corpus_lines("valid")


def test_a_damaged_mirror_file_is_one_line_too(tmp_path, capsys):
    mirror = _linked_copy(tmp_path / "mirror", TRAIN)
    _put_bytes_at_line_start(mirror / TRAIN, 17, b"caf\xe9")

    assert data_setup.main(["prepare", "--mirror", str(mirror), "--target", str(tmp_path / "data")]) == 1
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and "Traceback" not in err
    assert str(mirror / TRAIN) in err

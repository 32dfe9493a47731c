"""Getting the course data and checking it: the mirror, the hub, checksums, the data folder's record.

Tooling: not taught. ``make data`` runs it; the lessons read the files through :mod:`~tinybert_lib.data`.

The course's files (SST-2, WikiText-2, MRPC, RTE, CoLA) live in :func:`data_dir` (``data/`` in
the repository, or ``$TINYBERT_DATA_DIR``). :func:`prepare_data` fills that folder from a local
mirror (``$DATA_MIRROR``) or, failing that, from the Hugging Face hub, checking every file (sha256,
rows, label counts, each line's format), and records what it verified in ``.prepared.json``;
:func:`_require` checks a file against that record whenever a loader opens it. WikiText-103, the
``gpu`` profile's corpus, is found here too (a local copy, a mirror or the hub), never prepared.
Run it from the shell as::

    python -m tinybert_lib data prepare [--mirror PATH] [--target PATH] [--force]

Setup and command line sit together: this module (the data), :mod:`~tinybert_lib.preflight` (is a
profile ready to run?), and :mod:`~tinybert_lib.cli`, :mod:`~tinybert_lib.predict_cli` and
``__main__`` (the commands). This module imports only the task descriptions
(:mod:`~tinybert_lib.tasks`), atomic writes and where the data folder is (:mod:`~tinybert_lib.paths`)
from ``tinybert_lib``, and ``datasets`` only when the hub is asked, so the pre-run check and
``import tinybert_lib`` stay light.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import logging
import os
import sys
from collections.abc import Iterator
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, TextIO

from .atomic import atomic_file, atomic_write_text
from .errors import CourseError, debug_enabled
from .tasks import SST2, TASKS, Task

if TYPE_CHECKING:
    from datasets import Dataset

logger = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------
# What the course needs, and how to recognise a good copy
# --------------------------------------------------------------------------------------

#: sha256 of each file as shipped by the course's data mirror (see the mirror's SOURCES.md).
#: Files downloaded from the hub are formatted slightly differently, so only their row
#: counts are checked.
EXPECTED_SHA256: dict[str, str] = {
    "sst2/train.tsv": "48eac26399f8456935f81dd9e3a745c1430adb6c62e233ccfe22db4a0d15d1d1",
    "sst2/dev.tsv": "54a9c12c77e402fc14d6a66a506f24d999f596b0176eb777c972cccc2f9cc4b0",
    "wikitext-2/wiki.train.tokens": "728c77e87e176af4730f9a80fc6008bcaff421a7202c1c048877c0eec3685f89",
    "wikitext-2/wiki.valid.tokens": "f0737ed31fc1329026e95cb8b98e19c2a182c39c240ab909dc31abf2f8af58e8",
    "mrpc/train.tsv": "122becc469405bc16f9defcb8715d2a4b7ce600e9d9381e6dc42bfdd1494c51d",
    "mrpc/dev.tsv": "81c8a1a9e1dfe461dd2c1a4f98f43fe18bece44d2bf9e3d0b245b88e5aa5eaf7",
    "rte/train.tsv": "41e3a9b063433392343fad9e962cf2f58b681c78d8f71592f4186f0837246c5c",
    "rte/dev.tsv": "80230dfa1347282e7b532b06a1004a76a710087541189bf874223ddf0e3819fb",
    "cola/train.tsv": "cb368ebeb9f27d7ad03720d27ddc95687a311bdb100781a2fe59a5f5b1bc0624",
    "cola/dev.tsv": "8c013e21dc39957cac37378d87bebe225b694a0d5fe13eded66c2856628833fd",
}

#: Rows per file: data rows for the TSVs (a header excluded), raw lines for WikiText.
EXPECTED_ROWS: dict[str, int] = {
    "sst2/train.tsv": 67_349,
    "sst2/dev.tsv": 872,
    "wikitext-2/wiki.train.tokens": 36_718,
    "wikitext-2/wiki.valid.tokens": 3_760,
    "mrpc/train.tsv": 3_668,
    "mrpc/dev.tsv": 408,
    "rte/train.tsv": 2_490,
    "rte/dev.tsv": 277,
    "cola/train.tsv": 8_551,
    "cola/dev.tsv": 1_043,
}

#: Label counts (by label id, see :mod:`~tinybert_lib.tasks`) of the task files (SOURCES.md): a file
#: with the right row count but flipped or shuffled labels is caught even where no checksum can be compared.
EXPECTED_LABELS: dict[str, dict[int, int]] = {
    "sst2/train.tsv": {0: 29_780, 1: 37_569},
    "sst2/dev.tsv": {0: 428, 1: 444},
    "mrpc/train.tsv": {0: 1_194, 1: 2_474},
    "mrpc/dev.tsv": {0: 129, 1: 279},
    "rte/train.tsv": {0: 1_249, 1: 1_241},  # 0 entailment, 1 not_entailment (GLUE's ids)
    "rte/dev.tsv": {0: 146, 1: 131},
    "cola/train.tsv": {0: 2_528, 1: 6_023},
    "cola/dev.tsv": {0: 322, 1: 721},
}

#: What ``prepare_data`` wrote, in the data folder: sha256 of each file and its stat fields
#: (``_STAT_FIELDS``), so that every load can check cheaply that the file is still the one verified then.
MANIFEST = ".prepared.json"
#: The stat fields a file's manifest entry records. Size and mtime alone can be fooled: an edit of the
#: same length followed by ``os.utime`` (or ``touch -d``, ``cp -p``) restores both. The inode change time
#: cannot be set back by user code (the kernel sets it on every write, chmod, utime or rename) and a file
#: replaced by another has a new inode, so an unchanged tuple means unchanged bytes.
_STAT_FIELDS: tuple[str, ...] = ("size", "mtime_ns", "ino", "ctime_ns")

#: The course's task files, and the task each belongs to (how it is laid out).
TASK_FILES: dict[str, Task] = {relpath: task for task in TASKS.values() for relpath in task.files.values()}
CORPUS_FILES: dict[str, str] = {
    "train": "wikitext-2/wiki.train.tokens",
    "valid": "wikitext-2/wiki.valid.tokens",
}

#: General-distillation corpora a profile may name (``Profile.general_corpus``), besides the path of a text
#: file of one's own (:func:`check_corpus_file`). Both are the tokenised WikiText release, cleaned the same
#: way; WikiText-103's train split is read from the data folder, a mirror or the hub
#: (``data.general_corpus_lines``) and is never part of ``prepare_data``: it is 540 MB.
GENERAL_CORPORA: tuple[str, ...] = ("wikitext-2", "wikitext-103")
#: Where a local copy of WikiText-103 train may lie, in the data folder or in ``$DATA_MIRROR``: the
#: file of that name from the original release (wikitext-103-v1.zip).
WIKITEXT103_TRAIN = "wikitext-103/wiki.train.tokens"
#: Its lines (as ``wc -l`` counts them): a copy with another count is truncated or another file.
WIKITEXT103_ROWS = 1_801_350
_WIKITEXT103_HUB = ("Salesforce/wikitext", "wikitext-103-v1", "train")

# Where the hub fallback gets each file: (dataset, config, split).
_HUB_SOURCES: dict[str, tuple[str, str, str]] = {
    "sst2/train.tsv": ("nyu-mll/glue", "sst2", "train"),
    "sst2/dev.tsv": ("nyu-mll/glue", "sst2", "validation"),
    "wikitext-2/wiki.train.tokens": ("Salesforce/wikitext", "wikitext-2-v1", "train"),
    "wikitext-2/wiki.valid.tokens": ("Salesforce/wikitext", "wikitext-2-v1", "validation"),
    **{relpath: task.hub_source(split) for task in TASKS.values() if task is not SST2
       for split, relpath in task.files.items() if relpath in EXPECTED_SHA256},
}

_MAKE_DATA_HINT = (
    "set DATA_MIRROR=/path/to/mirror (laid out as sst2/train.tsv, sst2/dev.tsv, "
    "wikitext-2/wiki.train.tokens, wikitext-2/wiki.valid.tokens, and mrpc/, rte/, cola/ with train.tsv "
    "and dev.tsv; see data/README.md) "
    "or run `make data` with internet access so the files download from the Hugging Face hub"
)
_DAMAGED_HINT = "the file is damaged: get it again with `make data` (python -m tinybert_lib data prepare --force)"
_NOT_UTF8_HINT = "save the file as UTF-8"


class DataNotFoundError(CourseError, FileNotFoundError):
    """The course data (or a mirror file) is missing; the message says how to get it."""


class DataIntegrityError(CourseError, ValueError):
    """A data file exists but is not the expected one (wrong checksum, row count or encoding)."""


class FileStatus(NamedTuple):
    """What :func:`prepare_data` did with one file."""

    action: str  # "copied", "downloaded" or "skipped" (already present and valid)
    rows: int
    check: str  # what was verified: "sha256+rows" or "rows"


def _load_dataset(*args: Any, **kwargs: Any) -> Any:
    """``datasets.load_dataset``, imported when the hub is first asked (``datasets`` is slow to import)."""
    from datasets import load_dataset as hub_load_dataset

    return hub_load_dataset(*args, **kwargs)


# --------------------------------------------------------------------------------------
# Locations
# --------------------------------------------------------------------------------------


def data_dir() -> Path:
    """Folder holding the course data: ``$TINYBERT_DATA_DIR``, else the checkout's ``data/``, else
    ``./tinybert-build/data`` outside a checkout (:func:`~tinybert_lib.paths.default_data_dir`)."""
    env = os.environ.get("TINYBERT_DATA_DIR")
    if env:
        return Path(env).expanduser()
    from .paths import default_data_dir  # here: ``python -m tinybert_lib.paths`` must not find it imported

    return default_data_dir()


_StatKey = tuple[int, ...]
_VERIFIED: dict[str, _StatKey] = {}  # path -> _stat_key of the file already checked in this process


def _stat_key(st: os.stat_result) -> _StatKey:
    """The values of ``_STAT_FIELDS``: while they stay the same, the file's bytes have not changed."""
    return (st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns)


def _stat_entry(st: os.stat_result) -> dict[str, int]:
    """A manifest entry's stat fields."""
    return dict(zip(_STAT_FIELDS, _stat_key(st)))


def _read_manifest(folder: Path) -> dict[str, dict[str, Any]]:
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return manifest if isinstance(manifest, dict) else {}


def _record_verified(folder: Path, relpath: str, st: os.stat_result, digest: str) -> None:
    """Record in the manifest that ``relpath``, with stat ``st``, was hashed again and is good.

    A copied or restored data folder (new inodes and ctimes) or a manifest written before the inode
    and ctime were recorded costs one re-hash per file; this makes the next check cheap again. ``st``
    was taken before hashing, so a file changed while it was hashed no longer matches and is hashed
    again next time.
    """
    manifest = _read_manifest(folder)  # read again: another process may have updated other entries
    entry = manifest.get(relpath)
    manifest[relpath] = {**(entry if isinstance(entry, dict) else {}), **_stat_entry(st), "sha256": digest,
                         "origin": "mirror" if digest == EXPECTED_SHA256[relpath] else "hub"}
    try:
        atomic_write_text(folder / MANIFEST, json.dumps(manifest, indent=1))
    except OSError as err:  # a read-only data folder: this process remembers it (_VERIFIED), others re-hash
        logger.debug("could not update %s (%s)", folder / MANIFEST, err)


def _require(relpath: str, strict: bool = False) -> Path:
    """Path of a checked data file, or an error that says what is wrong and how to fix it.

    In a folder filled by :func:`prepare_data` (it holds ``.prepared.json``), the file must be
    the one prepared: same size, mtime, inode and inode change time (cheap), else the same sha256
    (and then the manifest records the new stat fields). Elsewhere (a mirror, files of your own)
    it is compared with the course's sha256; a different file is refused when ``strict`` (the
    pre-run check), and used with a warning otherwise.
    """
    root = data_dir()
    path = root / relpath  # an absolute relpath (a task of your own) stays as it is
    if relpath not in EXPECTED_SHA256:  # not a course file: nothing to compare it with
        if not path.is_file():
            raise DataNotFoundError(f"{path} not found: a task's files are read from the data folder ({root}) "
                                    "unless its Task.files gives an absolute path; put the file there or fix the path.")
        return path
    if not path.is_file():
        raise DataNotFoundError(f"{path} not found. To get the course data, {_MAKE_DATA_HINT}.")
    st = path.stat()  # before hashing: a change made while hashing shows in the next check
    key = _stat_key(st)
    if _VERIFIED.get(str(path)) == key:
        return path
    manifest = _read_manifest(root)
    entry = manifest.get(relpath)
    entry = entry if isinstance(entry, dict) else None
    # A manifest from before inode and ctime were recorded lacks them: one re-hash, then recorded.
    if not (entry and tuple(entry.get(field) for field in _STAT_FIELDS) == key):
        digest = _sha256(path)
        accepted = {EXPECTED_SHA256[relpath]} | ({entry.get("sha256")} if entry else set())
        if digest not in accepted:
            message = (
                f"{path} is not the {'file `data prepare` verified' if entry else 'course file'}: "
                f"{st.st_size:,} bytes with sha256 {digest[:16]}..., expected "
                + (f"{entry.get('size', 0):,} bytes with sha256 {str(entry.get('sha256'))[:16]}..." if entry
                   else f"sha256 {EXPECTED_SHA256[relpath][:16]}...")
                + "; it was truncated or edited. Get it again with `make data` "
                "(python -m tinybert_lib data prepare --force), or delete it and run `data prepare`"
            )
            if manifest or strict:
                raise DataIntegrityError(message + ".")
            if str(path) not in _VERIFIED:
                logger.warning("%s; using it anyway (this folder was not filled by `data prepare`)", message)
        elif manifest:  # the same bytes under new stat fields (a copied folder, an old manifest)
            _record_verified(root, relpath, st, digest)
    _VERIFIED[str(path)] = key
    return path


# --------------------------------------------------------------------------------------
# Preparing the data folder
# --------------------------------------------------------------------------------------


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _count_rows(relpath: str, path: Path) -> int:
    """Rows as SOURCES.md counts them: lines (like ``wc -l``), minus a TSV's header (CoLA has none)."""
    lines = 0
    last = b"\n"
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            lines += chunk.count(b"\n")
            last = chunk[-1:]
    if last != b"\n":  # a final line without a newline still counts
        lines += 1
    task = TASK_FILES.get(relpath)
    has_header = task.header if task is not None else relpath.endswith(".tsv")
    return lines - 1 if has_header else lines


def _not_utf8(path: Path, fix: str, err: UnicodeDecodeError | None = None) -> DataIntegrityError:
    """The error for a text file that is not UTF-8: file, 1-based line, the byte and where it is, ``fix``.

    A text-mode read reports only the offset inside its read buffer, so the file is read again as
    bytes, line by line (a UTF-8 character never holds a newline byte), to find the first bad byte.
    """
    offset = 0
    with path.open("rb") as f:
        for number, line in enumerate(f, start=1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as bad:
                where = f"byte 0x{line[bad.start]:02x} at column {bad.start + 1}"
                return DataIntegrityError(f"{path}, line {number}: not valid UTF-8 ({where}, "
                                          f"byte offset {offset + bad.start:,} in the file); {fix}")
            offset += len(line)
    # Not found again: the file changed since the read that failed.
    return DataIntegrityError(f"{path}: not valid UTF-8 ({err.reason if err else 'a bad byte'}); {fix}")


def _utf8_lines(f: TextIO, path: Path, fix: str) -> Iterator[str]:
    """The lines of ``f`` (a text file opened on ``path``); a decoding error becomes :func:`_not_utf8`'s."""
    try:
        yield from f
    except UnicodeDecodeError as err:  # the decoder's own error names neither the file nor the line
        raise _not_utf8(path, fix, err) from None


def _check_rows(relpath: str, path: Path, origin: str) -> int:
    rows = _count_rows(relpath, path)
    expected = EXPECTED_ROWS[relpath]
    if rows != expected:
        raise DataIntegrityError(
            f"{relpath} from {origin}: expected {expected:,} rows, got {rows:,} ({path})"
        )
    return rows


def _row_shape(task: Task) -> str:
    """How a row of the task's files looks, for error messages."""
    if task.file_columns == (task.text_columns[0], task.label_column):
        values = " or ".join(str(i) for i in range(task.num_labels)) if task.labels_in_file == "id" else "name"
        return f"a sentence, a tab and a label {values}"
    return f"{len(task.file_columns)} tab-separated fields ({', '.join(task.file_columns)})"


def _label_ids(task: Task) -> dict[str, int]:
    """What the label column may hold, and the label id each value means."""
    if task.labels_in_file == "name":
        return {name: i for i, name in enumerate(task.label_names)}
    return {str(i): i for i in range(task.num_labels)}


def _read_task_rows(task: Task, path: Path, limit: int | None = None,
                    course_file: bool = True) -> Iterator[tuple[tuple[str, ...], int]]:
    """``((text, ...), label id)`` rows of a task file; a malformed row is an error naming file and line.

    ``course_file``: the file is one of the course's (a damaged copy is fetched again), not one
    of your own (the file or its Task description is wrong).
    """
    fix = _DAMAGED_HINT if course_file else (
        f"fix the file, or task {task.name!r}'s description (Task.file_columns, label_column, label_names)")
    columns = len(task.file_columns)
    text_at = [task.file_columns.index(c) for c in task.text_columns]
    label_at = task.file_columns.index(task.label_column)
    label_ids = _label_ids(task)
    # utf-8-sig: GLUE's MRPC files start with a byte-order mark, which is not part of the header.
    # QUOTE_NONE: a field may start with a double quote, which is text, not CSV quoting.
    with path.open(encoding="utf-8-sig", newline="") as f:
        lines = _utf8_lines(f, path, _DAMAGED_HINT if course_file else _NOT_UTF8_HINT)
        reader = csv.reader(lines, delimiter="\t", quoting=csv.QUOTE_NONE)
        if task.header:
            header = next(reader, None)
            if header != list(task.file_columns):
                raise DataIntegrityError(
                    f"{path}, line 1: expected header {list(task.file_columns)}, got {header}"
                    + ("" if course_file else f"; {fix}"))
        for row in islice(reader, limit):
            if len(row) != columns or row[label_at] not in label_ids:
                shown = "\t".join(row)
                shown = f"{shown[:80]!r}{'...' if len(shown) > 80 else ''}"
                if len(row) != columns:
                    problem = f"expected {_row_shape(task)}, got {len(row)} field(s): {shown}"
                else:
                    problem = (f"unknown label {row[label_at]!r} in column {task.label_column!r} "
                               f"(task {task.name!r} labels: {', '.join(label_ids)}), in {shown}")
                raise DataIntegrityError(f"{path}, line {reader.line_num}: {problem}; {fix}")
            yield tuple(row[i] for i in text_at), label_ids[row[label_at]]


def _check_content(relpath: str, path: Path, origin: str) -> int:
    """Row count, and for a task file every line's format and the label counts; returns the rows."""
    if relpath not in EXPECTED_LABELS:
        return _check_rows(relpath, path, origin)
    task = TASK_FILES[relpath]
    counts = {i: 0 for i in range(task.num_labels)}
    for _, label in _read_task_rows(task, path):
        counts[label] += 1
    rows, expected = sum(counts.values()), EXPECTED_LABELS[relpath]
    if rows != EXPECTED_ROWS[relpath]:
        raise DataIntegrityError(f"{relpath} from {origin}: expected {EXPECTED_ROWS[relpath]:,} rows, got {rows:,} ({path})")
    if counts != expected:
        def show(c: dict[int, int]) -> str:
            return " / ".join(f"{c.get(i, 0):,} {name}" for i, name in enumerate(task.label_names))

        raise DataIntegrityError(
            f"{relpath} from {origin}: expected {show(expected)} labels, got {show(counts)}: the labels are wrong ({path})"
        )
    return rows


def _is_truthy(value: str | None) -> bool:
    return (value or "").strip().upper() in {"1", "TRUE", "YES", "ON"}


def _hub_offline() -> bool:
    return _is_truthy(os.environ.get("HF_HUB_OFFLINE")) or _is_truthy(
        os.environ.get("HF_DATASETS_OFFLINE")
    )


def _copy_verified(relpath: str, src: Path, dest: Path) -> int:
    """Copy src to dest atomically, checking sha256 and row count before dest appears."""
    if not src.is_file():
        raise DataNotFoundError(
            f"mirror file {src} not found: the mirror must hold {relpath} "
            f"(layout: {', '.join(EXPECTED_SHA256)}; see data/README.md)"
        )
    with atomic_file(dest) as tmp:  # a failed check below leaves dest as it was
        digest = hashlib.sha256()
        with src.open("rb") as fin, tmp.open("wb") as fout:
            for chunk in iter(lambda: fin.read(1 << 20), b""):
                digest.update(chunk)
                fout.write(chunk)
        got, expected = digest.hexdigest(), EXPECTED_SHA256[relpath]
        if got != expected:
            raise DataIntegrityError(
                f"checksum mismatch for {relpath} in mirror ({src}): "
                f"expected sha256 {expected}, got {got}"
            )
        rows = _check_rows(relpath, tmp, f"mirror {src}")
    return rows


def _write_from_hub(relpath: str, dest: Path, cache: dict[tuple[str, str], Any]) -> int:
    """Write one file from the hub in the mirror's format (checks the row count only)."""
    name, config, split = _HUB_SOURCES[relpath]
    if (name, config) not in cache:
        logger.info("downloading %s/%s from the Hugging Face hub", name, config)
        cache[(name, config)] = _load_dataset(name, config)
    rows = cache[(name, config)][split]

    with atomic_file(dest) as tmp:
        with tmp.open("w", encoding="utf-8", newline="\n") as f:
            if relpath in TASK_FILES:
                _write_task_rows(f, TASK_FILES[relpath], rows)
            else:
                # The hub keeps each line's own "\n" (blank lines come as ""), so one
                # row is one line of the original wiki.*.tokens file.
                for text in rows["text"]:
                    f.write(text.rstrip("\n") + "\n")
        n = _check_content(relpath, tmp, f"the hub ({name}/{config}, {split})")
    return n


def _write_task_rows(f: Any, task: Task, rows: Any) -> None:
    """A hub split in the layout of the task's files (columns the hub lacks, such as MRPC's ids, left empty)."""
    if task.header:
        f.write("\t".join(task.file_columns) + "\n")
    texts = [rows[field] for field in task.text_fields]  # GLUE's hub columns are the text_fields
    for *values, label in zip(*texts, rows["label"]):
        row = dict.fromkeys(task.file_columns, "")
        for column, text in zip(task.text_columns, values):
            row[column] = " ".join(text.split("\t")).replace("\n", " ")  # no tab or newline may break the row
        row[task.label_column] = str(int(label)) if task.labels_in_file == "id" else task.label_names[int(label)]
        f.write("\t".join(row.values()) + "\n")


def _write_manifest(target_dir: Path) -> None:
    """Record the stat fields (``_STAT_FIELDS``) and sha256 of every prepared file (loads compare)."""
    manifest = {}
    for relpath in EXPECTED_SHA256:
        path = target_dir / relpath
        st, digest = path.stat(), _sha256(path)  # stat first: see _record_verified
        manifest[relpath] = {**_stat_entry(st), "sha256": digest,
                             "origin": "mirror" if digest == EXPECTED_SHA256[relpath] else "hub"}
    try:
        atomic_write_text(target_dir / MANIFEST, json.dumps(manifest, indent=1))
    except OSError as err:  # a read-only folder of verified files: loads compare sha256s instead
        logger.warning("could not record the prepared files in %s (%s)", target_dir / MANIFEST, err)
    _VERIFIED.clear()


def prepare_data(
    mirror: str | os.PathLike[str] | None = None,
    target: str | os.PathLike[str] | None = None,
    force: bool = False,
) -> dict[str, FileStatus]:
    """Fill the data folder with SST-2, WikiText-2, MRPC, RTE and CoLA, verified.

    Args:
        mirror: local folder laid out like ``data/`` (``sst2/train.tsv``, ...). Defaults to
            ``$DATA_MIRROR``. Without one, the files are downloaded from the Hugging Face hub.
        target: folder to fill; defaults to :func:`data_dir`.
        force: re-copy / re-download even files that are already present and valid.

    Returns:
        ``{relative path: FileStatus(action, rows, check)}`` for every file (``EXPECTED_SHA256``).

    Raises:
        DataNotFoundError: no mirror and the hub is unreachable or disabled (offline), or
            the mirror lacks a file.
        DataIntegrityError: a mirror file has the wrong sha256, or a file the wrong row count,
            label counts or a malformed line (named with its file and line); offline, also
            a present file that is damaged and cannot be replaced.

    Writes ``.prepared.json`` (sha256 and stat fields of each file), which every load checks.
    """
    mirror = mirror if mirror is not None else (os.environ.get("DATA_MIRROR") or None)
    mirror_dir = Path(mirror).expanduser() if mirror is not None else None
    target_dir = Path(target).expanduser() if target is not None else data_dir()
    if mirror_dir is not None and not mirror_dir.is_dir():
        raise DataNotFoundError(
            f"data mirror {mirror_dir} is not a folder. To get the data, {_MAKE_DATA_HINT}."
        )

    report: dict[str, FileStatus] = {}
    todo: dict[str, str] = {}  # relative path -> why it must be (re)written
    recorded = _read_manifest(target_dir)
    for relpath in EXPECTED_SHA256:
        dest = target_dir / relpath
        if force or not dest.is_file():
            todo[relpath] = "forced" if dest.is_file() else "missing"
            continue
        digest = _sha256(dest)
        if digest == EXPECTED_SHA256[relpath]:
            report[relpath] = FileStatus("skipped", _count_rows(relpath, dest), "sha256+rows")
        elif mirror_dir is None and recorded.get(relpath, {}).get("sha256") == digest:
            # An earlier hub download, checked when it was written: its bytes differ from the mirror's.
            report[relpath] = FileStatus("skipped", EXPECTED_ROWS[relpath], "rows")
        elif mirror_dir is None:
            try:  # not recorded: check what can be checked without the mirror's bytes
                report[relpath] = FileStatus("skipped", _check_content(relpath, dest, "the data folder"), "rows")
            except DataIntegrityError as err:
                todo[relpath] = f"damaged: {err}"
        else:
            todo[relpath] = f"damaged: sha256 {digest[:16]}... is not the course's {EXPECTED_SHA256[relpath][:16]}..."

    if todo and mirror_dir is None and _hub_offline():
        damaged = {k: v for k, v in todo.items() if v.startswith("damaged")}
        listing = "; ".join(f"{relpath} is {why}" for relpath, why in todo.items())
        error = DataIntegrityError if damaged else DataNotFoundError
        raise error(
            f"course data in {target_dir} incomplete ({listing}) and the Hugging Face hub is disabled "
            f"(HF_HUB_OFFLINE / HF_DATASETS_OFFLINE is set), so nothing was replaced. To get the data, "
            f"{_MAKE_DATA_HINT}."
        )

    hub_cache: dict[tuple[str, str], Any] = {}
    for relpath, why in todo.items():
        dest = target_dir / relpath
        if why.startswith("damaged"):
            logger.warning("%s is %s; replacing it", dest, why)
        if mirror_dir is not None:
            rows = _copy_verified(relpath, mirror_dir / relpath, dest)
            report[relpath] = FileStatus("copied", rows, "sha256+rows")
        else:
            try:
                rows = _write_from_hub(relpath, dest, hub_cache)
            except DataIntegrityError:
                raise
            except Exception as exc:  # no network, hub down, dataset moved, ...
                raise DataNotFoundError(
                    f"could not download {relpath} from the Hugging Face hub "
                    f"({type(exc).__name__}: {exc}). To get the data, {_MAKE_DATA_HINT}."
                ) from exc
            report[relpath] = FileStatus("downloaded", rows, "rows")
    _write_manifest(target_dir)

    for relpath in EXPECTED_SHA256:  # log in a stable order
        status = report[relpath]
        logger.info("%-10s %s (%s rows, %s ok)", status.action, relpath, f"{status.rows:,}", status.check)
    return {relpath: report[relpath] for relpath in EXPECTED_SHA256}


# --------------------------------------------------------------------------------------
# General-distillation corpora: WikiText-2, WikiText-103 (a local copy, a mirror or the hub,
# never prepared) or a text file of one's own
# --------------------------------------------------------------------------------------


class CorpusFileError(CourseError, ValueError):
    """A general-distillation corpus that is neither one the course knows nor a usable text file."""


class CorpusFile(NamedTuple):
    """A UTF-8 text file of one's own as the general-distillation corpus (:func:`check_corpus_file`)."""

    path: Path  # absolute
    sha256: str
    layout: str  # "paragraphs" (blank lines separate the documents) or "lines" (one document per line)
    documents: int


_CORPUS_FILES_READ: dict[str, tuple[_StatKey, CorpusFile]] = {}  # path -> (its _stat_key, what was read)


def is_corpus_file(corpus: str | os.PathLike[str]) -> bool:
    """Whether ``corpus`` (``Profile.general_corpus``) names a file of one's own, not a WikiText corpus."""
    return os.fspath(corpus) not in GENERAL_CORPORA


def _looks_like_path(corpus: str) -> bool:
    return "/" in corpus or os.sep in corpus or corpus.startswith(("~", ".")) or bool(Path(corpus).suffix)


def check_general_corpus(corpus: str | os.PathLike[str]) -> str:
    """``corpus`` if it is a WikiText corpus of the course or an existing file, else :class:`CorpusFileError`.

    Only looks whether the file is there (cheap: every profile runs this); :func:`check_corpus_file` reads it.
    """
    corpus = os.fspath(corpus)
    if corpus in GENERAL_CORPORA:
        return corpus
    path = Path(corpus).expanduser()
    names = ", ".join(GENERAL_CORPORA)
    if path.is_file():
        return corpus
    if path.exists():
        raise CorpusFileError(f"the general-distillation corpus {path.absolute()} is not a file; give a "
                              f"UTF-8 text file, or one of {names}")
    if _looks_like_path(corpus):
        raise CorpusFileError(f"corpus file {path.absolute()} not found (a general-distillation corpus is "
                              f"one of {names}, or the path of a UTF-8 text file)")
    # A typo of a corpus name ("wikitext-3") is far likelier than a file of that name.
    raise CorpusFileError(f"unknown general-distillation corpus {corpus!r}; valid corpora: {names}, or the "
                          f"path of a UTF-8 text file (there is no file {corpus!r} in {Path.cwd()})")


def check_corpus_file(corpus: str | os.PathLike[str]) -> CorpusFile:
    """Read a corpus file of one's own once: its sha256, layout and number of documents.

    Documents are separated by blank lines; a file without a blank line between two lines of text
    holds one document per line. A file that cannot be read, is not UTF-8 (the error names the
    line) or holds no text is a :class:`CorpusFileError` / :class:`DataIntegrityError`. What was
    read is kept while the file's size, mtime, inode and inode change time stay the same.
    """
    check_general_corpus(corpus)
    path = Path(corpus).expanduser().absolute()
    try:
        key = _stat_key(path.stat())
        known = _CORPUS_FILES_READ.get(str(path))
        if known is not None and known[0] == key:
            return known[1]
        digest = hashlib.sha256()
        lines = paragraphs = 0
        in_paragraph = blank_after_text = separated = False
        with path.open("rb") as f:  # bytes: the sha256 is the file's, whatever its line endings
            for number, raw in enumerate(f, start=1):
                digest.update(raw)
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError:
                    raise _not_utf8(path, _NOT_UTF8_HINT) from None
                if number == 1:
                    text = text.removeprefix("\ufeff")  # a byte-order mark is no text
                if text.strip():
                    lines += 1
                    paragraphs += not in_paragraph
                    separated = separated or blank_after_text
                    in_paragraph, blank_after_text = True, False
                else:  # blank lines before the first text or after the last separate nothing
                    in_paragraph, blank_after_text = False, lines > 0
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise CorpusFileError(f"cannot read corpus file {path} ({reason})") from None
    if not lines:
        raise CorpusFileError(f"corpus file {path} holds no text (it is empty or blank); give a UTF-8 text "
                              "file with one document per line, or documents separated by blank lines")
    found = CorpusFile(path, digest.hexdigest(), "paragraphs" if separated else "lines",
                       paragraphs if separated else lines)
    _CORPUS_FILES_READ[str(path)] = (key, found)
    return found


def _corpus_file_documents(corpus: str | os.PathLike[str]) -> Iterator[str]:
    """The documents of a corpus file of one's own (see :func:`check_corpus_file`), each on one line.

    A paragraph's lines are joined with a space, as WikiText keeps a paragraph on one line.
    """
    found = check_corpus_file(corpus)
    paragraph: list[str] = []
    for number, line in enumerate(_read_lines(found.path, _NOT_UTF8_HINT), start=1):
        text = (line.removeprefix("\ufeff") if number == 1 else line).strip()
        if text and found.layout == "lines":
            yield text
        elif text:
            paragraph.append(text)
        elif paragraph:
            yield " ".join(paragraph)
            paragraph = []
    if paragraph:
        yield " ".join(paragraph)


def _local_wikitext103() -> Path | None:
    """A copy of WikiText-103 train in the data folder or in ``$DATA_MIRROR``, its line count checked."""
    mirror = os.environ.get("DATA_MIRROR")
    for root in (data_dir(), *([Path(mirror).expanduser()] if mirror else [])):
        path = root / WIKITEXT103_TRAIN
        if not path.is_file():
            continue
        st = path.stat()
        if _VERIFIED.get(str(path)) != _stat_key(st):
            rows = _count_rows(WIKITEXT103_TRAIN, path)
            if rows != WIKITEXT103_ROWS:
                raise DataIntegrityError(
                    f"{path} has {rows:,} lines, not the {WIKITEXT103_ROWS:,} of WikiText-103's wiki.train.tokens: it is "
                    "truncated or another file. Replace it with the file from the original release (wikitext-103-v1.zip), "
                    "or delete it to read WikiText-103 from the Hugging Face hub."
                )
            _VERIFIED[str(path)] = _stat_key(st)
        return path
    return None


def _read_lines(path: Path, fix: str = _DAMAGED_HINT) -> Iterator[str]:
    """The lines of a UTF-8 text file; a byte that is not UTF-8 is an error naming file, line and ``fix``."""
    # newline="\n": split on "\n" only, as the file is defined; Wikipedia text may hold
    # other Unicode line separators inside a line.
    with path.open(encoding="utf-8", newline="\n") as f:
        yield from _utf8_lines(f, path, fix)


def _hub_rows(dataset: Dataset) -> Iterator[str]:
    # A few thousand rows at a time: the whole text column of WikiText-103 would be ~0.5 GB of strings.
    for batch in dataset.iter(batch_size=4096):
        yield from batch["text"]


def _wikitext103_raw_lines() -> tuple[Iterator[str] | None, str]:
    """Raw lines of WikiText-103 train and where they come from, or ``(None, why not)``."""
    local = _local_wikitext103()
    if local is not None:
        fix = ("replace it with the file from the original release (wikitext-103-v1.zip), or delete it "
               "to read WikiText-103 from the Hugging Face hub")
        return _read_lines(local, fix), str(local)
    name, config, split = _WIKITEXT103_HUB
    if _hub_offline():
        return None, "the Hugging Face hub is disabled (HF_HUB_OFFLINE / HF_DATASETS_OFFLINE is set) and no local copy was found"
    try:
        logger.info("loading %s/%s (%s) from the Hugging Face hub (about 300 MB the first time)", name, config, split)
        dataset = _load_dataset(name, config, split=split)
    except Exception as exc:  # no network, hub down, dataset moved, ...
        return None, f"loading {name}/{config} from the Hugging Face hub failed ({type(exc).__name__}: {exc})"
    return _hub_rows(dataset), f"the Hugging Face hub ({name}/{config}, {split})"


# --------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """``python -m tinybert_lib data prepare [--mirror PATH] [--target PATH] [--force]``."""
    parser = argparse.ArgumentParser(prog="python -m tinybert_lib data", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    prep = commands.add_parser("prepare", help="copy (from a mirror) or download the data, verified")
    prep.add_argument("--mirror", help="local mirror folder (default: $DATA_MIRROR, else the hub)")
    prep.add_argument("--target", help="folder to fill (default: $TINYBERT_DATA_DIR or data/)")
    prep.add_argument("--force", action="store_true", help="re-copy / re-download present files")
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    target = Path(args.target) if args.target else data_dir()
    try:
        report = prepare_data(mirror=args.mirror, target=target, force=args.force)
    except (DataNotFoundError, DataIntegrityError) as exc:
        if debug_enabled():
            raise
        # One line, no traceback: the message names the file and the fix. A reason quoted from
        # elsewhere (a hub error) may hold newlines; they would split the line.
        print("error: " + " ".join(str(exc).split()), file=sys.stderr)
        return 1
    except OSError as exc:  # e.g. a target folder that cannot be created or written
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"error: cannot write the course data into {target}{where}: {exc.strerror or exc}; "
              "give a folder you can write to (--target PATH or TINYBERT_DATA_DIR).", file=sys.stderr)
        return 1
    print(f"data folder: {target.resolve()}")
    for relpath, status in report.items():
        print(f"  {status.action:<10} {relpath:<30} {status.rows:>7,} rows  ({status.check} ok)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

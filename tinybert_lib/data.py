"""Data for the TinyBERT course: getting the files, reading them, and batching them.

Two kinds of data are used:

* **GLUE tasks**: SST-2 (``sst2/train.tsv``, ``sst2/dev.tsv``; sentence-level sentiment, the
  lessons' task), and MRPC, RTE and CoLA (``mrpc/``, ``rte/``, ``cola/``): the task-specific
  distillation data. What each file holds and how it is laid out is in :mod:`~tinybert_lib.tasks`;
  :func:`load_task` reads any of them.
* **WikiText-2**, tokenised release (``wikitext-2/wiki.train.tokens``, ``wiki.valid.tokens``):
  the general-distillation corpus. The ``gpu`` profile reads **WikiText-103** (the same release,
  50 times the text) instead: see :func:`general_corpus_lines`.

The files live in :func:`data_dir` (``data/`` in the repository, or ``$TINYBERT_DATA_DIR``).
:func:`prepare_data` fills that folder from a local mirror (``$DATA_MIRROR``) or, failing
that, from the Hugging Face hub. Run it from the shell as::

    python -m tinybert_lib.data prepare [--mirror PATH] [--target PATH] [--force]

This module imports only the task descriptions (:mod:`~tinybert_lib.tasks`) and atomic writes
from ``tinybert_lib`` so it can be used (and tested) on its own.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import logging
import os
import re
import sys
import warnings
from collections.abc import Iterable, Iterator
from itertools import islice
from pathlib import Path
from typing import Any, NamedTuple

import torch
from datasets import Dataset, Features, Value, load_dataset
from torch.utils.data import DataLoader, RandomSampler, Sampler, SequentialSampler
from transformers import DataCollatorWithPadding
from transformers.trainer_pt_utils import LengthGroupedSampler

from .atomic import atomic_file, atomic_write_text
from .tasks import SST2, TASKS, Task, get_task

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

#: What ``prepare_data`` wrote, in the data folder: size, mtime and sha256 of each file, so that
#: every load can check cheaply that the file is still the one verified then.
MANIFEST = ".prepared.json"

SST2_FILES: dict[str, str] = dict(SST2.files)
SST2_LABELS: tuple[str, ...] = SST2.label_names  # label 0, label 1 (GLUE's names)
#: The course's task files, and the task each belongs to (how it is laid out).
TASK_FILES: dict[str, Task] = {relpath: task for task in TASKS.values() for relpath in task.files.values()}
CORPUS_FILES: dict[str, str] = {
    "train": "wikitext-2/wiki.train.tokens",
    "valid": "wikitext-2/wiki.valid.tokens",
}

#: General-distillation corpora a profile may name (``Profile.general_corpus``). Both are the tokenised
#: WikiText release, cleaned the same way; WikiText-103's train split is read from the data folder, a
#: mirror or the hub (:func:`general_corpus_lines`) and is never part of ``prepare_data``: it is 540 MB.
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

# Columns the collator passes on; anything else (``length``, raw text) is for sampling or
# inspection only and would break ``model(**batch)``.
_MODEL_KEYS = ("input_ids", "attention_mask", "token_type_ids", "label", "labels")


class DataNotFoundError(FileNotFoundError):
    """The course data (or a mirror file) is missing; the message says how to get it."""


class DataIntegrityError(ValueError):
    """A data file exists but is not the expected one (wrong checksum or row count)."""


class FileStatus(NamedTuple):
    """What :func:`prepare_data` did with one file."""

    action: str  # "copied", "downloaded" or "skipped" (already present and valid)
    rows: int
    check: str  # what was verified: "sha256+rows" or "rows"


# --------------------------------------------------------------------------------------
# Locations
# --------------------------------------------------------------------------------------


def data_dir() -> Path:
    """Folder holding the course data: ``$TINYBERT_DATA_DIR`` or the repository's ``data/``."""
    env = os.environ.get("TINYBERT_DATA_DIR")
    if env:
        return Path(env).expanduser()
    return Path(__file__).resolve().parents[1] / "data"


_VERIFIED: dict[str, tuple[int, int]] = {}  # path -> (size, mtime_ns) already checked in this process


def _read_manifest(folder: Path) -> dict[str, dict[str, Any]]:
    try:
        return json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return {}


def _require(relpath: str, strict: bool = False) -> Path:
    """Path of a checked data file, or an error that says what is wrong and how to fix it.

    In a folder filled by :func:`prepare_data` (it holds ``.prepared.json``), the file must be
    the one prepared: same size and mtime (cheap), else the same sha256. Elsewhere (a mirror,
    files of your own) it is compared with the course's sha256; a different file is refused
    when ``strict`` (the pre-run check), and used with a warning otherwise.
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
    st = path.stat()
    key = (st.st_size, st.st_mtime_ns)
    if _VERIFIED.get(str(path)) == key:
        return path
    manifest = _read_manifest(root)
    entry = manifest.get(relpath)
    if not (entry and (entry.get("size"), entry.get("mtime_ns")) == key):
        digest = _sha256(path)
        accepted = {EXPECTED_SHA256[relpath]} | ({entry.get("sha256")} if entry else set())
        if digest not in accepted:
            message = (
                f"{path} is not the {'file `data prepare` verified' if entry else 'course file'}: "
                f"{st.st_size:,} bytes with sha256 {digest[:16]}..., expected "
                + (f"{entry.get('size', 0):,} bytes with sha256 {str(entry.get('sha256'))[:16]}..." if entry
                   else f"sha256 {EXPECTED_SHA256[relpath][:16]}...")
                + "; it was truncated or edited. Get it again with `make data` "
                "(python -m tinybert_lib data prepare --force)"
            )
            if manifest or strict:
                raise DataIntegrityError(message + ".")
            if str(path) not in _VERIFIED:
                logger.warning("%s; using it anyway (this folder was not filled by `data prepare`)", message)
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
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
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
        cache[(name, config)] = load_dataset(name, config)
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
    """Record size, mtime and sha256 of every prepared file (loads compare against it)."""
    manifest = {}
    for relpath in EXPECTED_SHA256:
        path = target_dir / relpath
        st, digest = path.stat(), _sha256(path)
        manifest[relpath] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": digest,
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

    Writes ``.prepared.json`` (size, mtime and sha256 of each file), which every load checks.
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
# Tasks: SST-2, MRPC, RTE, CoLA (and any Task)
# --------------------------------------------------------------------------------------


def load_task(task: Task | str, split: str = "train", limit: int | None = None) -> Dataset:
    """A task's split as a Dataset with its text column(s) (str) and ``label`` (int, the label id).

    ``task``: a :class:`~tinybert_lib.tasks.Task` or its name (``"sst2"``, ``"mrpc"``, ``"rte"``,
    ``"cola"``). ``split`` is ``"train"`` or ``"dev"``; ``limit`` keeps the first ``limit`` rows.
    Columns: ``sentence`` for single sentences (SST-2, CoLA), ``sentence1`` and ``sentence2`` for
    pairs (MRPC, RTE), as GLUE names them. A row with the wrong number of fields or an unknown
    label stops the load with an error naming the file and the line.
    """
    task = get_task(task)
    if split not in task.files:
        raise ValueError(f"split must be one of {sorted(task.files)}, got {split!r}")
    relpath = task.files[split]
    path = _require(relpath)
    texts: list[list[str]] = [[] for _ in task.text_fields]
    labels: list[int] = []
    for values, label in _read_task_rows(task, path, limit, course_file=relpath in EXPECTED_SHA256):
        for column, text in zip(texts, values):
            column.append(text.strip())  # GLUE's SST-2 ends every sentence with a space
        labels.append(label)
    features = Features({**{name: Value("string") for name in task.text_fields}, "label": Value("int64")})
    return Dataset.from_dict({**dict(zip(task.text_fields, texts)), "label": labels}, features=features)


def load_sst2(split: str = "train", limit: int | None = None) -> Dataset:
    """SST-2 as a Dataset with columns ``sentence`` (str) and ``label`` (0 neg, 1 pos).

    ``split`` is ``"train"`` or ``"dev"``; ``limit`` keeps the first ``limit`` rows.
    """
    return load_task(SST2, split, limit)


def tokenize_task(dataset: Dataset, task: Task | str, tokenizer: Any, max_length: int = 64) -> Dataset:
    """Tokenise a task's examples (truncated, not padded: the collator pads per batch).

    A pair is encoded as BERT does, by the tokenizer's own pair call: ``[CLS] a [SEP] b [SEP]``,
    ``token_type_ids`` 0 over ``[CLS] a [SEP]`` and 1 over ``b [SEP]``; a pair too long loses
    tokens from its longer sentence first (``longest_first``).

    Returns a Dataset with columns ``input_ids``, ``attention_mask``, ``token_type_ids``,
    ``labels`` and ``length`` (tokens per example, used for length-grouped batching).
    """
    task = get_task(task)
    missing = [c for c in task.text_fields if c not in dataset.column_names]
    if missing:
        raise ValueError(f"dataset has no column(s) {missing} for task {task.name!r}; columns: {dataset.column_names}")
    texts = [list(dataset[c]) for c in task.text_fields]
    encoded = tokenizer(*texts, truncation="longest_first", max_length=max_length)
    return Dataset.from_dict(
        {
            "input_ids": encoded["input_ids"],
            "attention_mask": encoded["attention_mask"],
            "token_type_ids": encoded["token_type_ids"],
            "labels": list(dataset["label"]),
            "length": [len(ids) for ids in encoded["input_ids"]],
        }
    )


def tokenize_sst2(dataset: Dataset, tokenizer: Any, max_length: int = 64) -> Dataset:
    """Tokenise SST-2 sentences: :func:`tokenize_task` for SST-2."""
    return tokenize_task(dataset, SST2, tokenizer, max_length)


# --------------------------------------------------------------------------------------
# WikiText-2 and WikiText-103
# --------------------------------------------------------------------------------------

# " = Title = ", " = = Section = = ", ... (after strip: "= Title =").
_HEADING = re.compile(r"^(?:= )+.*(?: =)+$")
# WikiText writes "3 @.@ 5", "1 @,@ 000", "well @-@ known"; put the words back together.
_AT_SEPARATOR = re.compile(r"\s*@([-,.])@\s*")


def clean_wikitext_line(line: str, unk_token: str = "[UNK]") -> str | None:
    """One WikiText line cleaned, or None for a heading / blank line."""
    text = line.strip()
    if not text or _HEADING.match(text):
        return None
    text = _AT_SEPARATOR.sub(r"\1", text)
    return text.replace("<unk>", unk_token)


def _iter_corpus_lines(split: str, unk_token: str) -> Iterator[str]:
    if split not in CORPUS_FILES:
        raise ValueError(f"split must be one of {sorted(CORPUS_FILES)}, got {split!r}")
    path = _require(CORPUS_FILES[split])
    for line in _read_lines(path):
        cleaned = clean_wikitext_line(line, unk_token)
        if cleaned is not None:
            yield cleaned


def load_corpus_lines(
    split: str = "train", unk_token: str = "[UNK]", limit: int | None = None
) -> list[str]:
    """Cleaned WikiText-2 lines (``split`` is ``"train"`` or ``"valid"``).

    Headings and blank lines are dropped, ``@-@``/``@,@``/``@.@`` are rejoined, and
    ``<unk>`` becomes ``unk_token`` so the tokenizer maps it to its own unknown token.
    ``limit`` keeps the first ``limit`` cleaned lines.
    """
    return list(islice(_iter_corpus_lines(split, unk_token), limit))


def check_general_corpus(corpus: str) -> str:
    """``corpus`` if it is a general-distillation corpus this course knows, else a ValueError naming them."""
    if corpus not in GENERAL_CORPORA:
        raise ValueError(f"unknown general-distillation corpus {corpus!r}; valid corpora: {', '.join(GENERAL_CORPORA)}")
    return corpus


def _local_wikitext103() -> Path | None:
    """A copy of WikiText-103 train in the data folder or in ``$DATA_MIRROR``, its line count checked."""
    mirror = os.environ.get("DATA_MIRROR")
    for root in (data_dir(), *([Path(mirror).expanduser()] if mirror else [])):
        path = root / WIKITEXT103_TRAIN
        if not path.is_file():
            continue
        st = path.stat()
        if _VERIFIED.get(str(path)) != (st.st_size, st.st_mtime_ns):
            rows = _count_rows(WIKITEXT103_TRAIN, path)
            if rows != WIKITEXT103_ROWS:
                raise DataIntegrityError(
                    f"{path} has {rows:,} lines, not the {WIKITEXT103_ROWS:,} of WikiText-103's wiki.train.tokens: it is "
                    "truncated or another file. Replace it with the file from the original release (wikitext-103-v1.zip), "
                    "or delete it to read WikiText-103 from the Hugging Face hub."
                )
            _VERIFIED[str(path)] = (st.st_size, st.st_mtime_ns)
        return path
    return None


def _read_lines(path: Path) -> Iterator[str]:
    # newline="\n": split on "\n" only, as the file is defined; Wikipedia text may hold
    # other Unicode line separators inside a line.
    with path.open(encoding="utf-8", newline="\n") as f:
        yield from f


def _hub_rows(dataset: Dataset) -> Iterator[str]:
    # A few thousand rows at a time: the whole text column of WikiText-103 would be ~0.5 GB of strings.
    for batch in dataset.iter(batch_size=4096):
        yield from batch["text"]


def _wikitext103_raw_lines() -> tuple[Iterator[str] | None, str]:
    """Raw lines of WikiText-103 train and where they come from, or ``(None, why not)``."""
    local = _local_wikitext103()
    if local is not None:
        return _read_lines(local), str(local)
    name, config, split = _WIKITEXT103_HUB
    if _hub_offline():
        return None, "the Hugging Face hub is disabled (HF_HUB_OFFLINE / HF_DATASETS_OFFLINE is set) and no local copy was found"
    try:
        logger.info("loading %s/%s (%s) from the Hugging Face hub (about 300 MB the first time)", name, config, split)
        dataset = load_dataset(name, config, split=split)
    except Exception as exc:  # no network, hub down, dataset moved, ...
        return None, f"loading {name}/{config} from the Hugging Face hub failed ({type(exc).__name__}: {exc})"
    return _hub_rows(dataset), f"the Hugging Face hub ({name}/{config}, {split})"


def _general_corpus_source(corpus: str, unk_token: str) -> tuple[Iterator[str], str]:
    """Cleaned training lines of ``corpus`` and the corpus they really come from (see general_corpus_lines)."""
    check_general_corpus(corpus)
    if corpus == "wikitext-103":
        raw, origin = _wikitext103_raw_lines()
        if raw is not None:
            logger.info("general-distillation corpus: WikiText-103 train from %s", origin)
            cleaned = (clean_wikitext_line(line, unk_token) for line in raw)
            return (c for c in cleaned if c is not None), "wikitext-103"
        message = (
            f"WikiText-103 could not be had: {origin}. General distillation uses WikiText-2 instead, about 50 times "
            "less text: 16,959 blocks of 128 tokens, 67 steps per epoch at batch 256, too few for the student to learn "
            "much. To use WikiText-103, run once with internet access (the hub's copy is then cached), or place the "
            f"original release's wiki.train.tokens (wikitext-103-v1.zip) at {data_dir() / WIKITEXT103_TRAIN} or "
            f"$DATA_MIRROR/{WIKITEXT103_TRAIN}."
        )
        # The log line is for headless runs (their logs), the warning for notebooks and Python callers.
        logger.warning("general distillation on WikiText-2 in place of WikiText-103: %s", origin)
        warnings.warn(message, stacklevel=3)
    return _iter_corpus_lines("train", unk_token), "wikitext-2"


def general_corpus_lines(corpus: str = "wikitext-2", unk_token: str = "[UNK]", limit: int | None = None) -> Iterator[str]:
    """Cleaned training lines of a general-distillation corpus (one of :data:`GENERAL_CORPORA`).

    ``"wikitext-2"``: WikiText-2 train from the data folder, as :func:`load_corpus_lines`.
    ``"wikitext-103"``: WikiText-103 train (~103M words, the same release and cleaning), read from
    the first of ``<data folder>/wikitext-103/wiki.train.tokens``,
    ``$DATA_MIRROR/wikitext-103/wiki.train.tokens`` (either checked for its 1,801,350 lines) and the
    hub (``Salesforce/wikitext``, config ``wikitext-103-v1``, cached by ``datasets`` after the first
    download). When none can be had (offline, no copy, no connection), it warns and returns
    WikiText-2's lines.

    ``limit`` keeps the first ``limit`` cleaned lines. The source is chosen (and any warning given)
    when the function is called; the lines are read lazily.
    """
    lines, _ = _general_corpus_source(corpus, unk_token)
    return islice(lines, limit)


def corpus_blocks(
    tokenizer: Any,
    block_size: int = 128,
    split: str = "train",
    max_blocks: int | None = None,
    lines: Iterable[str] | None = None,
    corpus: str = "wikitext-2",
) -> Dataset:
    """WikiText-2 (or WikiText-103, or any text: ``lines``) as fixed-size blocks for general distillation.

    The cleaned lines are tokenised (no special tokens), concatenated into one stream, and cut
    into pieces of ``block_size - 2`` tokens, each wrapped as ``[CLS] ... [SEP]``: every block
    is exactly ``block_size`` real tokens (no padding). The final partial piece is dropped.
    Lines are tokenised lazily in chunks, so ``max_blocks`` keeps smoke runs cheap.

    ``corpus``: for ``split="train"``, which corpus (:func:`general_corpus_lines`: ``"wikitext-103"``
    falls back to WikiText-2, with a warning, when it cannot be had). ``split="valid"`` is always
    WikiText-2's validation file: the same articles as WikiText-103's validation split (only the
    rare words replaced by ``<unk>`` differ), so held-out losses compare across corpora.

    ``lines``: any iterable of text lines used instead, e.g. a corpus of your own.

    Returns a Dataset with ``input_ids``, ``attention_mask`` (all 1) and ``token_type_ids``
    (all 0).
    """
    check_general_corpus(corpus)
    body = block_size - 2
    if body < 1:
        raise ValueError(f"block_size must be at least 3, got {block_size}")
    # Small first chunks when only a few blocks are wanted (~10 tokens per line at worst).
    chunk_lines = 1000 if max_blocks is None else max(16, min(1000, max_blocks * body // 10))

    blocks: list[list[int]] = []
    stream: list[int] = []
    if lines is not None:
        source: Iterator[str] = (t for t in lines if t.strip())
        what = "lines"
    elif split == "train":
        source, used = _general_corpus_source(corpus, tokenizer.unk_token)
        what = f"{used} train" + ("" if used == corpus else f", in place of {corpus}")
    else:
        source, what = _iter_corpus_lines(split, tokenizer.unk_token), f"wikitext-2 {split}"
    while max_blocks is None or len(blocks) < max_blocks:
        chunk = list(islice(source, chunk_lines))
        if not chunk:
            break
        # verbose=False: long paragraphs exceed model_max_length, which is fine here
        # because the stream is cut into blocks anyway.
        encoded = tokenizer(chunk, add_special_tokens=False, verbose=False)["input_ids"]
        for ids in encoded:
            stream.extend(ids)
        start = 0
        while len(stream) - start >= body and (max_blocks is None or len(blocks) < max_blocks):
            blocks.append([tokenizer.cls_token_id, *stream[start : start + body], tokenizer.sep_token_id])
            start += body
        del stream[:start]
    logger.info("corpus_blocks(%s): %d blocks of %d tokens", what, len(blocks), block_size)
    return Dataset.from_dict(
        {
            "input_ids": blocks,
            "attention_mask": [[1] * block_size for _ in blocks],
            "token_type_ids": [[0] * block_size for _ in blocks],
        }
    )


# --------------------------------------------------------------------------------------
# Batching
# --------------------------------------------------------------------------------------


class _PadToBatchMax:
    """Dynamic padding: each batch is padded to its own longest sequence.

    Keeps only model inputs and labels, so helper columns such as ``length`` never reach
    ``model(**batch)``.
    """

    def __init__(self, tokenizer: Any) -> None:
        self.collator = DataCollatorWithPadding(tokenizer, return_tensors="pt")

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        kept = [{k: v for k, v in f.items() if k in _MODEL_KEYS} for f in features]
        return dict(self.collator(kept))


def _lengths(dataset: Dataset) -> list[int]:
    if "length" in dataset.column_names:
        return list(dataset["length"])
    return [len(ids) for ids in dataset["input_ids"]]


def make_loader(
    dataset: Dataset,
    batch_size: int,
    tokenizer: Any,
    shuffle: bool = False,
    seed: int = 0,
    group_by_length: bool = True,
    drop_last: bool = False,
) -> DataLoader:
    """A DataLoader yielding dicts of tensors, padded per batch.

    * ``shuffle=False``: dataset order.
    * ``shuffle=True, group_by_length=True``: transformers' ``LengthGroupedSampler``
      (random mega-batches of 50 batches, sorted by length inside), so each batch holds
      similar lengths and wastes little padding.
    * ``shuffle=True, group_by_length=False``: plain random order.

    The shuffle is drawn from a ``torch.Generator`` seeded with ``seed``: the same seed gives
    the same batches, and each new epoch (iteration) gives a new order.
    """
    sampler: Sampler[int]
    if not shuffle:
        sampler = SequentialSampler(dataset)
    else:
        generator = torch.Generator().manual_seed(seed)
        if group_by_length:
            sampler = LengthGroupedSampler(batch_size, lengths=_lengths(dataset), generator=generator)
        else:
            sampler = RandomSampler(dataset, generator=generator)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        collate_fn=_PadToBatchMax(tokenizer),
        drop_last=drop_last,
    )


# --------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """``python -m tinybert_lib.data prepare [--mirror PATH] [--target PATH] [--force]``."""
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
        print(f"error: {exc}", file=sys.stderr)
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

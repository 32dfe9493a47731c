"""Data for the TinyBERT course: reading the files and batching them.

Lessons: 01-09, 11-13.

Two kinds of data are used:

* **GLUE tasks**: SST-2 (``sst2/train.tsv``, ``sst2/dev.tsv``; sentence-level sentiment, the
  lessons' task), and MRPC, RTE and CoLA (``mrpc/``, ``rte/``, ``cola/``): the task-specific
  distillation data. What each file holds and how it is laid out is in :mod:`~tinybert_lib.tasks`;
  :func:`load_task` reads any of them.
* **WikiText-2**, tokenised release (``wikitext-2/wiki.train.tokens``, ``wiki.valid.tokens``):
  the general-distillation corpus. The ``gpu`` profile reads **WikiText-103** (the same release,
  50 times the text) instead, and a profile may name a UTF-8 text file of one's own: see
  :func:`general_corpus_lines`.

The files live in :func:`data_dir` (``data/`` in the repository, or ``$TINYBERT_DATA_DIR``), put
there by ``make data``. Getting them (mirror, hub) and checking them (checksums, row and label
counts) is setup, in :mod:`~tinybert_lib.data_setup`; every loader here opens its file through that
check, and raises its :class:`DataNotFoundError` / :class:`DataIntegrityError`.

This module imports only the task descriptions (:mod:`~tinybert_lib.tasks`) and the data setup
from ``tinybert_lib`` so it can be used (and tested) on its own.
"""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Iterable, Iterator
from itertools import islice
from typing import Any

import torch
from datasets import Dataset, Features, Value
from torch.utils.data import DataLoader, RandomSampler, Sampler, SequentialSampler
from transformers import DataCollatorWithPadding
from transformers.trainer_pt_utils import LengthGroupedSampler

# data_dir, CORPUS_FILES and the two errors are part of this module's interface too (lessons use them).
from .data_setup import (CORPUS_FILES, EXPECTED_SHA256, WIKITEXT103_TRAIN, CorpusFileError,
                         DataIntegrityError, DataNotFoundError, _corpus_file_documents, _read_lines,
                         _read_task_rows, _require, _wikitext103_raw_lines, check_corpus_file,
                         check_general_corpus, data_dir, is_corpus_file)
from .tasks import SST2, Task, get_task

__all__ = [
    "CORPUS_FILES", "CorpusFileError", "DataIntegrityError", "DataNotFoundError", "SST2_FILES", "SST2_LABELS",
    "clean_wikitext_line", "corpus_blocks", "data_dir", "general_corpus_lines", "load_corpus_lines",
    "load_sst2", "load_task", "make_loader", "tokenize_task",
]

logger = logging.getLogger(__name__)

SST2_FILES: dict[str, str] = dict(SST2.files)
SST2_LABELS: tuple[str, ...] = SST2.label_names  # label 0, label 1 (GLUE's names)

# Columns the collator passes on; anything else (``length``, raw text) is for sampling or
# inspection only and would break ``model(**batch)``.
_MODEL_KEYS = ("input_ids", "attention_mask", "token_type_ids", "label", "labels")


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


def _general_corpus_source(corpus: str, unk_token: str) -> tuple[Iterator[str], str]:
    """Cleaned training lines of ``corpus`` and the corpus they really come from (see general_corpus_lines)."""
    check_general_corpus(corpus)
    if is_corpus_file(corpus):
        found = check_corpus_file(corpus)
        logger.info("general-distillation corpus: %s (%d documents, one per %s)", found.path, found.documents,
                    "paragraph" if found.layout == "paragraphs" else "line")
        return _corpus_file_documents(found.path), str(found.path)
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
    """Cleaned training lines of a general-distillation corpus (``data_setup.GENERAL_CORPORA``).

    ``"wikitext-2"``: WikiText-2 train from the data folder, as :func:`load_corpus_lines`.
    ``"wikitext-103"``: WikiText-103 train (~103M words, the same release and cleaning), read from
    the first of ``<data folder>/wikitext-103/wiki.train.tokens``,
    ``$DATA_MIRROR/wikitext-103/wiki.train.tokens`` (either checked for its 1,801,350 lines) and the
    hub (``Salesforce/wikitext``, config ``wikitext-103-v1``, cached by ``datasets`` after the first
    download). When none can be had (offline, no copy, no connection), it warns and returns
    WikiText-2's lines.
    A path to a UTF-8 text file of one's own: its documents, separated by blank lines (a paragraph's
    lines joined by a space), or one per line when no blank line separates two lines of text; the
    text is used as it is (none of WikiText's cleaning).

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
    falls back to WikiText-2, with a warning, when it cannot be had; a file path reads that file's
    documents as the lines, and a file too short for one block is an error). ``split="valid"`` is always
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
        what = (used if is_corpus_file(corpus)
                else f"{used} train" + ("" if used == corpus else f", in place of {corpus}"))
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
    if not blocks and max_blocks != 0 and lines is None and split == "train" and is_corpus_file(corpus):
        # Training on no block would fail far from the cause: say it here, with the file.
        raise CorpusFileError(f"corpus file {what} is too short: its {len(stream):,} tokens make no block of "
                              f"{block_size} tokens; give more text (or a smaller max_seq_len_general)")
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


if __name__ == "__main__":  # the older spelling of `python -m tinybert_lib data prepare`
    from .data_setup import main

    raise SystemExit(main())

"""TinyBERT's data augmentation (paper Algorithm 1): more task data for task distillation.

Lessons: 08-09.

Task distillation needs far more examples than a GLUE training set holds, so TinyBERT makes
new sentences by swapping words for likely alternatives::

    for each sentence x:
        words    = x split on spaces (and Chinese into characters)  split_words
        eligible = the words that may change                      eligible_words
        C_j      = K candidates for each eligible word w_j        a candidate function
        repeat N_a times:                                         replace_words
            x' = words, each eligible word replaced, with probability p_r,
                 by a candidate of its C_j picked uniformly at random
            keep x' unless it equals x or an earlier x'

1. A word is *eligible* when it is alphabetic and not a stop word (:func:`eligible_words`);
   numbers, punctuation and "the" / "of" stay as they are. In Chinese text every character is a
   word (:func:`~tinybert_lib.candidates.split_words`), eligible unless it is a function
   character (:data:`CJK_STOP_CHARS`), and it is replaced by characters; a new Chinese sentence
   is joined back without spaces.
2. The candidates come from :mod:`tinybert_lib.candidates`: the masked-LM's K best guesses for
   a single-piece word, the K nearest words by word vectors (GloVe in the paper) for a word
   split into several pieces (:class:`~tinybert_lib.candidates.WordCandidates`).
3. An example therefore yields at most N_a + 1 rows (itself included). Paper values:
   p_r = 0.4, N_a = 20, K = 15 (``augment(p=, n=, k=)``; a profile's ``augment_p``, ``augment_n``, ``augment_k``).
   p_r is the paper's p_t, a threshold probability: the course writes p_r so that t stays the
   temperature of the prediction loss (README, "Notation").

:func:`augment_rows` is that loop, given any candidate function; :func:`augment` builds the
paper's candidate function from a teacher (or a masked-LM) and runs it, and returns the new
table with what the run did (:class:`AugmentStats`).

The labels of the new sentences are *not* trusted: a swap can flip the meaning ("good" ->
"bad"), which is why task distillation trains on the teacher's soft predictions for every row,
computed later, not on the copied gold label. The gold ``label`` is copied only so the table
stays usable (and the real rows are marked with ``is_original``).

Reproducibility: all randomness comes from ``random.Random`` objects local to the call, one per
source example seeded from ``(seed, example index)`` (:func:`_example_rng`), so the same
call gives the same set, and the first 100 examples are augmented identically whatever
``limit`` is. The candidates are deterministic too (the masked-LM runs in eval mode).

Saving and reusing an augmented set is the pipeline's job: its ``augmented_sst2/`` folder is
the cache (see :func:`tinybert_lib.pipeline.get_augmented`).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, NamedTuple, Optional, Union

import torch
from datasets import Dataset, Features, Value
from tqdm.auto import tqdm

from .bert import Bert
from .candidates import (
    CJK_CHAR,
    WORD,
    Candidates,
    EmbeddingNeighbours,
    WordCandidates,
    candidate_source,
    embedding_neighbours,
    has_mlm_head,
    join_words,
    mlm_candidates,
    split_words,
    whole_word_ids,
)
from .runtime import pick_device

logger = logging.getLogger(__name__)

__all__ = [
    "CJK_STOP_CHARS",
    "STOP_WORDS",
    "AugmentResult",
    "AugmentStats",
    "EmbeddingNeighbours",
    "augment",
    "augment_rows",
    "augment_stats",
    "eligible_words",
    "embedding_neighbours",
    "has_mlm_head",
    "join_words",
    "mlm_candidates",
    "replace_words",
    "split_words",
    "whole_word_ids",
]

#: Bump when a change to this module changes the rows :func:`augment` produces: the pipeline
#: records it with a saved set, so a set made by an older version is not reused.
ALGORITHM_VERSION = 1

#: Words never replaced. The NLTK English list, as in the authors' script: swapping function
#: words makes sentences ungrammatical without making them more varied.
STOP_WORDS: frozenset[str] = frozenset(
    """
    i me my myself we our ours ourselves you you're you've you'll you'd your yours yourself
    yourselves he him his himself she she's her hers herself it it's its itself they them their
    theirs themselves this that that'll these those am is are was were be been being have has had
    having do does did doing a an the and but if or because as until while of at by for with
    about against between into through during before after above below to from up down in out on
    off over under again further then once here there all any both each few more most other some
    such no nor not only own same so than too very s t can will just don don't should should've
    now d ll m o re ve y ain aren aren't couldn couldn't didn didn't doesn doesn't hadn hadn't hasn
    hasn't haven haven't isn isn't ma mightn mightn't mustn mustn't needn needn't shan shan't
    shouldn shouldn't wasn wasn't weren weren't won won't wouldn wouldn't 's 're
    """.split()
)

#: Chinese characters never replaced: the same kinds of function words as :data:`STOP_WORDS`
#: (particles, pronouns, "this" / "that", "is", conjunctions, prepositions, "very" / "also" /
#: "all", "not"), kept to characters that are function words in nearly every use.
CJK_STOP_CHARS: frozenset[str] = frozenset(
    "的地得了着过吗呢吧啊呀么之个 我你您他她它们 这那此其 是 和与及或而但且并 在从把被给向于 很太也都就还又才再更最 不没"
    .replace(" ", "")
)

#: ``candidates_for(sentences, eligible)``: for each sentence (a list of words) and its eligible
#: ``(position, word)`` pairs, ``{position: replacement words}``. Called on batches of sentences
#: so that a generator can batch its model calls; see :class:`~tinybert_lib.candidates.WordCandidates`.
CandidateFn = Callable[[Sequence[Sequence[str]], Sequence[Sequence[tuple[int, str]]]], list[Candidates]]


# ------------------------------------------------------------------------------------------
# Step 1: which words may change
# ------------------------------------------------------------------------------------------


def eligible_words(sentence: str | Sequence[str]) -> list[tuple[int, str]]:
    """The ``(position, word)`` pairs of a sentence that augmentation may replace.

    The sentence is split on whitespace (SST-2 is already tokenised and lower-cased; a list of
    words is used as is), Chinese into single characters (:func:`~tinybert_lib.candidates.split_words`).
    A word is eligible when it is made of ASCII letters only and is not in :data:`STOP_WORDS`
    (compared lower-cased), or is one Chinese character not in :data:`CJK_STOP_CHARS`.

    >>> eligible_words("a gripping , funny film .")
    [(1, 'gripping'), (3, 'funny'), (4, 'film')]
    >>> eligible_words("剧情很无聊。")
    [(0, '剧'), (1, '情'), (3, '无'), (4, '聊')]
    """
    words = split_words(sentence)[0] if isinstance(sentence, str) else list(sentence)
    return [(i, w) for i, w in enumerate(words) if _is_eligible(w)]


def _is_eligible(word: str) -> bool:
    """An ASCII word that is not a stop word, or a Chinese character that is not a function character."""
    if CJK_CHAR.fullmatch(word):
        return word not in CJK_STOP_CHARS
    return WORD.fullmatch(word.lower()) is not None and word.lower() not in STOP_WORDS


# ------------------------------------------------------------------------------------------
# Step 3: new sentences
# ------------------------------------------------------------------------------------------


def replace_words(words: Sequence[str], candidates: Candidates, p: float, n: int, rng: random.Random,
                  seps: Optional[Sequence[str]] = None) -> list[str]:
    """Up to ``n`` new sentences: each candidate position swapped with probability ``p``.

    For each of ``n`` draws, every position in ``candidates`` is, with probability ``p``,
    replaced by one of its candidates chosen uniformly at random (kept otherwise). Draws equal to
    the original sentence or to an earlier draw are dropped, so fewer than ``n`` sentences may
    come back (none when ``p = 0``). Words are joined with single spaces, or with ``seps``, the
    separators of :func:`~tinybert_lib.candidates.split_words` (Chinese characters without
    spaces). ``rng`` is the only source of randomness: the same seed gives the same sentences.
    """
    original = join_words(words, seps)
    seen = {original}
    out: list[str] = []
    positions = sorted(pos for pos, cands in candidates.items() if cands)
    for _ in range(n):
        new = list(words)
        for pos in positions:
            if rng.random() < p:
                new[pos] = rng.choice(candidates[pos])
        sentence = join_words(new, seps)
        if sentence not in seen:  # a dataset of repeats adds cost, not information
            seen.add(sentence)
            out.append(sentence)
    return out


def _example_rng(seed: int, index: int, column: int = 0) -> random.Random:
    """The random generator of one example (and of one sentence of a pair: ``column`` 1 is the second).

    Seeded by ``(seed, index)`` alone, so an example's new sentences do not depend on how many
    examples come before it or are augmented at all.
    """
    return random.Random(f"{seed}:{index}" if column == 0 else f"{seed}:{index}:{column}")


# ------------------------------------------------------------------------------------------
# The whole algorithm
# ------------------------------------------------------------------------------------------


def augment_rows(
    source: Dataset,
    candidates_for: CandidateFn,
    p: float,
    n: int,
    seed: int,
    text_columns: Sequence[str] = ("sentence",),
    chunk_size: int = 256,
    progress: bool = False,
) -> Dataset:
    """Algorithm 1 over every row of ``source``, with candidates from ``candidates_for`` (:data:`CandidateFn`).

    Each row comes out first as itself (``is_original=True``), then followed by its distinct new
    rows (:func:`replace_words` with ``p`` and ``n``, generator :func:`_example_rng`), every other
    column copied. For a pair (two ``text_columns``) each sentence is augmented in turn, the other
    kept: new first sentences beside the original second, then the original first beside new
    second sentences. Sentences go to ``candidates_for`` ``chunk_size`` at a time.
    """
    text_columns = list(text_columns)
    out: dict[str, list[Any]] = {c: [] for c in [*source.column_names, "is_original"]}
    bar = tqdm(total=len(source), desc="augmenting", unit="sent", disable=not progress)
    for start in range(0, len(source), chunk_size):
        batch = source[start : start + chunk_size]  # {column: values}
        size = len(batch[text_columns[0]])
        split = {c: [split_words(s) for s in batch[c]] for c in text_columns}  # (words, separators)
        words = {c: [w for w, _ in split[c]] for c in text_columns}
        # Candidates for a whole chunk at once: a masked-LM then runs on full batches.
        candidates = {c: candidates_for(words[c], [eligible_words(w) for w in words[c]]) for c in text_columns}
        for j in range(size):
            original = {c: batch[c][j] for c in source.column_names}
            rows = [(original, True)]
            for column, c in enumerate(text_columns):
                rng = _example_rng(seed, start + j, column)
                seps = split[c][j][1]
                rows += [({**original, c: new}, False)
                         for new in replace_words(words[c][j], candidates[c][j], p, n, rng, seps)]
            for row, is_original in rows:
                for c in source.column_names:
                    out[c].append(row[c])
                out["is_original"].append(is_original)
        bar.update(size)
    bar.close()
    return Dataset.from_dict(out, features=Features({**source.features, "is_original": Value("bool")}))


@dataclass
class AugmentStats:
    """What an :func:`augment` run did."""

    source: int  # examples augmented
    rows: int  # rows out, the originals included
    seconds: float  # time the run took
    mlm_words: int  # words whose candidates came from the masked-LM
    neighbour_words: int  # words whose candidates came from embedding neighbours

    @property
    def ratio(self) -> float:
        return self.rows / max(self.source, 1)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class AugmentResult(NamedTuple):
    """The augmented table and its statistics; unpacks as ``dataset, stats = augment(...)``."""

    dataset: Dataset
    stats: AugmentStats


def augment(
    dataset: Dataset,
    teacher_or_mlm: Union[Bert, str, Path, torch.nn.Module],
    *,
    p: float = 0.4,
    n: int = 20,
    k: int = 15,
    limit: Optional[int] = None,
    seed: int = 42,
    device: Optional[torch.device | str] = None,
    tokenizer: Any = None,
    text_column: str | Sequence[str] = "sentence",
    batch_size: int = 64,
    chunk_size: int = 256,
    context_copy: bool = True,
    progress: bool = True,
) -> AugmentResult:
    """TinyBERT's data augmentation (Algorithm 1) of a sentence dataset such as SST-2, or of sentence pairs.

    Augments the first ``limit`` rows (all when ``None``) with :func:`augment_rows`: ``n`` draws
    (N_a) at replacement probability ``p`` (p_r, the paper's p_t), ``k`` candidates per word (K) from
    :class:`~tinybert_lib.candidates.WordCandidates` (masked-LM for single-piece words when
    ``teacher_or_mlm`` has one, embedding neighbours otherwise; see
    :func:`~tinybert_lib.candidates.candidate_source` for what it may be). The paper's values are
    the defaults; a profile's are ``augment_p``, ``augment_n``, ``augment_k``, ``augment_limit``.
    Each source row's draws are seeded from ``(seed, row index)``.

    ``text_column``: the column to augment, or several (a pair: ``("sentence1", "sentence2")``).
    As the authors' script does for pairs, each sentence is augmented in turn. (Their script
    edits its row in place, so the second sentence's new rows carry the *last* new first
    sentence; here they carry the original, so every new row changes one sentence of a real
    example.)

    Returns ``(dataset, stats)``: the source's columns plus ``is_original`` (bool), each source
    row first, then its distinct new rows with ``label`` (and other columns) copied; at most
    ``n + 1`` rows per source row, ``2 * n + 1`` for a pair. ``stats`` is an :class:`AugmentStats`.

    ``device``: where the MLM and neighbour search run (default: where the model already is).
    ``batch_size``: masked copies per MLM forward pass; ``chunk_size``: sentences whose
    candidates are computed together.
    """
    text_columns = [text_column] if isinstance(text_column, str) else list(text_column)
    missing = [c for c in text_columns if c not in dataset.column_names]
    if missing or not text_columns:
        raise ValueError(f"dataset has no column {(missing or [''])[0]!r}; columns: {dataset.column_names}")
    if "is_original" in dataset.column_names:
        raise ValueError("dataset already has an 'is_original' column: it looks augmented already.")
    n_src = len(dataset) if limit is None else min(limit, len(dataset))
    source = dataset.select(range(n_src)) if n_src < len(dataset) else dataset
    if isinstance(device, str):
        device = pick_device(device)  # "auto" too

    src = candidate_source(teacher_or_mlm, tokenizer)
    started = time.perf_counter()
    with WordCandidates(src, k, device, batch_size, context_copy) as candidates_for:
        result = augment_rows(source, candidates_for, p, n, seed, text_columns, chunk_size, progress)
    stats = AugmentStats(n_src, len(result), round(time.perf_counter() - started, 3), candidates_for.mlm_words,
                         candidates_for.neighbour_words)
    logger.info(
        "augmented %d source examples into %d rows (x%.1f) in %.1f s; candidates: %d masked-LM, %d embedding-neighbour words",
        stats.source, stats.rows, stats.ratio, stats.seconds, stats.mlm_words, stats.neighbour_words,
    )
    return AugmentResult(result, stats)


def augment_stats(dataset: Dataset) -> dict[str, Any]:
    """``{"source", "rows", "ratio"}`` of an augmented table, counted from its ``is_original`` column.

    For what a run did (time, candidate sources), see the :class:`AugmentStats` that
    :func:`augment` returns, which the pipeline saves beside the set
    (:func:`tinybert_lib.pipeline.augmentation_stats`).
    """
    n_src = sum(dataset["is_original"])
    return {"source": n_src, "rows": len(dataset), "ratio": len(dataset) / max(n_src, 1)}

"""TinyBERT's data augmentation (paper Algorithm 1): more task data for task distillation.

Lessons: 08-09.

Task distillation needs far more examples than a GLUE training set holds, so TinyBERT makes
new sentences by swapping words for likely alternatives. For every sentence:

1. Split it into words. A word is *eligible* when it is alphabetic and not a stop word
   (:func:`eligible_words`); numbers, punctuation and "the" / "of" stay as they are.
2. For each eligible word w, compute K candidate replacements:

   * if w is a single WordPiece: replace it by ``[MASK]`` and take the K words BERT's
     masked-LM finds most likely there (:func:`mlm_candidates`);
   * otherwise (w is split into several pieces, which the MLM cannot predict with one mask):
     take the K nearest words to w by cosine similarity of word vectors
     (:class:`EmbeddingNeighbours`; the paper uses GloVe).

3. Make N_a new sentences: each eligible word is replaced, with probability p_t, by a
   candidate picked uniformly at random, and kept otherwise (:func:`replace_words`).
   Sentences equal to the original or to an earlier one are dropped, so an example yields at
   most N_a + 1 rows (itself included). Paper values: p_t = 0.4, N_a = 20, K = 15.

The labels of the new sentences are *not* trusted: a swap can flip the meaning ("good" ->
"bad"), which is why task distillation trains on the teacher's soft predictions for every row,
computed later, not on the copied gold label. :func:`augment` copies the gold ``label`` only so
the table stays usable (and marks the real rows with ``is_original``).

Where the candidates come from in this course
----------------------------------------------
:func:`augment` accepts three kinds of ``teacher_or_mlm``:

* **A course** :class:`~tinybert_lib.bert.Bert` **teacher** (the offline default,
  ``load_teacher("minilm")``). Word vectors for the neighbour search are the teacher's own
  *input embeddings* (``model.bert.embeddings.word_embeddings.weight``; a multi-piece word is
  the mean of its pieces' vectors), searched over the whole-word entries of the WordPiece
  vocabulary. If the teacher's folder (``resolve_teacher_folder(model.source)``) also holds a
  masked-LM head (``cls.predictions.*`` weights), a ``transformers.BertForMaskedLM`` is loaded
  from it for the MLM path. The packaged all-MiniLM-L6-v2 is a sentence encoder and ships *no*
  MLM head, so offline every word takes the embedding-neighbour path: the teacher's input
  embeddings stand in for both GloVe and the masked-LM (logged when it happens).
* **A string**: ``"bert-base-uncased"`` (hub name, needs the network once) or a local folder.
  With an MLM head, ``BertForMaskedLM`` and the folder's tokenizer are loaded; without one
  (e.g. ``"minilm"``) it is loaded as a course teacher, as above.
* **A** ``transformers`` **masked-LM instance** (e.g. ``BertForMaskedLM``), with
  ``tokenizer=`` (otherwise its ``config._name_or_path`` is tried). Its input embeddings give
  the neighbours of multi-piece words.

What the course does differently from the authors' script (``data_augmentation.py``)
----------------------------------------------------------------------------------
* **Batched MLM.** The original runs one unbatched forward pass per word, which is why
  augmenting SST-2 took days. Here every masked copy of a chunk of sentences goes through the
  MLM in padded batches, and the vocabulary projection runs only at the masked positions.
* **No GloVe download.** Multi-piece words use neighbours in the teacher's input embeddings.
* **Candidates exclude the word itself, ``##`` pieces and special tokens.** The original only
  dropped ``##`` pieces, so the word itself was often a "candidate" and K shrank silently.
* **Kept from the original:** the MLM sees ``[CLS] masked sentence [SEP] original sentence
  [SEP]`` (``context_copy=True``), so its guesses stay close to the original meaning;
  candidates are computed once per sentence (not once per new sentence); at most N_a + 1
  distinct rows per example.

Reproducibility: all randomness comes from ``random.Random`` objects local to the call, one per
source example seeded from ``(profile.seed, example index)``, so the same call gives the same
set, and the first 100 examples are augmented identically whatever ``augment_limit`` is. The
MLM runs in eval mode (no dropout), so its candidates are deterministic too.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

import torch
import torch.nn.functional as F
from datasets import Dataset, DatasetInfo, Features, Value
from tqdm.auto import tqdm

from .atomic import atomic_folder
from .bert import Bert
from .profiles import Profile, get_profile
from .runtime import pick_device
from .teachers import TeacherNotFoundError, load_teacher, load_tokenizer, resolve_teacher_folder

logger = logging.getLogger(__name__)

__all__ = [
    "STOP_WORDS",
    "EmbeddingNeighbours",
    "augment",
    "augment_stats",
    "eligible_words",
    "embedding_neighbours",
    "has_mlm_head",
    "mlm_candidates",
    "replace_words",
    "whole_word_ids",
]

#: Bump when a change to this module changes what :func:`augment` produces: it is part of the
#: cache key, so stale cached sets are never reused.
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

# ASCII letters only, as the original's `_is_valid`: "n't", "9", "--" and "café" are left alone.
_WORD = re.compile(r"[a-z]+")

Candidates = dict[int, list[str]]  # word position in the sentence -> replacement words


# ------------------------------------------------------------------------------------------
# Step 1: which words may change
# ------------------------------------------------------------------------------------------


def eligible_words(sentence: str | Sequence[str]) -> list[tuple[int, str]]:
    """The ``(position, word)`` pairs of a sentence that augmentation may replace.

    The sentence is split on whitespace (SST-2 is already tokenised and lower-cased; a list of
    words is used as is). A word is eligible when it is made of ASCII letters only and is not
    in :data:`STOP_WORDS` (compared lower-cased).

    >>> eligible_words("a gripping , funny film .")
    [(1, 'gripping'), (3, 'funny'), (4, 'film')]
    """
    words = sentence.split() if isinstance(sentence, str) else list(sentence)
    return [(i, w) for i, w in enumerate(words) if _WORD.fullmatch(w.lower()) and w.lower() not in STOP_WORDS]


def whole_word_ids(tokenizer: Any) -> list[int]:
    """Ids of the vocabulary entries that can stand for a whole word.

    Alphabetic tokens only: this drops ``##`` continuation pieces (they cannot start a word),
    special tokens (``[CLS]``, ``[unused7]``, ...), punctuation and numbers. For the BERT uncased
    vocabulary: 21,745 of 30,522 entries.
    """
    special = set(tokenizer.all_special_tokens)
    vocab = tokenizer.get_vocab()
    return sorted(i for t, i in vocab.items() if t not in special and _WORD.fullmatch(t.lower()))


# ------------------------------------------------------------------------------------------
# Step 2a: candidates from word vectors (multi-piece words, or no masked-LM at all)
# ------------------------------------------------------------------------------------------


class EmbeddingNeighbours:
    """Nearest whole words by cosine similarity of input-embedding vectors (GloVe's stand-in).

    Built once: the rows of ``embeddings`` (vocab_size x d, e.g. a teacher's
    ``bert.embeddings.word_embeddings.weight``) for the whole-word vocabulary entries
    (:func:`whole_word_ids`) are L2-normalised into one search matrix, so a lookup is a single
    matrix product. A word's vector is the mean of its WordPiece vectors, which lets words
    outside the vocabulary ("secretions" = "secret" + "##ions") have neighbours too.
    Results are memoised per word: SST-2 repeats its words a lot.

    >>> nb = EmbeddingNeighbours(teacher.bert.embeddings.word_embeddings.weight, teacher.tokenizer)
    >>> nb.candidates("funny", 4)
    ['hilarious', 'humorous', 'amusing', 'comedic']
    """

    def __init__(self, embeddings: torch.Tensor, tokenizer: Any, device: Optional[torch.device | str] = None) -> None:
        self.tokenizer = tokenizer
        self.device = torch.device(device) if device is not None else embeddings.device
        self.embeddings = embeddings.detach().to(self.device, torch.float32)
        ids = [i for i in whole_word_ids(tokenizer) if i < self.embeddings.shape[0]]
        self.ids = torch.tensor(ids, device=self.device)
        self.words: list[str] = tokenizer.convert_ids_to_tokens(ids)
        self.matrix = F.normalize(self.embeddings[self.ids], dim=1)  # (n_words, d), unit rows
        self._cache: dict[tuple[str, int], list[str]] = {}

    def word_vector(self, word: str) -> torch.Tensor:
        """Mean of the word's WordPiece input embeddings (not normalised)."""
        pieces = self.tokenizer(word, add_special_tokens=False)["input_ids"]
        return self.embeddings[pieces].mean(dim=0)

    @torch.no_grad()
    def candidates_many(self, words: Iterable[str], k: int) -> dict[str, list[str]]:
        """``{word: its k nearest whole words}`` for many words, in one matrix product."""
        words = list(dict.fromkeys(words))  # unique, order kept
        todo = [w for w in words if (w, k) not in self._cache]
        if todo:
            pieces = self.tokenizer(todo, add_special_tokens=False)["input_ids"]  # one batched call
            vectors = F.normalize(torch.stack([self.embeddings[p].mean(dim=0) for p in pieces]), dim=1)
            sims = vectors @ self.matrix.T  # (len(todo), n_words) cosine similarities
            # k + 1: the word itself is usually its own nearest neighbour and is dropped below.
            top = sims.topk(min(k + 1, sims.shape[1]), dim=1).indices.tolist()
            for word, row in zip(todo, top):
                found = [self.words[j] for j in row if self.words[j].lower() != word.lower()]
                self._cache[(word, k)] = found[:k]
        return {w: self._cache[(w, k)] for w in words}

    def candidates(self, word: str, k: int) -> list[str]:
        """The ``k`` whole words nearest to ``word`` (never the word itself, never ``##`` pieces)."""
        return self.candidates_many([word], k)[word]


def embedding_neighbours(words: Iterable[str], embeddings: torch.Tensor, tokenizer: Any, k: int) -> dict[str, list[str]]:
    """One-shot form of :class:`EmbeddingNeighbours`: ``{word: k nearest whole words}``.

    Builds the search matrix on every call; build an :class:`EmbeddingNeighbours` once when
    looking up words repeatedly.
    """
    return EmbeddingNeighbours(embeddings, tokenizer).candidates_many(words, k)


# ------------------------------------------------------------------------------------------
# Step 2b: candidates from a masked-LM (single-piece words), batched
# ------------------------------------------------------------------------------------------


@dataclass
class _MaskRequest:
    """One masked copy to run through the MLM: which sentence, which word."""

    word_pieces: list[list[int]]  # token ids of every word of the sentence
    position: int  # the word to mask


def _mlm_max_length(mlm: Any) -> int:
    return int(min(getattr(mlm.config, "max_position_embeddings", 512), 512))


def _build_masked_input(req: _MaskRequest, tokenizer: Any, max_length: int, context_copy: bool) -> tuple[list[int], list[int], int]:
    """``[CLS] sentence with [MASK] [SEP] (original sentence [SEP])``: ids, token types, mask index."""
    before = [t for piece in req.word_pieces[: req.position] for t in piece]
    after = [t for piece in req.word_pieces[req.position + 1 :] for t in piece]
    first = [tokenizer.cls_token_id, *before, tokenizer.mask_token_id, *after, tokenizer.sep_token_id]
    ids, types = first, [0] * len(first)
    if context_copy:
        # The authors feed the unmasked sentence as segment B: the MLM then guesses words that
        # fit the original meaning instead of any word that fits the syntax.
        second = [t for piece in req.word_pieces for t in piece] + [tokenizer.sep_token_id]
        ids, types = first + second, types + [1] * len(second)
    return ids[:max_length], types[:max_length], 1 + len(before)


@torch.no_grad()
def _mlm_topk(
    requests: Sequence[_MaskRequest],
    mlm: Any,
    tokenizer: Any,
    k: int,
    device: torch.device,
    allowed: torch.Tensor,
    batch_size: int = 64,
    context_copy: bool = True,
) -> list[list[str]]:
    """Top-k whole-word predictions for every masked copy, run in padded batches.

    ``allowed`` is a boolean vector over the MLM's output vocabulary (True = whole word).
    """
    max_length = _mlm_max_length(mlm)
    built = [_build_masked_input(r, tokenizer, max_length, context_copy) for r in requests]
    # Length-sorted batches waste little compute on padding; results are put back in order.
    order = sorted(range(len(built)), key=lambda i: len(built[i][0]))
    results: list[list[str]] = [[] for _ in requests]
    # Masked-LMs with BERT's layout (``.bert`` + ``.cls``) get the vocabulary projection only at
    # the masked positions: full logits would be batch x length x 30k floats, mostly unused.
    split_head = hasattr(mlm, "bert") and hasattr(mlm, "cls")
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        width = max(len(built[i][0]) for i in chunk)
        ids = torch.full((len(chunk), width), tokenizer.pad_token_id, dtype=torch.long)
        types = torch.zeros_like(ids)
        attention = torch.zeros_like(ids)
        for row, i in enumerate(chunk):
            n = len(built[i][0])
            ids[row, :n] = torch.tensor(built[i][0])
            types[row, :n] = torch.tensor(built[i][1])
            attention[row, :n] = 1
        mask_at = torch.tensor([built[i][2] for i in chunk], device=device)
        rows = torch.arange(len(chunk), device=device)
        inputs = {"input_ids": ids.to(device), "attention_mask": attention.to(device), "token_type_ids": types.to(device)}
        if split_head:
            hidden = mlm.bert(**inputs).last_hidden_state[rows, mask_at]  # (batch, d)
            logits = mlm.cls(hidden)
        else:
            logits = mlm(**inputs).logits[rows, mask_at]  # (batch, vocab)
        logits = logits.float().masked_fill(~allowed, float("-inf"))
        # Never propose the masked word itself (with the context copy it is the top guess).
        own = torch.tensor(
            [requests[i].word_pieces[requests[i].position][0] for i in chunk], device=device
        ).clamp(max=logits.shape[1] - 1)
        logits[rows, own] = float("-inf")
        top = logits.topk(min(k, int(allowed.sum())), dim=1).indices.tolist()
        for row, i in enumerate(chunk):
            results[i] = tokenizer.convert_ids_to_tokens(top[row])
    return results


def _allowed_mask(tokenizer: Any, vocab_size: int, device: torch.device) -> torch.Tensor:
    """Boolean vector over the MLM's output vocabulary: True for whole-word tokens."""
    allowed = torch.zeros(vocab_size, dtype=torch.bool, device=device)
    ids = [i for i in whole_word_ids(tokenizer) if i < vocab_size]
    allowed[torch.tensor(ids, device=device)] = True
    return allowed


def _mlm_vocab_size(mlm: Any) -> int:
    return int(mlm.get_output_embeddings().weight.shape[0])


class _EvalMode:
    """Put a model in eval mode on a device for a block, then restore both (no side effects)."""

    def __init__(self, model: torch.nn.Module, device: torch.device) -> None:
        self.model, self.device = model, device

    def __enter__(self) -> torch.nn.Module:
        self.was_training = self.model.training
        self.old_device = next(self.model.parameters()).device
        return self.model.eval().to(self.device)  # eval: dropout would make candidates random

    def __exit__(self, *exc: Any) -> None:
        self.model.train(self.was_training).to(self.old_device)


def mlm_candidates(
    sentence_words: Sequence[str],
    positions: Iterable[int],
    mlm: Any,
    tokenizer: Any,
    k: int,
    device: Optional[torch.device | str] = None,
    batch_size: int = 64,
    context_copy: bool = True,
) -> Candidates:
    """``{position: k most likely whole words}`` from a masked-LM, one ``[MASK]`` per position.

    Every masked copy of the sentence (one per position) goes through the MLM in batches of
    ``batch_size``: one forward pass for a whole short sentence, where the authors' script ran
    one per word. A word made of several WordPieces is replaced by a single ``[MASK]``
    (:func:`augment` sends those words to :class:`EmbeddingNeighbours` instead, as the paper
    does). Predictions that are ``##`` pieces, special tokens, non-alphabetic or the word
    itself are skipped, so each position gets exactly ``k`` candidates. ``context_copy`` appends
    the unmasked sentence as a second segment, as the authors' script does.
    """
    device = torch.device(device) if device is not None else next(mlm.parameters()).device
    words = list(sentence_words)
    pieces = tokenizer(words, add_special_tokens=False)["input_ids"] if words else []
    requests = [_MaskRequest(pieces, p) for p in positions]
    if not requests:
        return {}
    allowed = _allowed_mask(tokenizer, _mlm_vocab_size(mlm), device)
    with _EvalMode(mlm, device) as model:
        found = _mlm_topk(requests, model, tokenizer, k, device, allowed, batch_size, context_copy)
    return {r.position: c for r, c in zip(requests, found)}


# ------------------------------------------------------------------------------------------
# Step 3: new sentences
# ------------------------------------------------------------------------------------------


def replace_words(words: Sequence[str], candidates: Candidates, p: float, n: int, rng: random.Random) -> list[str]:
    """Up to ``n`` new sentences: each candidate position swapped with probability ``p``.

    For each of ``n`` draws, every position in ``candidates`` is, with probability ``p``,
    replaced by one of its candidates chosen uniformly at random (kept otherwise). Draws equal to
    the original sentence or to an earlier draw are dropped, so fewer than ``n`` sentences may
    come back (none when ``p = 0``). Words are joined with single spaces. ``rng`` is the only
    source of randomness: the same seed gives the same sentences.
    """
    original = " ".join(words)
    seen = {original}
    out: list[str] = []
    positions = sorted(pos for pos, cands in candidates.items() if cands)
    for _ in range(n):
        new = list(words)
        for pos in positions:
            if rng.random() < p:
                new[pos] = rng.choice(candidates[pos])
        sentence = " ".join(new)
        if sentence not in seen:  # a dataset of repeats adds cost, not information
            seen.add(sentence)
            out.append(sentence)
    return out


# ------------------------------------------------------------------------------------------
# Where candidates come from: a course teacher, a name, or a masked-LM instance
# ------------------------------------------------------------------------------------------


def has_mlm_head(folder: str | Path) -> bool:
    """Whether a Hugging Face folder's ``model.safetensors`` holds masked-LM head weights."""
    from safetensors import safe_open

    weights = Path(folder) / "model.safetensors"
    if not weights.is_file():
        return False
    with safe_open(str(weights), framework="pt") as f:
        return any(k.startswith(("cls.predictions", "bert.cls.predictions")) for k in f.keys())


def _load_mlm(folder: Path) -> Any:
    from transformers import BertForMaskedLM

    return BertForMaskedLM.from_pretrained(str(folder)).eval()


@dataclass
class _Sources:
    """Everything candidate generation needs, whatever ``teacher_or_mlm`` was."""

    name: str
    tokenizer: Any
    embeddings: torch.Tensor  # input-embedding matrix for the neighbour search
    mlm: Optional[Any]  # a transformers masked-LM, or None


def _resolve_sources(teacher_or_mlm: Any, tokenizer: Any = None) -> _Sources:
    if isinstance(teacher_or_mlm, Bert):
        model = teacher_or_mlm
        tok = tokenizer if tokenizer is not None else model.tokenizer
        if tok is None:
            raise ValueError("the teacher has no .tokenizer: load it with load_teacher(...) or pass tokenizer=...")
        source = getattr(model, "source", None)
        mlm, folder = None, None
        if source:
            try:
                folder = resolve_teacher_folder(source)
            except TeacherNotFoundError as err:
                logger.info("teacher folder for %r not found (%s); no masked-LM", source, err)
        if folder is not None and has_mlm_head(folder):
            logger.info("masked-LM head found in %s: single-piece words use BertForMaskedLM", folder)
            mlm = _load_mlm(folder)
        else:
            logger.info(
                "teacher %r has no masked-LM head (no cls.predictions.* weights%s): every word uses "
                "embedding neighbours of the teacher's input embeddings (the offline stand-in for the "
                "paper's BERT masked-LM and GloVe)",
                source or "course Bert",
                f" in {folder}" if folder is not None else "",
            )
        return _Sources(str(source or "course-bert"), tok, model.bert.embeddings.word_embeddings.weight, mlm)

    if isinstance(teacher_or_mlm, (str, Path)):
        name = str(teacher_or_mlm)
        folder = resolve_teacher_folder(name)
        if not has_mlm_head(folder):
            # e.g. "minilm": no MLM here, so it is just a teacher whose embeddings we search.
            return _resolve_sources(load_teacher(name), tokenizer)
        logger.info("loading BertForMaskedLM from %s", folder)
        mlm = _load_mlm(folder)
        tok = tokenizer if tokenizer is not None else load_tokenizer(folder)
        return _Sources(name, tok, mlm.get_input_embeddings().weight, mlm)

    if isinstance(teacher_or_mlm, torch.nn.Module) and hasattr(teacher_or_mlm, "get_input_embeddings"):
        mlm = teacher_or_mlm
        name = str(getattr(mlm.config, "_name_or_path", "") or type(mlm).__name__)
        tok = tokenizer
        if tok is None:
            if not getattr(mlm.config, "_name_or_path", ""):
                raise ValueError(f"{type(mlm).__name__} given without tokenizer=...: pass the tokenizer that goes with it.")
            tok = load_tokenizer(mlm.config._name_or_path)
        return _Sources(name, tok, mlm.get_input_embeddings().weight, mlm)

    raise TypeError(
        f"teacher_or_mlm must be a course Bert (load_teacher(...)), a model name or folder, or a "
        f"transformers masked-LM such as BertForMaskedLM; got {type(teacher_or_mlm).__name__}."
    )


# ------------------------------------------------------------------------------------------
# Caching
# ------------------------------------------------------------------------------------------


def _tensor_fingerprint(tensors: Iterable[tuple[str, torch.Tensor]]) -> str:
    """Cheap fingerprint of weights: name, shape and two sums per tensor (not a full hash)."""
    h = hashlib.sha256()
    for name, t in tensors:
        t = t.detach()
        total, size = t.sum(dtype=torch.float64).item(), t.abs().sum(dtype=torch.float64).item()
        h.update(f"{name}{tuple(t.shape)}{total:.6e}{size:.6e}".encode())
    return h.hexdigest()[:16]


def _cache_key(sentences: Sequence[str], other: Sequence[Any], src: _Sources, profile: Profile, n_src: int, context_copy: bool,
               columns: Optional[Sequence[str]] = None) -> str:
    h = hashlib.sha256()
    # The rows themselves (not datasets' fingerprint, which changes with how a set was built).
    for s, o in zip(sentences, other):
        h.update(f"{s}\t{o}\n".encode())
    weights = [("embeddings", src.embeddings)]
    if src.mlm is not None:
        weights += list(src.mlm.state_dict().items())
    settings = {
        "version": ALGORITHM_VERSION,
        "teacher": src.name,
        "weights": _tensor_fingerprint(weights),
        "mlm": src.mlm is not None,
        "p": profile.augment_p,
        "n": profile.augment_n,
        "k": profile.augment_k,
        "limit": n_src,
        "seed": profile.seed,
        "context_copy": context_copy,
    }
    if columns is not None:  # a pair: which sentences were augmented (absent for one column, as before pairs existed)
        settings["columns"] = list(columns)
    h.update(json.dumps(settings, sort_keys=True).encode())
    return h.hexdigest()[:12]


def _save_atomically(dataset: Dataset, folder: Path) -> None:
    """Save to a temporary sibling folder, then rename: a crash never leaves half a cache.

    A copy another process finished first is kept: the folder's name is its content's key.
    """
    with atomic_folder(folder, keep_existing=True) as tmp:
        dataset.save_to_disk(str(tmp))


# ------------------------------------------------------------------------------------------
# The whole algorithm
# ------------------------------------------------------------------------------------------


def augment(
    dataset: Dataset,
    teacher_or_mlm: Union[Bert, str, Path, torch.nn.Module],
    profile: Union[Profile, str],
    cache_dir: Optional[str | Path] = None,
    device: Optional[torch.device | str] = None,
    *,
    tokenizer: Any = None,
    text_column: str | Sequence[str] = "sentence",
    batch_size: int = 64,
    chunk_size: int = 256,
    context_copy: bool = True,
    progress: bool = True,
) -> Dataset:
    """TinyBERT's data augmentation (Algorithm 1) of a sentence dataset such as SST-2, or of sentence pairs.

    For each of the first ``profile.augment_limit`` rows (all when ``None``): find the eligible
    words (:func:`eligible_words`), give each ``profile.augment_k`` candidates (masked-LM for
    single-piece words when a masked-LM is available, :class:`EmbeddingNeighbours` otherwise),
    then draw ``profile.augment_n`` new sentences with replacement probability
    ``profile.augment_p`` (:func:`replace_words`). See the module docstring for what
    ``teacher_or_mlm`` may be.

    ``text_column``: the column to augment, or several (a pair: ``("sentence1", "sentence2")``).
    As the authors' script does for pairs, each sentence is augmented in turn: first new
    versions of the first sentence beside the original second, then the original first beside
    new versions of the second. (Their script edits its row in place, so the second sentence's
    new rows carry the *last* new first sentence; here they carry the original, so every new
    row changes one sentence of a real example.)

    Returns a Dataset with the source's columns plus ``is_original`` (bool): each source row
    first (``is_original=True``), then its distinct new rows with the source's ``label`` (and
    other columns) copied. At most ``augment_n + 1`` rows per source row, ``2 * augment_n + 1``
    for a pair. :func:`augment_stats` summarises it.

    ``cache_dir``: the result is saved there (atomically) under a name hashing the rows, the
    teacher's weights and the settings; an identical later call loads it instead.
    ``device``: where the MLM and neighbour search run (default: where the model already is).
    ``batch_size``: masked copies per MLM forward pass; ``chunk_size``: sentences whose
    candidates are computed together.
    """
    profile = get_profile(profile)
    text_columns = [text_column] if isinstance(text_column, str) else list(text_column)
    missing = [c for c in text_columns if c not in dataset.column_names]
    if missing or not text_columns:
        raise ValueError(f"dataset has no column {(missing or [''])[0]!r}; columns: {dataset.column_names}")
    if "is_original" in dataset.column_names:
        raise ValueError("dataset already has an 'is_original' column: it looks augmented already.")
    n_src = len(dataset) if profile.augment_limit is None else min(profile.augment_limit, len(dataset))
    source = dataset.select(range(n_src)) if n_src < len(dataset) else dataset
    texts: dict[str, list[str]] = {c: list(source[c]) for c in text_columns}
    other_columns = [c for c in source.column_names if c not in text_columns]
    other_values = {c: list(source[c]) for c in other_columns}

    src = _resolve_sources(teacher_or_mlm, tokenizer)
    folder: Optional[Path] = None
    if cache_dir is not None:
        # The key of a single column is the one it always was (cached SST-2 sets stay valid).
        keyed = text_columns[1:] + other_columns
        key_rows = list(zip(*(texts.get(c) or other_values[c] for c in keyed))) if keyed else [()] * n_src
        key = _cache_key(texts[text_columns[0]], key_rows, src, profile, n_src, context_copy,
                         columns=text_columns if len(text_columns) > 1 else None)
        folder = Path(cache_dir) / f"augmented-{n_src}x{profile.augment_n}-{key}"
        if folder.is_dir():
            cached = Dataset.load_from_disk(str(folder))
            logger.info("loaded cached augmented set from %s (%d rows)", folder, len(cached))
            return cached

    started = time.perf_counter()
    if device is not None:
        device = pick_device(device) if isinstance(device, str) else torch.device(device)  # "auto" too
    elif src.mlm is not None:
        device = next(src.mlm.parameters()).device
    else:
        device = src.embeddings.device
    neighbours = EmbeddingNeighbours(src.embeddings, src.tokenizer, device)
    k, tok = profile.augment_k, src.tokenizer

    out_text: dict[str, list[str]] = {c: [] for c in text_columns}
    out_original: list[bool] = []
    out_other: dict[str, list[Any]] = {c: [] for c in other_columns}
    n_mlm_words = n_neighbour_words = 0

    def run(mlm: Optional[Any]) -> None:
        nonlocal n_mlm_words, n_neighbour_words
        allowed = _allowed_mask(tok, _mlm_vocab_size(mlm), device) if mlm is not None else None
        max_length = _mlm_max_length(mlm) if mlm is not None else 0

        def chunk_candidates(split: list[list[str]]) -> list[Candidates]:
            """Candidates for every eligible word of a chunk of sentences (split into words)."""
            nonlocal n_mlm_words, n_neighbour_words
            # Tokenise each distinct word once: the piece count decides MLM vs neighbours.
            distinct = sorted({w for words in split for w in words})
            pieces_of = dict(zip(distinct, tok(distinct, add_special_tokens=False)["input_ids"])) if distinct else {}
            mlm_requests: list[tuple[int, _MaskRequest]] = []  # (sentence index in chunk, request)
            neighbour_slots: list[tuple[int, int, str]] = []  # (sentence index in chunk, position, word)
            for j, words in enumerate(split):
                word_pieces = [pieces_of[w] for w in words]
                offset = 1  # [CLS]
                starts = []
                for p in word_pieces:
                    starts.append(offset)
                    offset += len(p)
                for pos, word in eligible_words(words):
                    # A single piece can be predicted with one [MASK]; it must also fit the model.
                    if mlm is not None and len(word_pieces[pos]) == 1 and starts[pos] < max_length - 1:
                        mlm_requests.append((j, _MaskRequest(word_pieces, pos)))
                    else:
                        neighbour_slots.append((j, pos, word))
            candidates: list[Candidates] = [{} for _ in split]
            if mlm_requests:
                found = _mlm_topk([r for _, r in mlm_requests], mlm, tok, k, device, allowed, batch_size, context_copy)
                for (j, req), cands in zip(mlm_requests, found):
                    candidates[j][req.position] = cands
            if neighbour_slots:
                near = neighbours.candidates_many((w for _, _, w in neighbour_slots), k)
                for j, pos, word in neighbour_slots:
                    candidates[j][pos] = near[word]
            n_mlm_words += len(mlm_requests)
            n_neighbour_words += len(neighbour_slots)
            return candidates

        bar = tqdm(total=n_src, desc="augmenting", unit="sent", disable=not progress)
        for start in range(0, n_src, chunk_size):
            stop = min(start + chunk_size, n_src)
            splits = {c: [texts[c][i].split() for i in range(start, stop)] for c in text_columns}
            candidates = {c: chunk_candidates(splits[c]) for c in text_columns}
            for j in range(stop - start):
                i = start + j
                original = {c: texts[c][i] for c in text_columns}
                rows: list[tuple[dict[str, str], bool]] = [(original, True)]
                for n, c in enumerate(text_columns):
                    # One generator per example (and per sentence of a pair), seeded by (seed, index):
                    # reproducible, and independent of chunking and of how many examples are augmented.
                    rng = random.Random(f"{profile.seed}:{i}" if n == 0 else f"{profile.seed}:{i}:{n}")
                    new = replace_words(splits[c][j], candidates[c][j], profile.augment_p, profile.augment_n, rng)
                    rows += [({**original, c: sentence}, False) for sentence in new]
                for row, is_orig in rows:
                    for c in text_columns:
                        out_text[c].append(row[c])
                    out_original.append(is_orig)
                    for c in other_columns:
                        out_other[c].append(other_values[c][i])
            bar.update(stop - start)
        bar.close()

    if src.mlm is not None:
        with _EvalMode(src.mlm, device) as mlm:
            run(mlm)
    else:
        run(None)

    seconds = time.perf_counter() - started
    stats = {"source": n_src, "rows": len(out_original), "seconds": round(seconds, 3), "mlm_words": n_mlm_words, "neighbour_words": n_neighbour_words}
    features = Features({**{c: source.features[c] for c in source.column_names}, "is_original": Value("bool")})
    columns = {c: out_text[c] if c in out_text else out_other[c] for c in source.column_names}
    result = Dataset.from_dict(
        {**columns, "is_original": out_original},
        info=DatasetInfo(description="tinybert_lib.augment " + json.dumps(stats), features=features),
    )
    logger.info(
        "augmented %d source examples into %d rows (x%.1f) in %.1f s; candidates: %d masked-LM, %d embedding-neighbour words",
        n_src, len(result), len(result) / max(n_src, 1), seconds, n_mlm_words, n_neighbour_words,
    )
    if folder is not None:
        _save_atomically(result, folder)
        logger.info("saved augmented set to %s", folder)
    return result


def augment_stats(dataset: Dataset) -> dict[str, Any]:
    """``{"source", "rows", "ratio"}`` of an augmented set (from ``is_original``), plus
    ``"seconds"`` (time the augmentation took when it was computed) when recorded."""
    n_src = sum(dataset["is_original"])
    stats: dict[str, Any] = {"source": n_src, "rows": len(dataset), "ratio": len(dataset) / max(n_src, 1)}
    description = dataset.info.description or ""
    if description.startswith("tinybert_lib.augment "):
        try:
            stats["seconds"] = json.loads(description.split(" ", 1)[1])["seconds"]
        except (ValueError, KeyError):
            pass
    return stats

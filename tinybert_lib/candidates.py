"""Where TinyBERT's data augmentation gets its replacement words: K candidates for each word.

Lessons: 08.

The paper (Algorithm 1) uses two generators, chosen per word:

* a word that is a single WordPiece is replaced by ``[MASK]`` and BERT's masked-LM proposes the
  K words it finds most likely there (:func:`mlm_candidates`);
* a word split into several pieces (which one ``[MASK]`` cannot stand for) takes its K nearest
  words by cosine similarity of word vectors (:class:`EmbeddingNeighbours`; the paper uses GloVe).

:class:`WordCandidates` puts the two together as the *candidate function* that
:func:`~tinybert_lib.augment.augment` calls on a batch of sentences.

Where the models come from in this course (:func:`candidate_source`)
--------------------------------------------------------------------
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
  augmenting SST-2 took days. Here every masked copy of a batch of sentences goes through the
  MLM in padded batches, and the vocabulary projection runs only at the masked positions.
* **No GloVe download.** Multi-piece words use neighbours in the teacher's input embeddings.
* **Candidates exclude the word itself, ``##`` pieces and special tokens.** The original only
  dropped ``##`` pieces, so the word itself was often a "candidate" and K shrank silently.
* **Kept from the original:** the MLM sees ``[CLS] masked sentence [SEP] original sentence
  [SEP]`` (``context_copy=True``), so its guesses stay close to the original meaning. The MLM
  runs in eval mode (no dropout), so its candidates are deterministic.

Chinese text
------------
Chinese has no spaces between words, so each Chinese character (:data:`CJK_CHAR`, the blocks BERT's
tokenizer splits into single tokens) is a word of its own. That is the authors' advice for Chinese
(huawei-noah/Pretrained-Language-Model issue 83): a Chinese BERT's tokens are single characters,
so a Chinese masked-LM proposes every candidate and no Chinese GloVe is needed.
:func:`split_words` cuts a sentence into words and remembers where it had spaces;
:func:`join_words` puts it back together, characters without spaces between them. A character is
replaced only by a character: the masked-LM's guesses and the embedding neighbours of a Chinese
word are restricted to the vocabulary's single Chinese characters, an English word's to whole
English words, as before. A character that the vocabulary lacks (``[UNK]``) has no vector, so it
has no neighbours; the masked-LM, which guesses from the context, still proposes some.
``bert-base-uncased``'s vocabulary (the packaged teacher's) holds only 244 Chinese characters,
mostly from Japanese names; for real Chinese data use a Chinese masked-LM such as
``bert-base-chinese``. Text without Chinese characters is split, searched and joined exactly as
before.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import accumulate
from pathlib import Path
from typing import Any, Optional

import torch
import torch.nn.functional as F

from .bert import Bert
from .teachers import TeacherNotFoundError, load_teacher, load_tokenizer, resolve_teacher_folder

logger = logging.getLogger(__name__)

__all__ = [
    "CJK_CHAR",
    "WORD",
    "CandidateSource",
    "Candidates",
    "EmbeddingNeighbours",
    "WordCandidates",
    "candidate_source",
    "embedding_neighbours",
    "has_mlm_head",
    "join_words",
    "mlm_candidates",
    "split_words",
    "whole_word_ids",
]

#: A word augmentation may touch: ASCII letters only, as the original's ``_is_valid``
#: ("n't", "9", "--" and "café" are left alone). Matched against the lower-cased word.
WORD = re.compile(r"[a-z]+")

# The code points BERT's tokenizer treats as Chinese characters (``_is_chinese_char``): the CJK Unified
# Ideographs and their extensions. Kana and hangul are not among them: those scripts have spaces.
_CJK_RANGES = (r"\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
               r"\U00020000-\U0002a6df\U0002a700-\U0002ceaf\U0002f800-\U0002fa1f")

#: One Chinese (CJK) character: a word of its own for augmentation (:func:`split_words`).
CJK_CHAR = re.compile(f"[{_CJK_RANGES}]")

# The pieces of a whitespace token that holds Chinese: one character, a run of other letters or
# digits ("Python", "3d"), or one mark ("。", "!"), so that "Python" in "我喜欢Python。" is a word too.
_PIECE = re.compile(rf"[{_CJK_RANGES}]|[^\W{_CJK_RANGES}]+|\S")

Candidates = dict[int, list[str]]  # word position in the sentence -> replacement words


def split_words(sentence: str) -> tuple[list[str], list[str]]:
    """A sentence's words, and the separator before each (``""`` or ``" "``).

    The sentence is split on whitespace (SST-2 is already tokenised); a whitespace token that
    holds Chinese characters is cut further into single characters, runs of other letters or
    digits, and single marks, with no separator between them. Text without Chinese gives
    ``sentence.split()`` and single spaces, so ``join_words(*split_words(s)) == " ".join(s.split())``.

    >>> split_words("剧情很无聊。 boring")
    (['剧', '情', '很', '无', '聊', '。', 'boring'], ['', '', '', '', '', '', ' '])
    """
    words: list[str] = []
    seps: list[str] = []
    for token in sentence.split():
        pieces = _PIECE.findall(token) if CJK_CHAR.search(token) else [token]
        seps += [" " if words else ""] + [""] * (len(pieces) - 1)
        words += pieces
    return words, seps


def join_words(words: Sequence[str], seps: Optional[Sequence[str]] = None) -> str:
    """The sentence of :func:`split_words`: each word after its separator (single spaces without ``seps``)."""
    if seps is None:
        return " ".join(words)
    return "".join(sep + word for sep, word in zip(seps, words, strict=True))


def _is_chinese(word: str) -> bool:
    """Whether a word holds a Chinese character: its candidates are then Chinese characters."""
    return CJK_CHAR.search(word) is not None


def whole_word_ids(tokenizer: Any) -> list[int]:
    """Ids of the vocabulary entries that can stand for a whole word.

    Alphabetic tokens only: this drops ``##`` continuation pieces (they cannot start a word),
    special tokens (``[CLS]``, ``[unused7]``, ...), punctuation and numbers. For the BERT uncased
    vocabulary: 21,745 of 30,522 entries.
    """
    special = set(tokenizer.all_special_tokens)
    vocab = tokenizer.get_vocab()
    return sorted(i for t, i in vocab.items() if t not in special and WORD.fullmatch(t.lower()))


def _cjk_char_ids(tokenizer: Any) -> list[int]:
    """Ids of the vocabulary entries that are one Chinese character (never a ``##`` piece).

    What a Chinese character may be replaced by. For the BERT uncased vocabulary: 244 entries.
    """
    special = set(tokenizer.all_special_tokens)
    vocab = tokenizer.get_vocab()
    return sorted(i for t, i in vocab.items() if t not in special and CJK_CHAR.fullmatch(t))


# ------------------------------------------------------------------------------------------
# Embedding neighbours (multi-piece words, or no masked-LM at all)
# ------------------------------------------------------------------------------------------


class EmbeddingNeighbours:
    """Nearest whole words by cosine similarity of input-embedding vectors (GloVe's stand-in).

    Built once: the rows of ``embeddings`` (vocab_size x d, e.g. a teacher's
    ``bert.embeddings.word_embeddings.weight``) for the whole-word vocabulary entries
    (:func:`whole_word_ids`) are L2-normalised into one search matrix, so a lookup is a single
    matrix product. A word's vector is the mean of its WordPiece vectors, which lets words
    outside the vocabulary ("secretions" = "secret" + "##ions") have neighbours too.
    Results are memoised per word: SST-2 repeats its words a lot.

    A word with Chinese characters is searched among the vocabulary's single Chinese characters
    instead (a second matrix, built on the first such word); its ``[UNK]`` pieces carry no
    meaning and are left out of its vector, and a word of ``[UNK]`` only has no neighbours.

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
        self._cjk: Optional[tuple[list[int], torch.Tensor]] = None  # (ids, unit rows) of Chinese characters

    def word_vector(self, word: str) -> torch.Tensor:
        """Mean of the word's WordPiece input embeddings (not normalised)."""
        pieces = self.tokenizer(word, add_special_tokens=False)["input_ids"]
        return self.embeddings[pieces].mean(dim=0)

    @torch.no_grad()
    def candidates_many(self, words: Iterable[str], k: int) -> dict[str, list[str]]:
        """``{word: its k nearest whole words}`` for many words, in one matrix product (Chinese: characters)."""
        words = list(dict.fromkeys(words))  # unique, order kept
        todo = [w for w in words if (w, k) not in self._cache and not _is_chinese(w)]
        chinese = [w for w in words if (w, k) not in self._cache and _is_chinese(w)]
        if chinese:
            self._search_chinese(chinese, k)
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

    def _search_chinese(self, words: list[str], k: int) -> None:
        """Cache the ``k`` Chinese characters nearest to each word (none for a word of ``[UNK]`` only)."""
        if self._cjk is None:
            ids = [i for i in _cjk_char_ids(self.tokenizer) if i < self.embeddings.shape[0]]
            rows = self.embeddings[torch.tensor(ids, dtype=torch.long, device=self.device)]
            self._cjk = (ids, F.normalize(rows, dim=1))
        ids, matrix = self._cjk
        unk = self.tokenizer.unk_token_id
        # [UNK] stands for every unknown character alike: its vector says nothing about this one.
        encoded = self.tokenizer(words, add_special_tokens=False)["input_ids"]
        pieces = [[t for t in p if t != unk] for p in encoded]
        known = [i for i, p in enumerate(pieces) if p] if ids else []
        for word in words:
            self._cache[(word, k)] = []
        if not known:
            return
        vectors = F.normalize(torch.stack([self.embeddings[pieces[i]].mean(dim=0) for i in known]), dim=1)
        extra = max(len(pieces[i]) for i in known)  # the word's own characters are dropped below
        top = (vectors @ matrix.T).topk(min(k + extra, len(ids)), dim=1).indices.tolist()
        for i, row in zip(known, top):
            # By id, not by text: the tokenizer may have normalised the character (compatibility forms).
            found = [ids[j] for j in row if ids[j] not in pieces[i]][:k]
            self._cache[(words[i], k)] = self.tokenizer.convert_ids_to_tokens(found)

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
# Masked-LM candidates (single-piece words), batched
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


def _allowed_mask(tokenizer: Any, vocab_size: int, device: torch.device,
                  chinese: bool = False) -> torch.Tensor:
    """Boolean vector over the MLM's output vocabulary: True for whole-word tokens (Chinese characters)."""
    allowed = torch.zeros(vocab_size, dtype=torch.bool, device=device)
    ids = [i for i in (_cjk_char_ids(tokenizer) if chinese else whole_word_ids(tokenizer)) if i < vocab_size]
    if ids:  # a vocabulary may hold no Chinese character at all
        allowed[torch.tensor(ids, device=device)] = True
    return allowed


def _mlm_topk_by_script(
    requests: Sequence[_MaskRequest],
    chinese: Sequence[bool],
    mlm: Any,
    tokenizer: Any,
    k: int,
    device: torch.device,
    allowed: tuple[torch.Tensor, torch.Tensor],
    batch_size: int = 64,
    context_copy: bool = True,
) -> list[list[str]]:
    """:func:`_mlm_topk` with ``allowed = (whole words, Chinese characters)``, by the masked word's script.

    A masked English word gets English guesses, a masked Chinese character Chinese ones: the two
    groups run apart, so text without Chinese runs in exactly the batches it always did.
    """
    results: list[list[str]] = [[] for _ in requests]
    for script, mask in zip((False, True), allowed):
        group = [i for i, c in enumerate(chinese) if c == script]
        if group and bool(mask.any()):
            found = _mlm_topk([requests[i] for i in group], mlm, tokenizer, k, device, mask, batch_size,
                              context_copy)
            for i, cands in zip(group, found):
                results[i] = cands
    return results


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
    (:class:`WordCandidates` sends those words to :class:`EmbeddingNeighbours` instead, as the
    paper does). Predictions that are ``##`` pieces, special tokens, non-alphabetic or the word
    itself are skipped, so each position gets exactly ``k`` candidates; a Chinese character gets
    Chinese characters only (at most as many as the vocabulary holds). ``context_copy`` appends
    the unmasked sentence as a second segment, as the authors' script does.
    """
    device = torch.device(device) if device is not None else next(mlm.parameters()).device
    words = list(sentence_words)
    pieces = tokenizer(words, add_special_tokens=False)["input_ids"] if words else []
    requests = [_MaskRequest(pieces, p) for p in positions]
    if not requests:
        return {}
    vocab_size = _mlm_vocab_size(mlm)
    allowed = (_allowed_mask(tokenizer, vocab_size, device),
               _allowed_mask(tokenizer, vocab_size, device, chinese=True))
    chinese = [_is_chinese(words[r.position]) for r in requests]
    with _EvalMode(mlm, device) as model:
        found = _mlm_topk_by_script(requests, chinese, model, tokenizer, k, device, allowed, batch_size,
                                    context_copy)
    return {r.position: c for r, c in zip(requests, found)}


# ------------------------------------------------------------------------------------------
# Where the models come from: a course teacher, a name, or a masked-LM instance
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
class CandidateSource:
    """Everything candidate generation needs, whatever was asked for (see :func:`candidate_source`)."""

    name: str
    tokenizer: Any
    embeddings: torch.Tensor  # input-embedding matrix for the neighbour search
    mlm: Optional[Any]  # a transformers masked-LM, or None: every word then uses neighbours


def candidate_source(teacher_or_mlm: Any, tokenizer: Any = None) -> CandidateSource:
    """The tokenizer, word vectors and (when there is one) masked-LM behind a teacher, a name or an MLM."""
    if isinstance(teacher_or_mlm, Bert):
        model = teacher_or_mlm
        tok = tokenizer if tokenizer is not None else model.tokenizer
        if tok is None:
            raise ValueError("the teacher has no .tokenizer: load it with load_teacher(...) or pass tokenizer=...")
        source = model.source
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
        return CandidateSource(str(source or "course-bert"), tok, model.bert.embeddings.word_embeddings.weight, mlm)

    if isinstance(teacher_or_mlm, (str, Path)):
        name = str(teacher_or_mlm)
        folder = resolve_teacher_folder(name)
        if not has_mlm_head(folder):
            # e.g. "minilm": no MLM here, so it is just a teacher whose embeddings we search.
            return candidate_source(load_teacher(name), tokenizer)
        logger.info("loading BertForMaskedLM from %s", folder)
        mlm = _load_mlm(folder)
        tok = tokenizer if tokenizer is not None else load_tokenizer(folder)
        return CandidateSource(name, tok, mlm.get_input_embeddings().weight, mlm)

    if isinstance(teacher_or_mlm, torch.nn.Module) and hasattr(teacher_or_mlm, "get_input_embeddings"):
        mlm = teacher_or_mlm
        name = str(getattr(mlm.config, "_name_or_path", "") or type(mlm).__name__)
        tok = tokenizer
        if tok is None:
            if not getattr(mlm.config, "_name_or_path", ""):
                raise ValueError(f"{type(mlm).__name__} given without tokenizer=...: pass the tokenizer that goes with it.")
            tok = load_tokenizer(mlm.config._name_or_path)
        return CandidateSource(name, tok, mlm.get_input_embeddings().weight, mlm)

    raise TypeError(
        f"teacher_or_mlm must be a course Bert (load_teacher(...)), a model name or folder, or a "
        f"transformers masked-LM such as BertForMaskedLM; got {type(teacher_or_mlm).__name__}."
    )


# ------------------------------------------------------------------------------------------
# The candidate function: MLM for single-piece words, neighbours for the rest
# ------------------------------------------------------------------------------------------


class WordCandidates:
    """The paper's candidate rule as a function of a batch of sentences.

    ``candidates_for(sentences, eligible)`` takes sentences split into words and, for each, the
    ``(position, word)`` pairs that may change; it returns, for each sentence,
    ``{position: k replacement words}``. A single-piece word gets the masked-LM's top ``k``
    (when ``source`` has a masked-LM and the word fits within its length), any other word its
    ``k`` embedding neighbours; a Chinese character's are Chinese characters. A batch of
    sentences costs one neighbour search and a few MLM forward passes (``batch_size`` masked
    copies each), not one per word.

    Use it in a ``with`` block when ``source`` has a masked-LM: the MLM then runs in eval mode on
    ``device`` and is put back as it was afterwards. ``mlm_words`` and ``neighbour_words``
    count the words each generator served.
    """

    def __init__(self, source: CandidateSource, k: int, device: Optional[torch.device | str] = None,
                 batch_size: int = 64, context_copy: bool = True) -> None:
        if device is None:  # where the model already is
            device = next(source.mlm.parameters()).device if source.mlm is not None else source.embeddings.device
        self.source, self.k, self.device = source, k, torch.device(device)
        self.batch_size, self.context_copy = batch_size, context_copy
        self.tokenizer = source.tokenizer
        self.neighbours = EmbeddingNeighbours(source.embeddings, source.tokenizer, self.device)
        self.mlm: Optional[Any] = None  # set inside the ``with`` block
        self.mlm_words = self.neighbour_words = 0
        self._eval_mode: Optional[_EvalMode] = None

    def __enter__(self) -> WordCandidates:
        if self.source.mlm is not None:
            self._eval_mode = _EvalMode(self.source.mlm, self.device)
            self.mlm = self._eval_mode.__enter__()
            vocab_size = _mlm_vocab_size(self.mlm)
            self._allowed = (_allowed_mask(self.tokenizer, vocab_size, self.device),
                             _allowed_mask(self.tokenizer, vocab_size, self.device, chinese=True))
            self._max_length = _mlm_max_length(self.mlm)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._eval_mode is not None:
            self._eval_mode.__exit__(*exc)
            self._eval_mode, self.mlm = None, None

    def __call__(self, sentences: Sequence[Sequence[str]], eligible: Sequence[Sequence[tuple[int, str]]]) -> list[Candidates]:
        if self.source.mlm is not None and self.mlm is None:
            raise RuntimeError("WordCandidates with a masked-LM is used inside `with candidates_for:`")
        tok = self.tokenizer
        # Tokenise each distinct word once: the piece count decides MLM vs neighbours.
        distinct = sorted({w for words in sentences for w in words})
        pieces_of = dict(zip(distinct, tok(distinct, add_special_tokens=False)["input_ids"])) if distinct else {}
        mlm_requests: list[tuple[int, _MaskRequest]] = []  # (sentence index in the batch, request)
        neighbour_slots: list[tuple[int, int, str]] = []  # (sentence index in the batch, position, word)
        for j, (words, slots) in enumerate(zip(sentences, eligible)):
            word_pieces = [pieces_of[w] for w in words]
            starts = list(accumulate((len(p) for p in word_pieces), initial=1))  # token index of each word, after [CLS]
            for pos, word in slots:
                # A single piece can be predicted with one [MASK]; it must also fit the model.
                if self.mlm is not None and len(word_pieces[pos]) == 1 and starts[pos] < self._max_length - 1:
                    mlm_requests.append((j, _MaskRequest(word_pieces, pos)))
                else:
                    neighbour_slots.append((j, pos, word))
        candidates: list[Candidates] = [{} for _ in sentences]
        if mlm_requests:
            chinese = [_is_chinese(sentences[j][r.position]) for j, r in mlm_requests]
            requests = [r for _, r in mlm_requests]
            found = _mlm_topk_by_script(requests, chinese, self.mlm, tok, self.k, self.device, self._allowed,
                                        self.batch_size, self.context_copy)
            for (j, req), cands in zip(mlm_requests, found):
                candidates[j][req.position] = cands
        if neighbour_slots:
            near = self.neighbours.candidates_many((w for _, _, w in neighbour_slots), self.k)
            for j, pos, word in neighbour_slots:
                candidates[j][pos] = near[word]
        self.mlm_words += len(mlm_requests)
        self.neighbour_words += len(neighbour_slots)
        return candidates

"""Data augmentation on Chinese text: a character is a word, replaced by characters, joined without spaces."""

from __future__ import annotations

import random

import pytest
import torch
from datasets import Dataset

import tinybert_lib as tl
from tinybert_lib import augment as A
from tinybert_lib.candidates import CandidateSource, WordCandidates

CHINESE = ["这部电影非常好看。", "剧情很无聊。", "演员的表演太棒了！"]
MIXED = "我喜欢 Python 编程，it 's a good movie 。"


def _is_cjk(word: str) -> bool:
    return len(word) == 1 and A.CJK_CHAR.fullmatch(word) is not None


def _is_english(word: str) -> bool:
    return word.isascii() and word.isalpha()


@pytest.fixture(scope="module")
def chinese_vocab(tmp_path_factory):
    """A tokenizer whose vocabulary holds every character of the test sentences, with random word vectors."""
    from transformers import BertTokenizer

    chars = sorted({c for s in CHINESE + [MIXED] for c in s if A.CJK_CHAR.fullmatch(c)} | set("美丑差妙影视剧"))
    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tokens = [*special, "。", "，", "！", "good", "bad", "film", "movie", *chars]
    path = tmp_path_factory.mktemp("zh") / "vocab.txt"
    path.write_text("\n".join(tokens) + "\n", encoding="utf-8")
    torch.manual_seed(0)
    return BertTokenizer(str(path)), torch.randn(len(tokens), 16)


# --- words: characters, separators, eligibility ---------------------------------------------


def test_chinese_is_split_into_characters_and_joined_back_without_spaces():
    words, seps = A.split_words("这部电影非常好看。")
    assert words == ["这", "部", "电", "影", "非", "常", "好", "看", "。"] and set(seps) == {""}
    assert A.join_words(words, seps) == "这部电影非常好看。"
    words, seps = A.split_words(MIXED)
    assert words[:6] == ["我", "喜", "欢", "Python", "编", "程"] and "it" in words and "'s" in words
    assert A.join_words(words, seps) == MIXED  # the spaces of the source, no more, no fewer
    # Text without Chinese: whitespace split and single spaces, as always.
    s = "a gripping , funny  film ."
    assert A.split_words(s) == (s.split(), [""] + [" "] * 5)
    assert A.join_words(s.split()) == A.join_words(*A.split_words(s)) == "a gripping , funny film ."
    for odd in ["café电影 noir", "e\u0301好 😀看！", "３Ｄ电影，ＯＫ", "  前后  空白 ", "日本語のテキスト"]:
        assert A.join_words(*A.split_words(odd)) == " ".join(odd.split())  # nothing lost, nothing added


def test_every_chinese_character_is_a_word_but_function_characters_and_punctuation():
    assert A.eligible_words("剧情很无聊。") == [(0, "剧"), (1, "情"), (3, "无"), (4, "聊")]  # 很 "very", 。
    found = dict(A.eligible_words(MIXED))
    assert {"喜", "欢", "Python", "编", "程", "good", "movie"} <= set(found.values())
    assert not {"我", "it", "'s", "a", "，", "。"} & set(found.values())
    assert A.eligible_words("，。！？「」") == []
    assert A.eligible_words(["电影", "好"]) == [(1, "好")]  # a word list is used as is: one character per word


# --- candidates: characters for characters ------------------------------------------------


def test_teacher_embedding_neighbours_of_a_character_are_characters(teacher):
    nb = A.EmbeddingNeighbours(teacher.bert.embeddings.word_embeddings.weight, teacher.tokenizer)
    near = nb.candidates("部", 8)  # one of the 244 characters of the uncased vocabulary
    assert len(near) == 8 and "部" not in near and all(_is_cjk(c) for c in near)
    assert nb.candidates("好", 8) == []  # not in that vocabulary: [UNK] has no meaningful vector
    assert all(_is_english(w) for w in nb.candidates("good", 8))  # English searches English, as before


def test_chinese_sentences_get_character_candidates_from_neighbours(chinese_vocab):
    tok, vectors = chinese_vocab
    with WordCandidates(CandidateSource("zh-toy", tok, vectors, None), k=3) as candidates_for:
        words = [A.split_words(s)[0] for s in CHINESE]
        found = candidates_for(words, [A.eligible_words(w) for w in words])
    for sentence, slots, cands in zip(words, (A.eligible_words(w) for w in words), found):
        assert sorted(cands) == [p for p, _ in slots] and slots
        for pos, c in cands.items():
            assert len(c) == 3 and sentence[pos] not in c and all(_is_cjk(x) for x in c)


def test_masked_lm_proposes_characters_for_characters_and_words_for_words(tiny_mlm, teacher):
    words = A.split_words(MIXED)[0]
    positions = [p for p, _ in A.eligible_words(words)]
    cands = A.mlm_candidates(words, positions, tiny_mlm, teacher.tokenizer, k=4)
    assert sorted(cands) == positions
    for pos, c in cands.items():
        assert len(c) == 4 and words[pos] not in c
        assert all(_is_cjk(x) for x in c) if _is_cjk(words[pos]) else all(_is_english(x) for x in c)


def test_a_vocabulary_without_chinese_gives_no_chinese_candidates(tmp_path):
    from transformers import BertTokenizer

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "good", "bad", "film"]
    (tmp_path / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    nb = A.EmbeddingNeighbours(torch.randn(8, 4), BertTokenizer(str(tmp_path / "vocab.txt")))
    found = nb.candidates_many(["好", "good"], 2)
    assert found["好"] == [] and sorted(found["good"]) == ["bad", "film"]


# --- the whole algorithm on Chinese rows ------------------------------------------------------


def _new_rows(out: Dataset) -> list[tuple[str, str]]:
    """``(source, new row)`` for every new row of an augmented table."""
    pairs, source = [], None
    for sentence, is_original in zip(out["sentence"], out["is_original"]):
        if is_original:
            source = sentence
        else:
            pairs.append((source, sentence))
    return pairs


def test_augment_chinese_and_mixed_rows(tiny_mlm, teacher):
    ds = Dataset.from_dict({"sentence": [*CHINESE, MIXED], "label": [1, 0, 1, 1]})
    settings = dict(tokenizer=teacher.tokenizer, p=0.5, n=6, k=5, seed=0, progress=False)
    out, stats = A.augment(ds, tiny_mlm, **settings)
    assert [s for s, o in zip(out["sentence"], out["is_original"]) if o] == ds["sentence"]
    assert stats.mlm_words > 0
    pairs = _new_rows(out)
    assert len(pairs) > 8 and {source for source, _ in pairs} == set(ds["sentence"])
    for source, new in pairs:
        (old_words, old_seps), (new_words, new_seps) = A.split_words(source), A.split_words(new)
        assert new_seps == old_seps and len(new_words) == len(old_words)  # same spacing, same number of words
        changed = {i for i, (a, b) in enumerate(zip(old_words, new_words)) if a != b}
        # Only eligible words change: punctuation, function characters and stop words are kept.
        assert changed and changed <= {p for p, _ in A.eligible_words(source)}
        for i in changed:  # a character by a character, an English word by an English word
            assert _is_cjk(new_words[i]) if _is_cjk(old_words[i]) else _is_english(new_words[i])
        if source in CHINESE:
            assert len(new) == len(source) and " " not in new  # characters joined without spaces
    assert A.augment(ds, tiny_mlm, **settings).dataset.to_dict() == out.to_dict()  # seeded


def test_augment_chinese_with_the_packaged_teacher(teacher):
    """No masked-LM: the characters of the uncased vocabulary get neighbours, the others stay as they are."""
    source = "日本的山很好。"
    unk = teacher.tokenizer.unk_token_id
    known = {p for p, c in A.eligible_words(source) if teacher.tokenizer.convert_tokens_to_ids(c) != unk}
    assert known == {0, 1, 3}  # 日 本 山; 好 is not in bert-base-uncased's 244 characters; 的 and 很 are kept
    out = A.augment(Dataset.from_dict({"sentence": [source], "label": [1]}), teacher, p=1.0, n=4, k=5, seed=0,
                    progress=False).dataset
    new = [s for s, o in zip(out["sentence"], out["is_original"]) if not o]
    assert len(new) == 4
    for row in new:  # p = 1: every known character is replaced, by a character
        assert len(row) == len(source) and {i for i, (a, b) in enumerate(zip(source, row)) if a != b} == known
        assert all(_is_cjk(row[i]) for i in known)


def test_replace_words_keeps_the_separators():
    words, seps = A.split_words("剧情很无聊。")
    out = A.replace_words(words, {0: ["戏"], 4: ["趣"]}, p=1.0, n=3, rng=random.Random(0), seps=seps)
    assert out == ["戏情很无趣。"]
    assert A.replace_words(words, {0: ["戏"]}, p=1.0, n=1, rng=random.Random(0)) == ["戏 情 很 无 聊 。"]


def test_english_rows_are_split_exactly_as_before():
    for s in tl.data.load_sst2("train", limit=50)["sentence"]:
        assert A.split_words(s) == (s.split(), [""] + [" "] * (len(s.split()) - 1))

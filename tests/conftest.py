"""Shared fixtures: the packaged teacher is loaded once per test session."""

from __future__ import annotations

import os

import pytest

# Tests never touch a hub: everything they need is packaged or in the local data mirror.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


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

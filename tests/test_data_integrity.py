"""Damaged course data is refused, naming the file (and the line), at prepare time and at load time."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest

from conftest import MIRROR
from tinybert_lib import data, data_setup
from tinybert_lib.preflight import missing_for

pytestmark = pytest.mark.skipif(not MIRROR.is_dir(), reason=f"data mirror {MIRROR} not found")


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("DATA_MIRROR", "TINYBERT_DATA_DIR", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)


def _copy_of_mirror(root: Path) -> Path:
    for relpath in data_setup.EXPECTED_SHA256:
        (root / relpath).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(MIRROR / relpath, root / relpath)
    return root


def _keep_lines(path: Path, n: int) -> None:
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:n]))


def test_a_short_train_file_is_refused_at_load_and_by_the_pre_run_check(tmp_path, monkeypatch):
    target = tmp_path / "data"
    data_setup.prepare_data(mirror=MIRROR, target=target)
    monkeypatch.setenv("TINYBERT_DATA_DIR", str(target))
    assert len(data.load_sst2("train", limit=4)) == 4  # checked once: size and mtime as recorded
    _keep_lines(target / "sst2/train.tsv", 10_001)  # 10,000 rows and the header
    with pytest.raises(data.DataIntegrityError, match=r"sst2/train\.tsv is not the file `data prepare` verified"):
        data.load_sst2("train", limit=4)
    assert any("sst2/train.tsv" in p for p in missing_for("smoke"))


def test_the_pre_run_check_refuses_a_damaged_file_in_a_folder_not_prepared(tmp_path, monkeypatch):
    root = _copy_of_mirror(tmp_path / "data")
    _keep_lines(root / "wikitext-2/wiki.train.tokens", 1000)
    monkeypatch.setenv("TINYBERT_DATA_DIR", str(root))
    problems = missing_for("smoke")
    assert len(problems) == 1 and "wiki.train.tokens is not the course file" in problems[0]


def _flip_labels(path: Path) -> None:
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    flipped = [lines[0]] + [ln[:-2] + ("1" if ln[-2] == "0" else "0") + "\n" for ln in lines[1:]]
    path.write_text("".join(flipped), encoding="utf-8")


def test_prepare_without_mirror_refuses_flipped_labels(tmp_path, monkeypatch, caplog):
    target = _copy_of_mirror(tmp_path / "data")
    _flip_labels(target / "sst2/train.tsv")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with caplog.at_level(logging.INFO, logger=data_setup.__name__):
        with pytest.raises(data_setup.DataIntegrityError, match=r"(?s)sst2/train\.tsv is damaged.*labels are wrong"):
            data_setup.prepare_data(target=target)
    assert "replacing it" not in caplog.text, "nothing can be replaced offline: say so, not 'replacing'"


def test_a_truncated_line_names_the_file_and_the_line(tmp_path, monkeypatch):
    target = _copy_of_mirror(tmp_path / "data")
    dev = target / "sst2/dev.tsv"
    lines = dev.read_bytes().splitlines(keepends=True)
    lines[4] = lines[4].split(b"\t")[0][:20] + b"\n"  # line 5 cut before its tab and label
    dev.write_bytes(b"".join(lines))
    # at prepare time (no mirror, offline: the file is checked line by line)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(data_setup.DataIntegrityError, match=r"sst2/dev\.tsv, line 5: expected a sentence, a tab and a label"):
        data_setup.prepare_data(target=target)
    # and at load time, when the checksum check lets it through (a folder not prepared: a warning)
    monkeypatch.setenv("TINYBERT_DATA_DIR", str(target))
    with pytest.raises(data.DataIntegrityError, match=r"sst2/dev\.tsv, line 5: expected a sentence"):
        data.load_sst2("dev")

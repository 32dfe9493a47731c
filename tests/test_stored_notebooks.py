"""What is stored in notebooks/ and solutions/: outputs free of machine noise, smoke defaults.

``scripts/notebook_outputs.py`` cleans what ``make publish`` writes; these tests check the cleaner
on a synthetic notebook and every stored notebook for what it must not contain.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
from notebook_outputs import PROFILER_LINE, TQDM_LINE, WIDGET_MIME, clean_notebook, machine_paths  # noqa: E402

STORED = sorted((ROOT / "notebooks").glob("*.ipynb")) + sorted((ROOT / "solutions").glob("*.ipynb"))


def executed_notebook() -> dict:
    bar = "Loading weights:   0%|          | 0/103 [00:00<?, ?it/s]\rLoading weights: 100%|##| 103/103 [00:00<00:00]\n"
    return {
        "metadata": {"widgets": {"state": {}}, "papermill": {"input_path": "/home/me/course/x.ipynb", "parameters": {}}},
        "cells": [
            {"cell_type": "code", "metadata": {"tags": ["parameters"], "execution": {"iopub.status.busy": "2026"}},
             "source": "profile = 'smoke'", "outputs": [], "execution_count": 1},
            {"cell_type": "code", "metadata": {"tags": ["injected-parameters"]}, "source": "profile = 'cpu'",
             "outputs": [], "execution_count": 2},
            {"cell_type": "code", "metadata": {"papermill": {"duration": 1.0}}, "source": "train()", "execution_count": 3,
             "outputs": [
                 {"output_type": "display_data", "metadata": {},
                  "data": {WIDGET_MIME: {"model_id": "abc"}, "text/plain": "  0%|          | 0/4 [00:00<?, ?it/s]"}},
                 {"output_type": "stream", "name": "stderr", "text": bar},
                 {"output_type": "stream", "name": "stderr", "text": bar + "UserWarning: something real\n"},
                 {"output_type": "stream", "name": "stdout", "text": "dev accuracy 0.81\n"},
                 {"output_type": "stream", "name": "stderr",
                  "text": "USDT:2026-12-01 07:55:32 16963:16963 SyncActivityProfilerHandler.cpp:52] profiler_start\n"},
             ]},
        ],
    }


def test_clean_notebook_strips_progress_widgets_timings_and_the_injected_cell():
    nb = clean_notebook(executed_notebook(), parameters={"profile": "cpu"})
    assert [c["source"] for c in nb["cells"]] == ["profile = 'smoke'", "train()"]  # smoke defaults stay
    assert nb["cells"][0]["metadata"] == {"tags": ["parameters"]}
    assert nb["cells"][1]["metadata"] == {}
    assert [c["execution_count"] for c in nb["cells"]] == [1, 2]  # no gap where the injected cell was
    texts = [o.get("text") for o in nb["cells"][1]["outputs"]]
    assert texts == ["UserWarning: something real\n", "dev accuracy 0.81\n"]
    assert nb["metadata"] == {"papermill": {"parameters": {"profile": "cpu"}}}


def test_machine_paths_names_the_cell_and_line():
    nb = executed_notebook()
    nb["cells"][2]["outputs"][3]["text"] = "written to: /home/me/course/build/cpu/artifacts/results.json\n"
    assert machine_paths(nb, ["/home/me/course"]) == ["cell 2: written to: /home/me/course/build/cpu/artifacts/results.json"]
    assert machine_paths(nb, ["/elsewhere"]) == []


@pytest.mark.parametrize("path", STORED, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_stored_notebook_is_free_of_noise(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    assert "widgets" not in nb["metadata"], "widget state stored: re-publish with `make publish`"
    for i, cell in enumerate(nb["cells"]):
        where = f"{path.name} cell {i}"
        assert "injected-parameters" not in cell["metadata"].get("tags", []), where
        assert not {"execution", "papermill"} & set(cell["metadata"]), f"{where}: execution timings stored"
        for output in cell.get("outputs", []):
            assert WIDGET_MIME not in output.get("data", {}), f"{where}: a progress widget is stored"
            text = "".join(output.get("text", "")) + "".join(output.get("data", {}).get("text/plain", ""))
            assert not TQDM_LINE.search(text), f"{where}: a progress bar is stored"
            assert not PROFILER_LINE.search(text), f"{where}: profiler log lines are stored"
    assert machine_paths(nb, [ROOT, Path.home(), "/tmp/", "/home/", "/root/", "/Users/"]) == []


@pytest.mark.parametrize("path", sorted((ROOT / "notebooks").glob("*.ipynb")), ids=lambda p: p.name)
def test_lessons_keep_the_smoke_defaults(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    params = [c for c in nb["cells"] if "parameters" in c["metadata"].get("tags", [])]
    assert len(params) == 1, f"{path.name}: one parameters cell expected"
    source = "".join(params[0]["source"])
    assert re.search(r'^profile = "smoke"$', source, re.MULTILINE), f"{path.name}: the default profile must be smoke"

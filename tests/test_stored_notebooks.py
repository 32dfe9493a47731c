"""What is stored in notebooks/ and solutions/: outputs free of machine noise, smoke defaults.

``scripts/notebook_outputs.py`` cleans what ``make publish`` writes; these tests check the cleaner
on a synthetic notebook and every stored notebook for what it must not contain. The stored outputs
come from one profile (recorded in ``metadata.papermill.parameters``) while nbval re-runs the
lessons with the smoke defaults, so a ``# NBVAL_CHECK_OUTPUT`` cell must print the same thing in
every profile: the last tests keep the obvious profile reads out of those cells.
"""

from __future__ import annotations

import ast
import json
import re
import sys
from dataclasses import fields
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
from notebook_outputs import (BANNER_TAG, PROFILER_LINE, SLOW_TAG, TQDM_LINE, WIDGET_MIME, annotate_run,  # noqa: E402
                              cell_seconds, clean_file, clean_notebook, machine_paths)

from tinybert_lib.profiles import PROFILES, Profile  # noqa: E402

LESSONS = sorted((ROOT / "notebooks").glob("*.ipynb"))
STORED = LESSONS + sorted((ROOT / "solutions").glob("*.ipynb"))
CHECK_MARKER = "# NBVAL_CHECK_OUTPUT"

# Profile fields whose value differs between profiles. A checked cell that prints one, or anything computed
# from one, stores the publishing run's figure (cpu) and fails nbval's smoke run.
PROFILE_DEPENDENT_FIELDS = (
    "name", "device", "train_limit", "dev_limit", "max_seq_len_general", "corpus_max_blocks",
    "general_epochs", "general_batch_size", "general_lr", "finetune_epochs", "finetune_batch_size",
    "augment_n", "augment_k", "augment_limit", "intermediate_epochs", "prediction_epochs",
    "intermediate_batch_size", "prediction_batch_size", "log_every", "ablation_examples", "ablation_epochs", "ablation_seeds", "general_corpus",
    "classifier_pooling", "finetune_lr", "intermediate_lr", "prediction_lr", "temperature", "scratch_lr",
    "ablation_finetune_lr", "cpu_bf16",
)
# The architecture: the same in smoke and cpu, so checked cells may show it (their outputs differ under gpu).
ARCHITECTURE_FIELDS = ("teacher", "student")
# Variables that hold the profile itself.
PROFILE_NAMES = ("profile",)
# Keys of what a run records (checkpoint state, summary.json, results.json) whose values scale with the profile.
RUN_RECORD_KEYS = ("step", "total_steps", "steps", "train_rows", "dev_rows", "budget", "runs", "profile",
                   "accuracy", "dev_accuracy", "seconds")


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
                 {"output_type": "execute_result", "metadata": {}, "execution_count": 3, "data": {"text/plain": "0.81"}},
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
    assert texts == ["UserWarning: something real\n", "dev accuracy 0.81\n", None]
    assert nb["cells"][1]["outputs"][-1]["execution_count"] == 2  # Out[2] beside In[2], not the count before
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
            if output.get("output_type") == "execute_result":
                assert output.get("execution_count") == cell.get("execution_count"), f"{where}: Out[n] is not In[n]"
    assert machine_paths(nb, [ROOT, Path.home(), "/tmp/", "/home/", "/root/", "/Users/"]) == []


@pytest.mark.parametrize("path", sorted((ROOT / "notebooks").glob("*.ipynb")), ids=lambda p: p.name)
def test_lessons_keep_the_smoke_defaults(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    params = [c for c in nb["cells"] if "parameters" in c["metadata"].get("tags", [])]
    assert len(params) == 1, f"{path.name}: one parameters cell expected"
    source = "".join(params[0]["source"])
    assert re.search(r'^profile = "smoke"$', source, re.MULTILINE), f"{path.name}: the default profile must be smoke"


def checked_cells(path: Path) -> list[tuple[int, str]]:
    """(index, source) of every code cell nbval compares (``# NBVAL_CHECK_OUTPUT`` under ``--nbval-lax``)."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    return [(i, "".join(c["source"])) for i, c in enumerate(nb["cells"])
            if c["cell_type"] == "code" and CHECK_MARKER in "".join(c["source"])]


def profile_reads(source: str) -> list[str]:
    """What a cell reads that differs by profile: ``cfg.<field>``, ``profile``, ``x["total_steps"]`` and the like.

    A static look at the source, so it catches the obvious reads only (not ``len(train)`` of a
    profile-limited dataset, nor a whole ``cfg`` handed to a function).
    """
    found = []
    for node in ast.walk(ast.parse(source)):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "cfg"
                and node.attr in PROFILE_DEPENDENT_FIELDS):
            found.append(f"cfg.{node.attr}")
        elif isinstance(node, ast.Name) and node.id in PROFILE_NAMES:
            found.append(node.id)
        elif (isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant)
              and node.slice.value in RUN_RECORD_KEYS):
            found.append(f"[{node.slice.value!r}]")
    return sorted(set(found))


def test_profile_reads_finds_fields_names_and_record_keys():
    source = ('print(f"{cfg.name}: K = {cfg.augment_k}, seed {cfg.seed}, teacher {cfg.teacher}")\n'
              'print(state["total_steps"], state["done"], profile)\n'
              'bad = {"profile": "laptop"}  # a string key, not a read\n')
    assert profile_reads(source) == ["['total_steps']", "cfg.augment_k", "cfg.name", "profile"]


def test_the_deny_list_covers_every_field_that_differs_between_profiles():
    varying = {f.name for f in fields(Profile) if len({getattr(p, f.name) for p in PROFILES.values()}) > 1}
    unlisted = varying - set(PROFILE_DEPENDENT_FIELDS) - set(ARCHITECTURE_FIELDS)
    assert not unlisted, f"profile fields {sorted(unlisted)} differ between profiles: add them to PROFILE_DEPENDENT_FIELDS"
    smoke, cpu = PROFILES["smoke"], PROFILES["cpu"]
    assert all(getattr(smoke, f) == getattr(cpu, f) for f in ARCHITECTURE_FIELDS), \
        "smoke and cpu use different architectures: checked cells that show the teacher or student now differ by profile"


@pytest.mark.parametrize("path", STORED, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_checked_cells_do_not_read_the_profile(path):
    problems = [f"{path.name} cell {i} reads {', '.join(reads)}" for i, source in checked_cells(path)
                if (reads := profile_reads(source))]
    assert not problems, ("checked cells must print the same thing in every profile (nbval runs smoke against stored "
                          "outputs of another profile); print these in an unchecked cell instead:\n  " + "\n  ".join(problems))


@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.name)
def test_lessons_record_the_profile_of_their_outputs(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    recorded = nb["metadata"].get("papermill", {}).get("parameters", {}).get("profile")
    assert recorded in PROFILES, (f"{path.name}: metadata.papermill.parameters.profile is {recorded!r}; re-publish with "
                                  f"`make publish` so the notebook records the profile that produced its outputs")


def test_clean_file_keeps_the_recorded_parameters(tmp_path):
    nb = clean_notebook(executed_notebook(), parameters={"profile": "cpu", "artifacts_dir": "../build/cpu/artifacts"})
    target = tmp_path / "x.ipynb"
    target.write_text(json.dumps(nb), encoding="utf-8")
    clean_file(target)  # cleaning a stored notebook again must not forget which run produced it
    assert json.loads(target.read_text(encoding="utf-8"))["metadata"] == {
        "papermill": {"parameters": {"profile": "cpu", "artifacts_dir": "../build/cpu/artifacts"}}}


def _markdown(path: Path) -> str:
    return "\n".join("".join(c["source"]) for c in json.loads(path.read_text(encoding="utf-8"))["cells"]
                     if c["cell_type"] == "markdown")


def test_lesson_00_maps_every_lesson():
    course_map = _markdown(ROOT / "notebooks" / "00_setup_and_overview.ipynb")
    for lesson in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        assert f"\n| {lesson.name[:2]} " in course_map, f"lesson 00's course map lacks {lesson.name}"


@pytest.mark.parametrize("path", sorted((ROOT / "solutions").glob("*_solutions.ipynb")), ids=lambda p: p.name)
def test_every_lesson_links_its_solutions(path):
    lesson = ROOT / "notebooks" / path.name.replace("_solutions", "")
    assert lesson.is_file(), f"{path.name} has no lesson"
    link = f"](../solutions/{path.name})"  # a Markdown link: one click in JupyterLab opens it
    assert link in _markdown(lesson), f"{lesson.name} does not link {path.name}"


@pytest.mark.parametrize("path", sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")), ids=lambda p: p.name)
def test_every_lesson_has_a_chinese_summary(path):
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    summaries = [i for i, c in enumerate(cells) if c["cell_type"] == "markdown" and "### 中文摘要" in "".join(c["source"])]
    banner = 1 if BANNER_TAG in cells[1].get("metadata", {}).get("tags", []) else 0
    assert summaries == [banner + 1], f"{path.name}: one Chinese summary, under the title (and the banner)"


def test_annotate_run_writes_one_banner_and_a_warning_per_slow_cell():
    nb = executed_notebook()
    nb["cells"].insert(0, {"cell_type": "markdown", "metadata": {}, "source": "# 99 · A lesson"})
    nb["cells"][3]["metadata"]["papermill"]["duration"] = 420.0  # train(): 7 minutes
    annotate_run(nb, "cpu", "2026-12-08", cell_seconds(nb))
    annotate_run(nb, "cpu", "2026-12-09", [None] + cell_seconds(nb)[1:])  # publishing again: replaced, not added
    nb = clean_notebook(nb, parameters={"profile": "cpu"})
    tags = [c["metadata"].get("tags", []) for c in nb["cells"]]
    assert tags == [[], [BANNER_TAG], ["parameters"], [SLOW_TAG], []]
    banner, warning = "".join(nb["cells"][1]["source"]), "".join(nb["cells"][3]["source"])
    assert "make publish PROFILE=cpu" in banner and "2026-12-09" in banner and "In [2] 7.0 min" in banner
    assert 'profile = \\"cpu\\"' not in banner and 'profile = "cpu"' in banner
    assert "7.0 min" in warning and "`cpu`" in warning


@pytest.mark.parametrize("path", sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")), ids=lambda p: p.name)
def test_every_lesson_says_where_its_outputs_come_from(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    banners = [i for i, c in enumerate(nb["cells"]) if BANNER_TAG in c["metadata"].get("tags", [])]
    assert banners == [1], f"{path.name}: one banner under the title (scripts/notebook_outputs.annotate_run)"
    profile = nb["metadata"].get("papermill", {}).get("parameters", {}).get("profile")
    assert f"make publish PROFILE={profile}" in "".join(nb["cells"][1]["source"])
    for i, cell in enumerate(nb["cells"]):
        if SLOW_TAG in cell["metadata"].get("tags", []):
            assert nb["cells"][i + 1]["cell_type"] == "code", f"{path.name} cell {i}: a warning above no code cell"

"""A lesson runs outside a checkout (Colab, a cloud notebook), with the course installed from a wheel.

The slow test builds a wheel of the course, installs it into a temporary folder (``pip install --target``)
and runs lesson 02 from an empty folder with only that folder on ``PYTHONPATH``: the lesson must find its
artifacts and data folders in its own folder (``./tinybert-build/``), fetch the data from ``$DATA_MIRROR``,
and print in its ``# NBVAL_CHECK_OUTPUT`` cells exactly what is stored, compared as ``nbval --nbval-lax``
compares them. Nothing is written into the checkout. The quick tests check the folder rules and that every
install line and "Open in Colab" badge names ``tl.paths.REPOSITORY``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from tinybert_lib import paths

ROOT = Path(__file__).resolve().parents[1]
LESSON = ROOT / "notebooks" / "02_embedding_loss.ipynb"
LESSONS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
SOLUTIONS = sorted((ROOT / "solutions").glob("[0-9][0-9]_*.ipynb"))
CHECK_MARKER = "# NBVAL_CHECK_OUTPUT"
MIRROR = Path(os.environ.get("DATA_MIRROR") or ROOT.parent / "shared" / "data")
# What nbval leaves out of a comparison (its ``skip_compare``; images only with --nbdime).
NOT_COMPARED = {"metadata", "traceback", "prompt_number", "output_type", "name", "execution_count",
                "application/vnd.jupyter.widget-view+json", "image/png", "image/jpeg"}
# Top-level folders of the checkout a wheel is not built from (large, or outputs of other runs).
NOT_COPIED = {".git", ".venv", "build", "data", "results", "notebooks", "solutions", ".pytest_cache",
              "tinybert_lib.egg-info", "dist"}
# Where a careless build or run would write into the checkout.
CHECKOUT_TRAPS = ("tinybert-build", "notebooks/tinybert-build", "build/lib", "tinybert_lib.egg-info",
                  "data/.prepared.json", "dist")


def _code_cells(path: Path) -> list[dict[str, Any]]:
    return [c for c in json.loads(path.read_text(encoding="utf-8"))["cells"] if c["cell_type"] == "code"]


def _compared(outputs: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """A cell's outputs as nbval compares them: streams merged by name, every other output flattened
    to its MIME types (``text/plain``, ...), metadata and counts left out."""
    found: dict[str, list[Any]] = defaultdict(list)
    streams: dict[str, str] = {}
    for out in outputs:
        if out.get("output_type") == "stream":
            streams[out["name"]] = streams.get(out["name"], "") + "".join(out["text"])
            continue
        for key, value in out.items():
            if key == "data":
                for mime, data in value.items():
                    if mime not in NOT_COMPARED:
                        found[mime].append("".join(data) if isinstance(data, list) else data)
            elif key not in NOT_COMPARED:
                found[key].append(value)
    for name, text in streams.items():
        found[name].append(re.sub(r"^.*\r(?=[^\n])", "", text, flags=re.MULTILINE))
    return dict(found)


def _stat_of(path: Path) -> tuple[int, int] | None:
    return (path.stat().st_mtime_ns, path.stat().st_size) if path.exists() else None


def _build_wheel(tmp: Path) -> Path:
    """A wheel of the course, built from a copy of the checkout (a build in place writes ``build/`` there)."""
    source = tmp / "source"
    shutil.copytree(ROOT, source, ignore=lambda folder, names: [
        n for n in names
        if n in {"__pycache__", ".ipynb_checkpoints"} or (Path(folder) == ROOT and n in NOT_COPIED)])
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                           "--no-index", "-q", "-w", str(tmp / "dist"), str(source)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    (wheel,) = (tmp / "dist").glob("tinybert_lib-*.whl")
    return wheel


def _kernel_spec(tmp: Path) -> Path:
    """A kernel spec for this Python (as ``--nbval-current-env``), found first through ``JUPYTER_PATH``."""
    spec = tmp / "jupyter" / "kernels" / "course-anywhere"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "course from a wheel", "language": "python"}))
    return tmp / "jupyter"


def test_folders_inside_and_outside_a_checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TINYBERT_DATA_DIR", raising=False)
    monkeypatch.chdir(ROOT / "notebooks")
    assert paths.find_checkout() == ROOT
    assert paths.artifacts_dir("smoke") == "../build/smoke/artifacts"  # as `make run` passes it
    assert paths.prepare_lesson("cpu", None) == "../build/cpu/artifacts"
    assert paths.prepare_lesson("cpu", "elsewhere") == "elsewhere"
    monkeypatch.chdir(tmp_path)
    assert paths.find_checkout() is None
    assert paths.artifacts_dir("gpu") == os.path.join("tinybert-build", "gpu", "artifacts")
    assert paths.default_data_dir() == ROOT / "data"  # this library is the checkout's: its data folder
    assert not list(tmp_path.iterdir()), "finding folders must create nothing"


def test_install_lines_and_badges_name_the_repository() -> None:
    spec = re.escape(paths._install_spec()).replace(r"tinybert_lib", r"tinybert_lib(\[deploy\])?", 1)
    for path in LESSONS + SOLUTIONS:
        first = [c for c in _code_cells(path)[:2] if "parameters" not in c["metadata"].get("tags", [])][0]
        source = "".join(first["source"])
        assert re.search(rf'^    %pip install -q "{spec}"$', source, re.M), f"{path.name}: no install line"
        assert "tl.paths.prepare_lesson(" in source, f"{path.name}: the first code cell must find its folders"
        assert paths._repositories_named(path.read_text(encoding="utf-8")) == {paths.REPOSITORY}, path.name
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for path in LESSONS:
        assert f"({paths._colab_url(path.name)})" in readme, f"README: no Open in Colab badge for {path.name}"
    assert paths._repositories_named(readme) == {paths.REPOSITORY}, (
        "README names another repository: run `python -m tinybert_lib.paths --sync`")


def test_sync_rewrites_install_lines_and_badges(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for folder in ("notebooks", "solutions"):
        (tmp_path / folder).mkdir()
    shutil.copy(LESSON, tmp_path / "notebooks" / LESSON.name)
    shutil.copy(ROOT / "README.md", tmp_path / "README.md")
    old, new = paths.REPOSITORY, "someone/tinybert-course"
    monkeypatch.setattr(paths, "REPOSITORY", new)
    assert sorted(p.name for p in paths._sync(tmp_path)) == ["02_embedding_loss.ipynb", "README.md"]
    for name, original in (("notebooks/02_embedding_loss.ipynb", LESSON), ("README.md", ROOT / "README.md")):
        text = (tmp_path / name).read_text(encoding="utf-8")
        assert paths._repositories_named(text) == {new}
        expected = original.read_text(encoding="utf-8")
        for prefix in ("git+https://github.com/", "colab.research.google.com/github/"):
            expected = expected.replace(prefix + old, prefix + new)
        assert text == expected, f"{name}: only the repository's name may change"
    assert paths._sync(tmp_path) == []


@pytest.mark.skipif(not MIRROR.is_dir(), reason=f"data mirror {MIRROR} not found")
def test_lesson_02_runs_from_a_wheel_outside_a_checkout(tmp_path: Path) -> None:
    before = {trap: _stat_of(ROOT / trap) for trap in CHECKOUT_TRAPS}
    wheel = _build_wheel(tmp_path)
    in_wheel = set(zipfile.ZipFile(wheel).namelist())
    package = {p.relative_to(ROOT).as_posix() for p in (ROOT / "tinybert_lib").rglob("*")
               if p.is_file() and "__pycache__" not in p.parts}
    assert package <= in_wheel, f"missing from the wheel: {sorted(package - in_wheel)}"

    site, work, run = tmp_path / "site", tmp_path / "work", tmp_path / "run"
    for folder in (work, run):
        folder.mkdir()
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q",
                           "--target", str(site), str(wheel)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr

    # The lesson as stored, plus one cell that reports where things came from and went.
    nb = json.loads(LESSON.read_text(encoding="utf-8"))
    probe = ("import json\nprint(json.dumps({'library': tl.__file__, 'artifacts': artifacts_dir,"
             " 'data': str(tl.data_setup.data_dir())}))")
    nb["cells"].append({"cell_type": "code", "execution_count": None, "id": "where-from", "metadata": {},
                        "outputs": [], "source": probe})
    lesson_in, lesson_out = run / LESSON.name, run / f"executed_{LESSON.name}"
    lesson_in.write_text(json.dumps(nb), encoding="utf-8")
    env = {key: value for key, value in os.environ.items()
           if key not in {"PYTHONPATH", "TINYBERT_DATA_DIR", "JUPYTER_PATH", "VIRTUAL_ENV"}}
    env.update(PYTHONPATH=str(site), DATA_MIRROR=str(MIRROR), HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1",
               JUPYTER_PATH=str(_kernel_spec(tmp_path)), JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
               MPLBACKEND="agg", PYDEVD_DISABLE_FILE_VALIDATION="1")
    done = subprocess.run([sys.executable, "-m", "papermill", str(lesson_in), str(lesson_out),
                           "-k", "course-anywhere", "--cwd", str(work), "--no-progress-bar",
                           "--no-log-output"],
                          capture_output=True, text=True, env=env, cwd=work, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]

    executed = json.loads(lesson_out.read_text(encoding="utf-8"))["cells"]
    printed = "".join("".join(o["text"]) for o in executed[-1]["outputs"] if o.get("name") == "stdout")
    where = json.loads(printed.strip().splitlines()[-1])
    assert Path(where["library"]).resolve().is_relative_to(site.resolve()), where  # the wheel's copy
    assert where["artifacts"] == os.path.join("tinybert-build", "smoke", "artifacts"), where
    assert Path(where["data"]) == work.resolve() / "tinybert-build" / "data", where
    assert (work / where["artifacts"]).is_dir(), "check_lesson_parameters creates the artifacts folder"
    assert (work / "tinybert-build" / "data" / "sst2" / "dev.tsv").is_file(), "the data, from the mirror"

    stored = {c["id"]: c for c in _code_cells(LESSON)}
    checked = [c for c in executed if c["cell_type"] == "code" and CHECK_MARKER in "".join(c["source"])]
    assert len(checked) == sum(CHECK_MARKER in "".join(c["source"]) for c in stored.values()) >= 5
    for cell in checked:
        got, expected = _compared(cell["outputs"]), _compared(stored[cell["id"]]["outputs"])
        assert got == expected, "".join(cell["source"])[:200]
    after = {trap: _stat_of(ROOT / trap) for trap in CHECKOUT_TRAPS}
    assert after == before, "the build or the run wrote into the checkout"

"""``import tinybert_lib`` stays light, and every name the lessons reach through it still resolves."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import tinybert_lib as tl

ROOT = Path(__file__).resolve().parents[1]

# What a lesson should pay for only when it uses it: plotting, benchmarks, ablations, deployment
# (ONNX Runtime), GLUE metrics (scikit-learn), the training loop (Accelerate) and the data loaders
# (datasets, transformers).
NOT_ON_IMPORT = (
    "matplotlib", "tinybert_lib.plotting", "tinybert_lib.bench", "tinybert_lib.ablations", "tinybert_lib.deploy",
    "tinybert_lib.data", "onnx", "onnxruntime", "sklearn", "accelerate", "datasets", "transformers",
)


def _python(code: str) -> str:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_import_loads_no_heavy_module():
    out = _python(f"import sys, json, tinybert_lib; print(json.dumps([m for m in {list(NOT_ON_IMPORT)!r} if m in sys.modules]))")
    assert json.loads(out.splitlines()[-1]) == []


def test_each_lazy_submodule_resolves_in_a_fresh_process():
    code = (
        "import json, tinybert_lib as tl\n"
        "print(json.dumps({n: getattr(tl, n).__name__ for n in tl.LAZY_SUBMODULES}))\n"
    )
    resolved = json.loads(_python(code).splitlines()[-1])
    assert resolved == {name: f"tinybert_lib.{name}" for name in tl.LAZY_SUBMODULES}


def test_lazy_names_are_listed_and_unknown_names_refused():
    assert set(tl.LAZY_SUBMODULES) <= set(dir(tl))
    assert set(tl.__all__) <= set(dir(tl))
    try:
        tl.no_such_module
    except AttributeError as err:
        assert "no_such_module" in str(err)
    else:
        raise AssertionError("an unknown name must raise AttributeError")


def test_from_imports_of_submodules_work():
    from tinybert_lib import ablations, bench, data, data_setup, deploy, plotting  # noqa: F401

    assert data.DataIntegrityError is data_setup.DataIntegrityError
    assert data.DataNotFoundError is data_setup.DataNotFoundError
    assert data.data_dir is data_setup.data_dir and data.CORPUS_FILES is data_setup.CORPUS_FILES


def _lesson_sources() -> list[tuple[str, str]]:
    sources = []
    for folder in ("notebooks", "solutions"):
        for path in sorted((ROOT / folder).glob("*.ipynb")):
            cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
            sources.append((path.name, "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")))
    return sources


def test_every_tl_name_the_lessons_use_resolves():
    missing = []
    for name, source in _lesson_sources():
        for first, second in set(re.findall(r"\btl\.([A-Za-z_]\w*)(?:\.([A-Za-z_]\w*))?", source)):
            obj = getattr(tl, first, None)
            if obj is None or (second and first in tl.LAZY_SUBMODULES and not hasattr(obj, second)):
                missing.append(f"{name}: tl.{first}" + (f".{second}" if second else ""))
    assert not missing, missing


def _lessons(line: str) -> set[int]:
    """``Lessons: 00-01, 04, 06-07 (...)`` -> {0, 1, 4, 6, 7}."""
    spans = re.match(r"Lessons: ([\d\-, ]+)", line).group(1)
    numbers: set[int] = set()
    for span in filter(None, (s.strip() for s in spans.split(","))):
        first, _, last = span.partition("-")
        numbers.update(range(int(first), int(last or first) + 1))
    return numbers


def _defined_in(name: str) -> str:
    """The module of ``tinybert_lib`` that defines a top-level name (``tl.build_student``, ``tl.PROFILES``)."""
    for module in tl.LAZY_SUBMODULES:
        source = (ROOT / "tinybert_lib" / f"{module}.py").read_text(encoding="utf-8")
        if re.search(rf"^(?:class |def )?{name}\b", source, re.M):
            return module
    raise AssertionError(f"tinybert_lib.{name} is defined nowhere")


def test_each_module_names_the_lessons_that_use_it():
    """Every module's docstring starts with ``Lessons: ...`` or ``Tooling: ...``, and the lessons listed
    include every lesson (notebooks/NN_*.ipynb) that reaches the module by ``tl.<name>`` or an import."""
    modules = sorted(p.stem for p in (ROOT / "tinybert_lib").glob("*.py") if p.stem != "__init__")
    heads = {}
    for name in modules:
        doc = (ROOT / "tinybert_lib" / f"{name}.py").read_text(encoding="utf-8").split('"""')[1]
        head = [line for line in doc.splitlines()[:8] if line.startswith(("Lessons: ", "Tooling: "))]
        assert head, f"tinybert_lib/{name}.py: no 'Lessons: ...' or 'Tooling: ...' line at the top of its docstring"
        heads[name] = head[0]
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        lesson = int(path.name[:2])
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        source = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
        used = set(re.findall(r"from tinybert_lib\.(\w+) import", source))
        for names in re.findall(r"from tinybert_lib import ([\w, ]+)", source):
            used.update(n.strip().split(" ")[0] for n in names.split(","))
        used.update(re.findall(r"\btl\.(\w+)", source))
        for name in used:
            module = name if (ROOT / "tinybert_lib" / f"{name}.py").is_file() else _defined_in(name)
            if heads.get(module, "").startswith("Lessons: "):
                assert lesson in _lessons(heads[module]), f"{path.name} uses tinybert_lib.{module}: {heads[module]!r}"

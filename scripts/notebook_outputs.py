"""Make executed notebooks fit to store in the repository.

An executed notebook carries noise that means nothing to a learner reading it on GitHub and
differs from machine to machine: frozen tqdm widgets (``0%|`` in the text fallback), the widget
state, per-cell execution timestamps, papermill's injected-parameters cell and its record of
absolute paths. ``clean_notebook`` removes that noise and ``machine_paths`` finds any absolute
path of this machine left in an output, so the writer can refuse to store it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Iterable

from tinybert_lib.atomic import atomic_write_text

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
# A tqdm bar as it is printed: "  0%|   | 0/4 [00:00<?, ?it/s]" (with or without a description).
TQDM_LINE = re.compile(r"^[^\n]*\d+%\|[^\n]*\|[^\n]*\n?", re.MULTILINE)
# torch.profiler's own log lines ("USDT:<date> <pid> ...] profiler_start"): timestamps, no content.
PROFILER_LINE = re.compile(r"^USDT:[^\n]*profiler_(start|stop)\n?", re.MULTILINE)
CELL_METADATA_KEPT = ("tags", "editable", "deletable", "jupyter")


def _without_noise(text: str) -> str:
    return PROFILER_LINE.sub("", TQDM_LINE.sub("", text)).replace("\r", "")


def _is_progress_output(output: dict[str, Any]) -> bool:
    """A widget display (tqdm.auto in a notebook), or stderr text made only of progress bars."""
    if output.get("output_type") == "display_data" and WIDGET_MIME in output.get("data", {}):
        return True
    if output.get("output_type") == "stream" and output.get("name") == "stderr":
        return not _without_noise("".join(output.get("text", ""))).strip()
    return False


def clean_notebook(nb: dict[str, Any], parameters: dict[str, Any] | None = None) -> dict[str, Any]:
    """Strip progress widgets, widget state, timings and papermill's injected cell (in place), and
    number the cells (and their ``Out[n]``) 1, 2, 3, ... as a learner's own run would.

    ``parameters`` (what the run was executed with) is kept in ``metadata.papermill.parameters``
    so a reader can see which profile produced the stored outputs; the ``parameters`` cell itself
    keeps its cheap defaults, which is what nbval and a learner's first run use.
    """
    cells, count = [], 0
    for cell in nb["cells"]:
        tags = cell.get("metadata", {}).get("tags", [])
        if "injected-parameters" in tags:
            continue
        cell["metadata"] = {k: v for k, v in cell.get("metadata", {}).items() if k in CELL_METADATA_KEPT and v != []}
        if cell["cell_type"] == "code":
            if cell.get("execution_count") is not None:  # 1, 2, 3, ... as a learner's own run shows them
                count += 1
                cell["execution_count"] = count
            cell["outputs"] = [o for o in cell.get("outputs", []) if not _is_progress_output(o)]
            for o in cell["outputs"]:
                if o.get("output_type") == "execute_result":  # Out[n] matches In[n] once papermill's cell is gone
                    o["execution_count"] = cell.get("execution_count")
                if o.get("output_type") == "stream":
                    o["text"] = _without_noise("".join(o["text"]))
        cells.append(cell)
    nb["cells"] = cells
    meta = nb.setdefault("metadata", {})
    meta.pop("widgets", None)
    meta.pop("papermill", None)
    if parameters is not None:
        meta["papermill"] = {"parameters": dict(parameters)}
    return nb


BANNER_TAG = "stored-outputs"  # the cell under a lesson's title that says where its outputs come from
SLOW_TAG = "slow-cell"  # the one-line warning before a cell that takes more than a minute
SLOW_SECONDS = 60.0


def _tagged(tag: str, text: str, cell_id: str) -> dict[str, Any]:
    # A fixed id (nbformat 4.5 wants one per cell): publishing again changes no more than the text.
    return {"cell_type": "markdown", "id": cell_id, "metadata": {"tags": [tag]}, "source": text}


def cell_seconds(nb: dict[str, Any]) -> list[float | None]:
    """Each cell's running time in an executed notebook (papermill's ``metadata.papermill.duration``)."""
    return [cell.get("metadata", {}).get("papermill", {}).get("duration") for cell in nb["cells"]]


def annotate_run(nb: dict[str, Any], profile: str, date: str, seconds: list[float | None],
                 minutes: float | None = None) -> dict[str, Any]:
    """Put a banner under the title (which run the stored outputs come from, how to reproduce them, the slow
    cells) and a one-line warning before every cell of that run that took more than a minute (in place).

    ``seconds``: one entry per cell of ``nb`` (None for a markdown cell). Banners and warnings of an earlier
    run are replaced, so publishing again leaves one of each. ``minutes``: the lesson's time when ``seconds``
    does not hold every cell's (a run whose cell timings were not kept).
    """
    cells = [(c, t) for c, t in zip(nb["cells"], seconds)
             if not {BANNER_TAG, SLOW_TAG} & set(c.get("metadata", {}).get("tags", []))]
    total = minutes if minutes is not None else sum(t for _, t in cells if t) / 60
    out: list[dict[str, Any]] = []
    slow, count = [], 0
    for cell, t in cells:
        injected = "injected-parameters" in cell.get("metadata", {}).get("tags", [])  # removed by clean_notebook
        if cell["cell_type"] == "code" and not injected:
            count += 1
        if cell["cell_type"] == "code" and not injected and t and t > SLOW_SECONDS:
            slow.append(f"In [{count}] {t / 60:.1f} min")
            out.append(_tagged(SLOW_TAG, cell_id=f"{SLOW_TAG}-{count}", text=f"⏱ *The next cell took {t / 60:.1f} min on 2 CPU cores under the "
                                         f"`{profile}` profile (seconds under `smoke`).*"))
        out.append(cell)
    slow_text = ("; the cells that take more than a minute: " + ", ".join(slow) + " (each has a ⏱ line above it)"
                 if slow else "; no cell takes more than a minute")
    banner = (f"> **Stored outputs.** What this lesson shows below comes from one uninterrupted "
              f"`make publish PROFILE={profile}` run on {date} (2 CPU cores; README, \"What the cpu profile "
              f"gives\"): the lesson took {'under a minute' if total < 1 else f'{total:.1f} min'} there{slow_text}. **Run All** uses the parameters cell's "
              f"`smoke` profile: seconds per lesson, numbers that mean nothing. To reproduce the stored figures, set "
              f"`profile = \"{profile}\"` in the parameters cell, or run `make run PROFILE={profile}` for every "
              "lesson in order (later lessons reuse the artifacts of earlier ones).")
    title = 1 if out and out[0]["cell_type"] == "markdown" else 0
    nb["cells"] = out[:title] + [_tagged(BANNER_TAG, banner, cell_id=BANNER_TAG)] + out[title:]
    return nb


def write_notebook(nb: dict[str, Any], target: str | Path) -> None:
    """Write ``nb`` over ``target`` atomically, in nbformat's own layout."""
    import nbformat

    atomic_write_text(target, nbformat.writes(nbformat.from_dict(nb)) + "\n")


def clean_file(path: str | Path) -> None:
    """Clean a stored notebook in place, keeping the parameters it records."""
    nb = json.loads(Path(path).read_text(encoding="utf-8"))
    write_notebook(clean_notebook(nb, nb.get("metadata", {}).get("papermill", {}).get("parameters")), path)


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)


def machine_paths(nb: dict[str, Any], roots: Iterable[str | Path]) -> list[str]:
    """``"cell N: ..."`` for every output line that shows one of ``roots`` (absolute paths)."""
    needles = sorted({str(Path(r)) for r in roots if str(r) not in ("", "/")}, key=len, reverse=True)
    found = []
    for i, cell in enumerate(nb["cells"]):
        for output in cell.get("outputs", []):
            for text in _strings(output):
                for line in text.splitlines():
                    if any(n in line for n in needles):
                        found.append(f"cell {i}: {line.strip()[:160]}")
    return found


if __name__ == "__main__":  # python scripts/notebook_outputs.py notebooks/*.ipynb
    import sys

    for name in sys.argv[1:]:
        clean_file(name)

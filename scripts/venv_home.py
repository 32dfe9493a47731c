"""Was the course's virtual environment set up for this checkout? ``make setup`` asks before it trusts one.

A venv holds absolute paths: its scripts' ``#!`` lines, the editable install of ``tinybert_lib``
and the course kernel's spec (``share/jupyter/kernels/tinybert/kernel.json``) all name the folder
it was made in. Move or copy the checkout after ``make setup`` and the kernel cannot start (or runs
the old copy's library), while ``.venv/.installed`` still looks up to date. So ``make setup``
records where it built the venv, and rebuilds a venv that was built for another folder.

    python3 scripts/venv_home.py VENV            # prints: absent | ok | moved <where it was built>
    python3 scripts/venv_home.py --record VENV   # after a successful setup: writes VENV/.installed

Standard library only: it runs with the system Python, before the venv is known to work.
A venv set up before this record existed (an empty ``.installed``) is judged by its own records:
``bin/activate`` (``VIRTUAL_ENV=...``), ``pyvenv.cfg`` (``command = ... -m venv PATH``) and the
kernel spec. A venv none of them places is trusted (``ok``): it is never removed on a guess.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

STAMP = ".installed"


def _same(recorded: str, current: Path) -> bool:
    if os.path.abspath(recorded) == str(current):
        return True
    try:  # the same folder under another name (a symlink): fine; a copy elsewhere: not
        return os.path.samefile(recorded, current)
    except OSError:
        return False


def _stamp(venv: Path) -> dict[str, str]:
    stamp = venv / STAMP
    if not stamp.is_file():
        return {}
    lines = stamp.read_text(encoding="utf-8", errors="replace").splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line)


def recorded_homes(venv: Path) -> list[tuple[str, str]]:
    """(what, path) for every place that says which venv folder ``venv`` was built as."""
    if _stamp(venv).get("venv"):
        return [(STAMP, _stamp(venv)["venv"])]  # the record make setup wrote: the only one needed
    homes = []
    activate = venv / "bin" / "activate"
    if activate.is_file():
        m = re.search(r"""^\s*(?:export\s+)?VIRTUAL_ENV=(["']?)(/[^"'\n]*)\1\s*$""",
                      activate.read_text(encoding="utf-8", errors="replace"), re.MULTILINE)
        if m:
            homes.append(("bin/activate", m.group(2)))
    cfg = venv / "pyvenv.cfg"
    if cfg.is_file():
        m = re.search(r"^command\s*=.*?\s-m\s+venv\s+(?:--?\S+\s+)*(/.*?)\s*$",
                      cfg.read_text(encoding="utf-8", errors="replace"), re.MULTILINE)
        if m:
            homes.append(("pyvenv.cfg", m.group(1)))
    for spec in sorted((venv / "share" / "jupyter" / "kernels").glob("*/kernel.json")):
        try:
            python = json.loads(spec.read_text(encoding="utf-8"))["argv"][0]
        except (OSError, ValueError, KeyError, IndexError, TypeError):
            continue
        if os.path.isabs(python) and Path(python).parent.name == "bin":
            homes.append((str(spec.relative_to(venv)), str(Path(python).parent.parent)))
    return homes


def status(venv: str | Path, checkout: str | Path | None = None) -> str:
    """``absent``, ``ok``, or ``moved <path>``: ``<path>`` is the venv folder, or the checkout (the
    editable install's source; default: the current folder), that it was set up for."""
    venv = Path(os.path.abspath(venv))
    if not venv.is_dir():
        return "absent"
    for _, home in recorded_homes(venv):
        if not _same(home, venv):
            return f"moved {home}"
    recorded_checkout = _stamp(venv).get("checkout")
    if recorded_checkout and not _same(recorded_checkout, Path(os.path.abspath(checkout or os.getcwd()))):
        return f"moved {recorded_checkout}"
    return "ok"


def record(venv: str | Path) -> None:
    """Write ``VENV/.installed``: the venv and the checkout it was set up for (make's target file)."""
    venv = Path(os.path.abspath(venv))
    (venv / STAMP).write_text(f"venv={venv}\ncheckout={os.getcwd()}\n", encoding="utf-8")


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "--record":
        record(argv[1])
        return 0
    if len(argv) == 1:
        print(status(argv[0]))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

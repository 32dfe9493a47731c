"""Execute every lesson in order with papermill: ``make run PROFILE=smoke|cpu|gpu``.

Each executed notebook lands in ``build/<profile>/notebooks/``; lessons hand artifacts (the
general student, the fine-tuned teacher, the augmented set, results) to one another through
``build/<profile>/artifacts/``.

``--publish`` (``make publish``) also writes each executed lesson back into ``notebooks/``, and
re-executes the solutions into ``solutions/``, cleaned of progress widgets, timings and machine
paths (see ``notebook_outputs.py``). The parameters cells keep their cheap smoke defaults; the
profile that produced the outputs is recorded in each notebook's ``metadata.papermill``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import papermill as pm

from notebook_outputs import clean_notebook, machine_paths, write_notebook

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="smoke", help="smoke, cpu or gpu")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    parser.add_argument("--build", default="build", help="build folder (git-ignored)")
    parser.add_argument("--only", nargs="*", help="run only notebooks whose name starts with these prefixes, e.g. 00 03")
    parser.add_argument("--publish", action="store_true",
                        help="write the executed lessons back into notebooks/ and re-execute solutions/ (stored outputs)")
    args = parser.parse_args(argv)

    sys.path.insert(0, str(ROOT))
    from tinybert_lib import get_profile
    from tinybert_lib.preflight import ProfileNotReadyError, check_ready

    try:
        get_profile(args.profile)  # an unknown profile fails here, before any notebook runs
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    build = (ROOT / args.build / args.profile).resolve()
    out_dir, artifacts = build / "notebooks", build / "artifacts"
    try:  # so does a missing GPU, teacher or data file, or an artifacts folder that cannot be written
        check_ready(args.profile, args.device, artifacts)
    except ProfileNotReadyError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    out_dir.mkdir(parents=True, exist_ok=True)
    artifacts.mkdir(parents=True, exist_ok=True)
    notebooks = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    if args.publish:
        notebooks += sorted((ROOT / "solutions").glob("[0-9][0-9]_*.ipynb"))
    if args.only:
        notebooks = [nb for nb in notebooks if nb.name.startswith(tuple(args.only))]
    timings: list[tuple[str, float]] = []
    start = time.perf_counter()
    for nb in notebooks:
        t0 = time.perf_counter()
        lesson = nb.parent.name == "notebooks"
        # Relative to the notebook's folder, so that no machine path is recorded in the notebook.
        parameters = {"profile": args.profile, "device": args.device,
                      "artifacts_dir": os.path.relpath(artifacts, nb.parent)} if lesson else None
        out_nb = out_dir / (nb.name if lesson else f"solutions_{nb.name}")
        print(f"==> {nb.parent.name}/{nb.name} (profile {args.profile if lesson else 'smoke'})", flush=True)
        pm.execute_notebook(str(nb), str(out_nb), parameters=parameters, cwd=str(nb.parent),
                            log_output=False, progress_bar=False)
        if args.publish:
            publish(out_nb, nb, parameters)
        timings.append((nb.name, time.perf_counter() - t0))
    total = time.perf_counter() - start
    print("\nlesson                                   seconds")
    for name, secs in timings:
        print(f"{name:<40} {secs:8.1f}")
    print(f"{'total':<40} {total:8.1f}")
    print(f"\nexecuted notebooks: {out_dir}\nartifacts and results: {artifacts}")
    return 0


def publish(executed: Path, target: Path, parameters: dict | None) -> None:
    """Write the cleaned executed notebook over ``target`` (atomically); refuse machine paths."""
    nb = clean_notebook(json.loads(executed.read_text(encoding="utf-8")), parameters)
    leaks = machine_paths(nb, [ROOT, Path.home(), sys.prefix, tempfile.gettempdir()])
    if leaks:
        raise SystemExit(f"{target.name}: outputs show machine paths; print paths relative to the course instead:\n  "
                         + "\n  ".join(leaks))
    write_notebook(nb, target)


if __name__ == "__main__":
    raise SystemExit(main())

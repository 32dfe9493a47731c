"""Execute every lesson in order with papermill: ``make run PROFILE=smoke|cpu|gpu``.

Each executed notebook lands in ``build/<profile>/notebooks/``; lessons hand artifacts (the
general student, the fine-tuned teacher, the augmented set, results) to one another through
``build/<profile>/artifacts/``. It prints one line per lesson: its name, its minutes, the executed
notebook and the artifacts it added; a failing lesson prints the cell that failed and its error.

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

from notebook_outputs import annotate_run, cell_seconds, clean_notebook, machine_paths, write_notebook

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
    kernel = quiet_kernel()
    print(f"profile {args.profile}, device {args.device}: executed lessons in {shown(out_dir)}/, "
          f"artifacts in {shown(artifacts)}/", flush=True)
    start = time.perf_counter()
    for nb in notebooks:
        t0 = time.perf_counter()
        lesson = nb.parent.name == "notebooks"
        # Relative to the notebook's folder, so that no machine path is recorded in the notebook.
        parameters = {"profile": args.profile, "device": args.device,
                      "artifacts_dir": os.path.relpath(artifacts, nb.parent)} if lesson else None
        out_nb = out_dir / (nb.name if lesson else f"solutions_{nb.name}")
        name = nb.stem if lesson else f"solutions/{nb.stem}"
        before = set(os.listdir(artifacts))
        # One line per lesson: its name now (a lesson runs for minutes), the rest when it is done.
        print(f"{name:<36}", end=" ", flush=True)
        try:
            pm.execute_notebook(str(nb), str(out_nb), parameters=parameters, cwd=str(nb.parent),
                                log_output=False, progress_bar=False, **kernel)
        except pm.PapermillExecutionError as err:  # a cell raised: which cell, and its traceback
            print(f"{minutes(t0)}  FAILED at cell In [{err.exec_count}]; "
                  f"the executed notebook: {shown(out_nb)}", flush=True)
            print(str(err).strip("\n"), file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print(f"{minutes(t0)}  interrupted; the executed part: {shown(out_nb)}", flush=True)
            return 130
        except BaseException:  # the kernel died, a missing kernel, ...: the traceback follows
            print(f"{minutes(t0)}  FAILED", flush=True)
            raise
        if args.publish:
            publish(out_nb, nb, parameters)
        made = sorted(n for n in set(os.listdir(artifacts)) - before if not n.startswith("."))  # not .lock
        print(f"{minutes(t0)}  {shown(out_nb)}" + (f"  + artifacts: {', '.join(made)}" if made else "")
              + (f"  (published to {nb.parent.name}/)" if args.publish else ""), flush=True)
    print(f"{'total':<36} {minutes(start)}", flush=True)
    return 0


def minutes(since: float) -> str:
    return f"{(time.perf_counter() - since) / 60:6.1f} min"


def shown(path: Path) -> str:
    """``path`` relative to the current folder when it lies under it (``build/cpu/...``)."""
    try:
        return str(path.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def quiet_kernel(kernel_name: str = "tinybert") -> dict:
    """papermill options that keep the kernel from warning, once per lesson, that it runs over TCP
    without encryption (ipykernel's ``IPKernelApp`` logs it when its connection has no CurveZMQ key).

    Where pyzmq has CurveZMQ and the kernel spec declares it (``metadata.supported_encryption``,
    written by ``ipykernel install``), the kernel manager provisions the keys, so the lessons run over
    an encrypted transport and there is nothing to warn about. Elsewhere the kernel's log level is
    raised to ERROR: the warning goes, the kernel's errors stay. A cell's error is not a log line:
    papermill raises it, and ``main`` prints the cell and its traceback.
    """
    import zmq
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
    from traitlets.config import Config

    try:
        spec = KernelSpecManager().get_kernel_spec(kernel_name)
    except NoSuchKernel:
        return {}  # papermill names the missing kernel itself
    encryption = spec.metadata.get("supported_encryption") or []
    if zmq.has("curve") and "curve" in ([encryption] if isinstance(encryption, str) else encryption):
        return {"config": Config({"KernelManager": {"transport_encryption": "auto"}})}
    return {"extra_arguments": ["--IPKernelApp.log_level=ERROR"]}


def publish(executed: Path, target: Path, parameters: dict | None) -> None:
    """Write the cleaned executed notebook over ``target`` (atomically); refuse machine paths."""
    nb = json.loads(executed.read_text(encoding="utf-8"))
    if parameters is not None:  # a lesson: the banner and the slow cells' warnings, from this run's timings
        annotate_run(nb, parameters["profile"], time.strftime("%Y-%m-%d"), cell_seconds(nb))
    nb = clean_notebook(nb, parameters)
    leaks = machine_paths(nb, [ROOT, Path.home(), sys.prefix, tempfile.gettempdir()])
    if leaks:
        raise SystemExit(f"{target.name}: outputs show machine paths; print paths relative to the course instead:\n  "
                         + "\n  ".join(leaks))
    write_notebook(nb, target)


if __name__ == "__main__":
    raise SystemExit(main())

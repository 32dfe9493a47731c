"""``python -m tinybert_lib run STAGE --profile PROFILE [--task TASK]``: a stage headless, same code as the lessons.

Tooling: not taught. Setup and command line sit together: ``data_setup``, ``preflight``, ``cli``,
``predict_cli`` and ``__main__``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time

from .pipeline import PipelineRun
from .preflight import ProfileNotReadyError, check_ready
from .profiles import PROFILES, for_task, get_profile
from .records import StaleArtifactError
from .stages import STAGES, stage_dir
from .tasks import TASKS
from .runtime import is_main_process
from .checkpoints import CheckpointError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tinybert_lib run", description=__doc__.split("\n\n")[0])
    parser.add_argument("stage", choices=(*STAGES, "all"),
                        help="the stage to run ('all' runs them in order): " + ", ".join(f"{s.name} ({s.title})" for s in STAGES.values()))
    parser.add_argument("--profile", default="smoke", help=f"one of {', '.join(PROFILES)}")
    parser.add_argument("--task", default=None,
                        help=f"the task: one of {', '.join(TASKS)} (default: the profile's, sst2)")
    parser.add_argument("--artifacts", default=None, help="artifacts folder (default: build/<profile>/artifacts)")
    parser.add_argument("--device", default=None, help="auto, cpu, cuda or mps (default: the profile's)")
    parser.add_argument("--rebuild", action="store_true",
                        help="build the stage(s) asked for again, even when finished with other settings")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    try:
        profile = get_profile(args.profile)
        if args.task is not None:
            profile = for_task(profile, args.task)  # with the profile's settings for that task
    except ValueError as err:  # an unknown profile or task: the valid names, no traceback
        print(f"error: {err}", file=sys.stderr)
        return 2
    artifacts = args.artifacts or f"build/{profile.name}/artifacts"
    try:
        check_ready(profile, args.device, artifacts)  # device, teacher, data, a writable artifacts folder
    except ProfileNotReadyError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    run = PipelineRun(profile, artifacts, args.device)  # each stage built or read once, handed to the next
    for stage in STAGES if args.stage == "all" else (args.stage,):
        start = time.perf_counter()
        try:
            result = run.get(stage, rebuild=args.rebuild)
        except (StaleArtifactError, CheckpointError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
        metrics = getattr(result, "metrics", {"rows": len(result)} if hasattr(result, "__len__") else {})
        if is_main_process():
            print(json.dumps({"stage": stage, "profile": profile.name, "task": profile.task,
                              "seconds": round(time.perf_counter() - start, 1), "metrics": metrics,
                              "output": str(stage_dir(artifacts, stage, profile.task))}))
    return 0

"""``python -m tinybert_lib run STAGE --profile PROFILE [--task TASK] [--set FIELD=VALUE] [--corpus FILE]``:
a stage headless, same code as the lessons.

Tooling: not taught. Setup and command line sit together: ``data_setup``, ``preflight``, ``cli``,
``predict_cli`` and ``__main__``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time

from .pipeline import PipelineRun
from .preflight import check_ready
from .data_setup import GENERAL_CORPORA, check_corpus_file, is_corpus_file
from .profiles import FIELD_TYPES, PROFILES, Profile, ProfileFieldError, for_task, get_profile, parse_override
from .errors import CourseError, InterruptedRun, debug_enabled
from .lock import artifacts_lock
from .stages import STAGES, stage_dir
from .tasks import TASKS
from .runtime import is_main_process
from .checkpoints import Checkpoint, CheckpointError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tinybert_lib run", description=__doc__.split("\n\n")[0],
        epilog="profile fields for --set (each explained in tinybert_lib/profiles.py): "
               + ", ".join(FIELD_TYPES))
    parser.add_argument("stage", choices=(*STAGES, "all"),
                        help="the stage to run ('all' runs them in order): " + ", ".join(f"{s.name} ({s.title})" for s in STAGES.values()))
    parser.add_argument("--profile", default="smoke", help=f"one of {', '.join(PROFILES)}")
    parser.add_argument("--task", default=None,
                        help=f"the task: one of {', '.join(TASKS)} (default: the profile's, sst2)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE",
                        help="change one profile field, after --profile and --task (repeatable), e.g. --set "
                             "general_lr=1e-3; none/null for an optional field, true/false for a switch")
    parser.add_argument("--corpus", default=None, metavar="FILE",
                        help="general distillation on a UTF-8 text file of your own: documents separated by "
                             "blank lines, or one per line when it has none (as --set general_corpus=FILE)")
    parser.add_argument("--artifacts", default=None, help="artifacts folder (default: build/<profile>/artifacts)")
    parser.add_argument("--device", default=None, help="auto, cpu, cuda or mps (default: the profile's)")
    parser.add_argument("--rebuild", action="store_true",
                        help="build the stage(s) asked for again, even when finished with other settings")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error (or TINYBERT_DEBUG=1)")
    args = parser.parse_args(argv)
    if args.debug:
        os.environ["TINYBERT_DEBUG"] = "1"
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    try:
        return _run(args)
    except InterruptedRun as err:  # the folder is clean: one line on how to go on
        if debug_enabled():
            raise
        print(err, file=sys.stderr)
        return 130
    except CourseError as err:  # what a person can fix: one line (a bug in the course keeps its traceback)
        if debug_enabled():
            raise
        print(f"error: {err}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace) -> int:
    try:
        profile = _profile(args)
    except ValueError as err:  # an unknown profile, task or field, a bad value or corpus file: no traceback
        print(f"error: {err}", file=sys.stderr)
        return 2
    artifacts = args.artifacts or f"build/{profile.name}/artifacts"
    check_ready(profile, args.device, artifacts)  # device, teacher, data, a writable artifacts folder
    with artifacts_lock(artifacts):  # one run per folder, released however this run ends
        run = PipelineRun(profile, artifacts, args.device)  # each stage built or read once, handed to the next
        for stage in STAGES if args.stage == "all" else (args.stage,):
            start = time.perf_counter()
            try:
                result = run.get(stage, rebuild=args.rebuild)
            except KeyboardInterrupt:
                raise InterruptedRun(_resume_hint(artifacts, run.interrupted_in or stage, profile.task)) from None
            metrics = getattr(result, "metrics", {"rows": len(result)} if hasattr(result, "__len__") else {})
            if is_main_process():
                print(json.dumps({"stage": stage, "profile": profile.name, "task": profile.task,
                                  "seconds": round(time.perf_counter() - start, 1), "metrics": metrics,
                                  "output": str(stage_dir(artifacts, stage, profile.task))}))
    return 0


def _profile(args: argparse.Namespace) -> Profile:
    """The profile asked for: ``--profile``, then ``--task`` (with the profile's settings for it), then every
    ``--set`` and ``--corpus``, so that what is typed last wins over the task's settings."""
    profile = get_profile(args.profile)
    if args.task is not None:
        profile = for_task(profile, args.task)
    overrides = dict(parse_override(text) for text in args.overrides)  # a field set twice: the last value
    if args.corpus is not None:
        if "general_corpus" in overrides:
            raise ProfileFieldError("give the corpus once: --corpus FILE or --set general_corpus=FILE, "
                                    "not both")
        overrides["general_corpus"] = args.corpus
    corpus = overrides.get("general_corpus")
    # A file is named by its absolute path: the settings record names it, whatever folder the next run starts
    # in. A --set value that is no file stays as typed, so "wikitext-3" is named as an unknown corpus.
    named_file = args.corpus is not None or os.path.exists(os.path.expanduser(corpus or ""))
    if corpus is not None and corpus not in GENERAL_CORPORA and named_file:
        overrides["general_corpus"] = os.path.abspath(os.path.expanduser(corpus))
    profile = profile.with_overrides(**overrides)
    if is_corpus_file(profile.general_corpus):
        check_corpus_file(profile.general_corpus)  # unreadable, not UTF-8, empty: said now, before loading
    return profile


def _resume_hint(artifacts: str, stage: str, task: str) -> str:
    """What Ctrl-C left: the step the same command resumes from (the stage's last checkpoint)."""
    title = STAGES[stage].title
    checkpoint = Checkpoint(stage_dir(artifacts, stage, task) / "checkpoint")
    checkpoint.recover()  # a Ctrl-C between the two renames of a save parks the previous checkpoint
    try:
        step = checkpoint.state()["step"] if checkpoint.exists() else None
    except CheckpointError:
        step = None
    if step is None:
        return (f"interrupted during {title}, before its first checkpoint; rerun the same command to start it "
                "again (finished stages are reused).")
    return f"interrupted during {title}; rerun the same command to resume from step {step} (its last checkpoint)."

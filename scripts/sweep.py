"""One lever of the recipe at a time: ``python scripts/sweep.py --profile cpu --lever prediction_lr 3e-5 1e-4``.

Each value trains the stages that the lever changes, and only those, in an artifacts folder of
its own (``build/<profile>/sweep/<base>,<lever>=<value>,seed=<seed>/``); the stages it does not
change are linked from one base folder (the profile, with ``--set`` fields changed), built first
when missing. One JSON line per value is appended to ``build/<profile>/sweep/sweep.jsonl``: the lever, the value,
the seed, the stage's dev accuracy (or held-out distillation loss) and the seconds it took.

This is how the cpu profile's learning rates, pooling and temperature were chosen (lesson 10,
"What matters on a small budget"): a small grid per lever, one checkpoint per value, by dev
accuracy, as the paper chooses its learning rates.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

def parse_value(text: str):
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--build", default="build")
    parser.add_argument("--seed", type=int, default=None, help="the profile's seed unless given")
    parser.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE",
                        help="the base recipe: profile fields held at these values for every point of the sweep")
    parser.add_argument("--lever", required=True,
                        help="a profile field of one stage (e.g. intermediate_lr, prediction_epochs, classifier_pooling)")
    parser.add_argument("values", nargs="+")
    args = parser.parse_args(argv)

    sys.path.insert(0, str(ROOT))
    from tinybert_lib.pipeline import PipelineRun
    from tinybert_lib.stages import STAGES, first_stage_of, stage_dir

    from tinybert_lib import get_profile

    held = {k: parse_value(v) for k, v in (item.split("=", 1) for item in args.set)}
    base = get_profile(args.profile, **held, **({"seed": args.seed} if args.seed is not None else {}))
    build = ROOT / args.build / base.name / "sweep"
    base_tag = ",".join(f"{k}={v}" for k, v in sorted(held.items())) or "profile"
    base_artifacts = build / f"base({base_tag})"
    try:
        lever_stage = first_stage_of(args.lever)
    except ValueError as err:
        parser.error(str(err))
    # the lever's stage and the task-distillation steps that read its output
    order = list(STAGES)
    changed = [lever_stage] + [s for s in ("intermediate", "prediction") if order.index(s) > order.index(lever_stage)]
    base_run = PipelineRun(base, base_artifacts)
    for stage in STAGES:  # the rest is built once with the base settings, then shared by every value
        if stage not in changed:
            base_run.get(stage)
    record = build / "sweep.jsonl"
    record.parent.mkdir(parents=True, exist_ok=True)
    for text in args.values:
        value = parse_value(text)
        profile = base.with_overrides(**{args.lever: value})
        artifacts = build / f"{base_tag},{args.lever}={value},seed={profile.seed}"
        artifacts.mkdir(parents=True, exist_ok=True)
        for stage in STAGES:
            link, target = stage_dir(artifacts, stage), stage_dir(base_artifacts, stage)
            if stage not in changed and not link.exists():
                link.symlink_to(target.resolve(), target_is_directory=True)
        start = time.perf_counter()
        metrics = {}
        run = PipelineRun(profile, artifacts)  # each changed stage hands its result to the next
        for stage in changed:
            result = run.get(stage)
            metrics[stage] = getattr(result, "metrics", {})
        line = {"lever": args.lever, "value": value, "held": held, "seed": profile.seed, "profile": base.name,
                "stages": changed, "metrics": metrics, "seconds": round(time.perf_counter() - start, 1)}
        with record.open("a") as f:
            f.write(json.dumps(line) + "\n")
        print(json.dumps(line))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""One lever of the recipe at a time: ``python scripts/sweep.py --profile cpu --lever task_lr_prediction 3e-5 1e-4``.

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

# The first stage each profile field changes; that stage and every later one are trained again.
FIRST_STAGE = {
    "general_lr": "general-distill", "general_epochs": "general-distill",
    "finetune_lr": "finetune-teacher", "finetune_epochs": "finetune-teacher", "classifier_pooling": "finetune-teacher",
    "augment_n": "augment", "augment_k": "augment", "augment_limit": "augment",
    "task_lr_intermediate": "task-intermediate", "task_intermediate_epochs": "task-intermediate",
    "task_lr_prediction": "task-prediction", "task_prediction_epochs": "task-prediction", "temperature": "task-prediction",
}


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
    parser.add_argument("--lever", required=True, choices=sorted(FIRST_STAGE))
    parser.add_argument("values", nargs="+")
    args = parser.parse_args(argv)

    sys.path.insert(0, str(ROOT))
    from tinybert_lib.pipeline import STAGES, run_stage, stage_dir

    from tinybert_lib import get_profile

    held = {k: parse_value(v) for k, v in (item.split("=", 1) for item in args.set)}
    base = get_profile(args.profile, **held, **({"seed": args.seed} if args.seed is not None else {}))
    build = ROOT / args.build / base.name / "sweep"
    base_tag = ",".join(f"{k}={v}" for k, v in sorted(held.items())) or "profile"
    base_artifacts = build / f"base({base_tag})"
    lever_stage = FIRST_STAGE[args.lever]
    # the lever's stage and the task-distillation steps that read its output
    changed = [lever_stage] + [s for s in ("task-intermediate", "task-prediction") if STAGES.index(s) > STAGES.index(lever_stage)]
    for stage in STAGES:  # the rest is built once with the base settings, then shared by every value
        if stage not in changed:
            run_stage(stage, base, base_artifacts)
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
        for stage in changed:
            result = run_stage(stage, profile, artifacts)
            metrics[stage] = getattr(result, "metrics", {})
        line = {"lever": args.lever, "value": value, "held": held, "seed": profile.seed, "profile": base.name,
                "stages": changed, "metrics": metrics, "seconds": round(time.perf_counter() - start, 1)}
        with record.open("a") as f:
            f.write(json.dumps(line) + "\n")
        print(json.dumps(line))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The whole pipeline on another GLUE task, beside a label-only baseline and the paper's figures (lesson 13).

Lessons: 13.

``run_task`` builds a task's stages through :mod:`~tinybert_lib.pipeline` (the general student is
shared with SST-2), then trains, for each seed, step 2 of task distillation and the baseline that
skips task distillation: the general student fine-tuned on the gold labels (the paper's
"w/o task distillation"; its BERT_TINY is the same idea with a pre-trained small BERT).
"""

from __future__ import annotations

import copy
import math
import time
from pathlib import Path
from typing import Any, Optional

from .ablations import finetune_hard, standard_error
from .data import load_task
from .distill import prediction_distill
from .evaluate import evaluate_task
from .pipeline import PipelineRun, get_general_student
from .profiles import Profile, for_task
from .stages import STAGES
from .training import FitConfig
from .runtime import pick_device, set_seed
from .tasks import get_task

#: Paper Table 1 (GLUE test sets): (BERT-base teacher, TinyBERT4), main metric x 100
#: (accuracy; F1 for MRPC; Matthews correlation for CoLA).
PAPER: dict[str, tuple[float, float]] = {"sst2": (93.4, 92.6), "mrpc": (87.5, 86.4), "rte": (67.0, 66.6), "cola": (52.8, 44.1)}

#: A dev set smaller than this is scored over several seeds (the profile's ``ablation_seeds``).
SMALL_DEV = 1000


def _label_baseline(profile: Profile, artifacts_dir: str | Path, seed: int, device: Optional[str] = None) -> dict[str, float]:
    """The general student fine-tuned on the task's gold labels (no task distillation): its dev metrics."""
    task = get_task(profile.task)
    student = copy.deepcopy(get_general_student(profile, artifacts_dir, device)[0])
    set_seed(seed)  # the fresh head and the batch order
    student.add_classifier(task.num_labels, pooling=profile.classifier_pooling, label_names=task.label_names)
    train = load_task(task, "train", limit=profile.train_limit)
    finetune_hard(student, train, profile.with_overrides(seed=seed), profile.prediction_epochs,
                  pick_device(device or profile.device), task)
    dev = load_task(task, "dev", limit=profile.dev_limit)
    return evaluate_task(student, dev, task, max_length=profile.max_length_for(task))


def _scores(metrics: dict[str, float]) -> dict[str, float]:
    """A stage's dev metrics by the metric's name (``dev_f1`` -> ``f1``), the kept epoch's only."""
    return {k.removeprefix("dev_"): v for k, v in metrics.items() if k.startswith("dev_")}


def run_task(profile: Profile | str, artifacts_dir: str | Path, task: str, device: Optional[str] = None,
             seeds: Optional[int] = None) -> dict[str, Any]:
    """Every stage for ``task`` (built or reused), then step 2 and the baseline over ``seeds`` seeds.

    ``seeds`` defaults to the profile's ``ablation_seeds`` for a dev set under ``SMALL_DEV`` rows, else 1.
    The first seed's student is the pipeline's own (``task_step2_<task>/``).
    """
    p = for_task(profile, task)
    t = get_task(task)
    dev = load_task(t, "dev", limit=p.dev_limit)
    seeds = seeds if seeds is not None else (p.ablation_seeds if len(dev) < SMALL_DEV else 1)
    seconds: dict[str, float] = {}
    run = PipelineRun(p, artifacts_dir, device)  # each stage built or read once, handed to the next
    for stage in STAGES:
        start = time.perf_counter()
        run.get(stage)
        seconds[stage] = time.perf_counter() - start
    teacher_metrics = _scores(run.get("finetune").metrics)
    students = [_scores(run.get("prediction").metrics)]
    start = time.perf_counter()
    for seed in range(p.seed + 1, p.seed + seeds):
        other = p.with_overrides(seed=seed)
        result = prediction_distill(run.get("finetune").model, copy.deepcopy(run.get("intermediate").model), run.get("augment"),
                                    dev, t, FitConfig.for_stage(other, "prediction"), max_length=p.max_length_for(t),
                                    temperature=p.temperature, device=run.device)
        students.append(_scores(result.metrics))
    seconds["step 2, other seeds"] = time.perf_counter() - start
    start = time.perf_counter()
    baselines = [_label_baseline(p, artifacts_dir, seed, device) for seed in range(p.seed, p.seed + seeds)]
    seconds["baseline"] = time.perf_counter() - start
    return {"task": t.name, "dev_rows": len(dev), "seeds": seeds, "teacher": teacher_metrics, "student": students,
            "baseline": baselines, "seconds": seconds}


def summary_row(run: dict[str, Any]) -> dict[str, Any]:
    """One table row: the task's main metric x 100 for teacher, student and baseline (mean and SE over seeds)."""
    t = get_task(run["task"])
    main = t.main_metric

    def mean_se(scores: list[dict[str, float]]) -> tuple[float, float]:
        values = [100 * s[main] for s in scores]
        return sum(values) / len(values), standard_error(values)

    student, student_se = mean_se(run["student"])
    baseline, baseline_se = mean_se(run["baseline"])
    teacher = 100 * run["teacher"][main]
    paper_teacher, paper_student = PAPER.get(t.name, (math.nan, math.nan))
    return {"task": t.display, "metric": main, "dev rows": run["dev_rows"], "seeds": run["seeds"],
            "teacher": teacher, "TinyBERT student": student, "student se": student_se,
            "w/o task distillation": baseline, "w/o task distillation se": baseline_se,
            "kept": student / teacher if teacher else math.nan,
            "paper teacher": paper_teacher, "paper TinyBERT4": paper_student,
            "paper kept": paper_student / paper_teacher, "minutes": sum(run["seconds"].values()) / 60}

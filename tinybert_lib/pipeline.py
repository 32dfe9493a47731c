"""The course pipeline as artifacts: each stage reads its inputs from one artifacts folder and
writes its output there, building any missing upstream artifact first.

Lessons: 06-12.

    artifacts/
      general_student/   stage 1: model/ (HF folder), projections.safetensors, checkpoint/, summary.json
      teacher_sst2/      fine-tuned teacher: model/, checkpoint/, summary.json
      augmented_sst2/    the augmented SST-2 training set (datasets folder), tinybert_settings.json, augment_stats.json
      task_step1/        stage 2 step 1: model/, projections.safetensors, summary.json
      task_step2/        stage 2 step 2: model/ (the final TinyBERT student), summary.json

Those are SST-2's folders, the lessons' task. Another task (the profile's ``task``, or ``--task``
on the command line) gets its own: ``teacher_mrpc/``, ``augmented_mrpc/``, ``task_step1_mrpc/``,
``task_step2_mrpc/``; the general student is the same for every task (it never sees task data).

Lessons 06-09 call these so that each one runs on its own; the command line
(``python -m tinybert_lib run STAGE --profile cpu``) calls the same functions headless.

Each artifact records the settings that built it (profile fields, teacher, student, data and
upstream artifacts, by fingerprint; see :mod:`~tinybert_lib.records`). A finished stage is
reused only when they match the settings asked for now; otherwise the run stops and names what
changed. ``rebuild=True`` (``--rebuild``) builds the asked-for stage again.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Optional

from datasets import Dataset, concatenate_datasets

from .atomic import atomic_folder
from .bert import Bert
from .data import corpus_blocks, load_task
from .distill import StageResult, finetune_teacher, general_distill, task_distill, task_record
from .profiles import Profile, get_profile
from .records import check_reuse, fingerprint_dataset, fingerprint_tensors, profile_fields
from .runtime import is_main_process, main_process_first, set_seed
from .students import build_student
from .tasks import Task, get_task
from .teachers import load_teacher

log = logging.getLogger(__name__)

STAGES = ("general-distill", "finetune-teacher", "augment", "task-intermediate", "task-prediction")
FOLDERS = {
    "general-distill": "general_student",
    "finetune-teacher": "teacher_sst2",
    "augment": "augmented_sst2",
    "task-intermediate": "task_step1",
    "task-prediction": "task_step2",
}


def stage_dir(artifacts_dir: str | Path, stage: str, task: Task | str = "sst2") -> Path:
    """The folder of a stage's output for a task: SST-2's keep the names above, another task's end in its name."""
    if stage not in FOLDERS:
        raise ValueError(f"unknown stage {stage!r}; stages: {', '.join(STAGES)}")
    name = get_task(task).name
    if stage == "general-distill" or name == "sst2":  # one general student for every task
        return Path(artifacts_dir) / FOLDERS[stage]
    return Path(artifacts_dir) / f"{FOLDERS[stage].removesuffix('_sst2')}_{name}"


def is_done(artifacts_dir: str | Path, stage: str, task: Task | str = "sst2") -> bool:
    """A stage is done when its summary is written (the last thing it writes)."""
    folder = stage_dir(artifacts_dir, stage, task)
    return (folder / "dataset_info.json").is_file() if stage == "augment" else (folder / "summary.json").is_file()


def summary(artifacts_dir: str | Path, stage: str, task: Task | str = "sst2") -> dict[str, Any]:
    return json.loads((stage_dir(artifacts_dir, stage, task) / "summary.json").read_text())


# --- stage 1 --------------------------------------------------------------------------------


def run_general_distillation(profile: Profile | str, artifacts_dir: str | Path, device: Optional[str] = None,
                             stop_after: Optional[int] = None, rebuild: bool = False) -> StageResult:
    """Stage 1 for a profile: pre-trained teacher, fresh student, blocks of the profile's ``general_corpus``.

    The held-out loss is measured on WikiText-2's validation blocks whatever the corpus (see ``corpus_blocks``).

    Reuses a finished stage built with the same settings; ``rebuild=True`` trains it again.
    """
    profile = get_profile(profile)
    teacher = load_teacher(profile.teacher)
    set_seed(profile.seed)  # the student's initial weights: the same on every run of the same profile
    student = build_student(profile.student, teacher=teacher)
    corpus = corpus_blocks(teacher.tokenizer, profile.max_seq_len_general, split="train", max_blocks=profile.corpus_max_blocks,
                           corpus=profile.general_corpus)
    valid = corpus_blocks(teacher.tokenizer, profile.max_seq_len_general, split="valid",
                          max_blocks=max(8, (profile.corpus_max_blocks or 2000) // 10))
    return general_distill(teacher, student, corpus, profile, out_dir=stage_dir(artifacts_dir, "general-distill"),
                           valid=valid, device=device, stop_after=stop_after, rebuild=rebuild)


def get_general_student(profile: Profile | str, artifacts_dir: str | Path, device: Optional[str] = None):
    """(student, projections) from stage 1: its artifact when built with these settings, else run it first."""
    if not is_done(artifacts_dir, "general-distill"):
        log.info("no general student in %s: running general distillation (lesson 06) first", artifacts_dir)
    result = run_general_distillation(profile, artifacts_dir, device)
    return result.model, result.projections


# --- teacher --------------------------------------------------------------------------------


def run_teacher_finetuning(profile: Profile | str, artifacts_dir: str | Path, device: Optional[str] = None,
                           rebuild: bool = False) -> StageResult:
    """The pre-trained teacher fine-tuned on the profile's task (its artifact when built with these settings)."""
    profile = get_profile(profile)
    return finetune_teacher(load_teacher(profile.teacher), None, profile, task=profile.task,
                            out_dir=stage_dir(artifacts_dir, "finetune-teacher", profile.task), device=device, rebuild=rebuild)


def get_finetuned_teacher(profile: Profile | str, artifacts_dir: str | Path, device: Optional[str] = None) -> Bert:
    """The teacher of the profile's task (SST-2 in the lessons): its artifact when built with these settings, else fine-tuned first."""
    profile = get_profile(profile)
    if not is_done(artifacts_dir, "finetune-teacher", profile.task):
        log.info("no fine-tuned teacher in %s: fine-tuning it (lesson 07) first", artifacts_dir)
    return run_teacher_finetuning(profile, artifacts_dir, device).model.eval()


# --- augmentation ---------------------------------------------------------------------------

# Beside the datasets files of augmented_sst2/: the settings that built the set (compared before it is
# reused, so a changed teacher or profile never reuses stale rows) and what the run did (AugmentStats).
AUGMENT_SETTINGS = "tinybert_settings.json"
AUGMENT_STATS = "augment_stats.json"


def _augment_inputs(profile: Profile) -> tuple[Dataset, Bert, dict[str, Any]]:
    """The task's train set (the profile's subset), the pre-trained teacher, and the settings they give."""
    from .augment import ALGORITHM_VERSION

    task = get_task(profile.task)
    train = load_task(task, "train", limit=profile.sst2_train_limit)
    teacher = load_teacher(profile.teacher)
    settings = {"stage": "augmentation", "algorithm": ALGORITHM_VERSION, **task_record(task),
                "profile": profile_fields(profile, ("seed", "augment_p", "augment_n", "augment_k", "augment_limit")),
                "teacher": {"sha256": fingerprint_tensors(teacher)}, "train": fingerprint_dataset(train)}
    return train, teacher, settings


def run_augmentation(profile: Profile | str, artifacts_dir: str | Path, device: Optional[str] = None,
                     rebuild: bool = False) -> Dataset:
    """Augment the task's train set (the profile's subset) with the pre-trained teacher's vocabulary.

    Each sentence of a pair is augmented in turn, the other kept (see :func:`~tinybert_lib.augment.augment`).
    The saved folder is the cache: a finished set built with the same settings is loaded instead
    (one built with others is refused); ``rebuild=True`` augments again. What the run did is
    saved beside it (:func:`augmentation_stats`).
    """
    from .augment import augment

    profile = get_profile(profile)
    task = get_task(profile.task)
    train, teacher, settings = _augment_inputs(profile)
    folder = stage_dir(artifacts_dir, "augment", task)
    if not rebuild and is_done(artifacts_dir, "augment", task):
        return _load_augmented(folder, settings, task)
    augmented, stats = augment(train, teacher, profile, device=device, text_column=task.text_fields)
    unaugmented = len(train) - stats.source
    if unaugmented:
        # Examples beyond the augmentation budget still count, un-augmented.
        rest = train.select(range(stats.source, len(train)))
        rest = rest.add_column("is_original", [True] * len(rest))
        augmented = concatenate_datasets([augmented, rest.cast(augmented.features)])
    with atomic_folder(folder) as tmp:  # all or nothing: is_done() never sees half a set
        augmented.save_to_disk(str(tmp))
        (tmp / AUGMENT_SETTINGS).write_text(json.dumps(settings, indent=1))
        (tmp / AUGMENT_STATS).write_text(json.dumps({**stats.to_dict(), "unaugmented": unaugmented}, indent=1))
    return augmented


def _load_augmented(folder: Path, settings: dict[str, Any], task: Task) -> Dataset:
    settings_file = folder / AUGMENT_SETTINGS
    recorded = json.loads(settings_file.read_text()) if settings_file.is_file() else None
    check_reuse(folder, recorded, settings, f"the augmented {task.display} set")
    return Dataset.load_from_disk(str(folder))


def augmentation_stats(artifacts_dir: str | Path, task: Task | str = "sst2") -> Optional[dict[str, Any]]:
    """What the run that built the task's augmented set did: :class:`~tinybert_lib.augment.AugmentStats`'
    fields plus ``unaugmented`` (rows beyond ``augment_limit``, passed through). ``None`` when not recorded."""
    path = stage_dir(artifacts_dir, "augment", task) / AUGMENT_STATS
    return json.loads(path.read_text()) if path.is_file() else None


def get_augmented(profile: Profile | str, artifacts_dir: str | Path, device: Optional[str] = None) -> Dataset:
    """The augmented train set of the profile's task: its artifact when built with these settings, else augmented first."""
    profile = get_profile(profile)
    # With several processes the main one augments and writes; the others then read its copy.
    with main_process_first():
        if not is_done(artifacts_dir, "augment", profile.task):
            log.info("no augmented set in %s: running data augmentation (lesson 08) first", artifacts_dir)
        return run_augmentation(profile, artifacts_dir, device)


get_augmented_sst2 = get_augmented  # the lessons' name, from when SST-2 was the only task


# --- stage 2 --------------------------------------------------------------------------------


def run_task_distillation(profile: Profile | str, artifacts_dir: str | Path, stage: str = "intermediate",
                          device: Optional[str] = None, rebuild: bool = False) -> StageResult:
    """One step of stage 2, building every missing upstream artifact first.

    Upstream artifacts are reused only when built with the current settings; ``rebuild=True``
    rebuilds this step only (a stale upstream stops the run and says which one to rebuild).
    """
    profile = get_profile(profile)
    if stage not in {"intermediate", "prediction"}:
        raise ValueError(f"unknown task-distillation stage {stage!r}: use 'intermediate' or 'prediction'.")
    teacher = get_finetuned_teacher(profile, artifacts_dir, device)
    train = get_augmented(profile, artifacts_dir, device)
    if stage == "intermediate":
        student, projections = get_general_student(profile, artifacts_dir, device)
        return task_distill(teacher, student, train, profile, "intermediate", projections=projections, task=profile.task,
                            out_dir=stage_dir(artifacts_dir, "task-intermediate", profile.task), device=device, rebuild=rebuild)
    student = run_task_distillation(profile, artifacts_dir, "intermediate", device).model
    return task_distill(teacher, student, train, profile, "prediction", task=profile.task,
                        out_dir=stage_dir(artifacts_dir, "task-prediction", profile.task), device=device, rebuild=rebuild)


def get_final_student(profile: Profile | str, artifacts_dir: str | Path, device: Optional[str] = None) -> Bert:
    return run_task_distillation(profile, artifacts_dir, "prediction", device).model.eval()


def _augment_stage(profile: Profile | str, artifacts_dir: str | Path, device: Optional[str], rebuild: bool) -> Dataset:
    # With several processes the main one (re)builds the set first; the others then reuse its copy.
    with main_process_first():
        return run_augmentation(profile, artifacts_dir, device, rebuild=rebuild and is_main_process())


def run_stage(stage: str, profile: Profile | str, artifacts_dir: str | Path, device: Optional[str] = None,
              rebuild: bool = False) -> Any:
    """Run one named stage (see ``STAGES``); ``rebuild=True`` builds it again even if it is finished."""
    runners = {
        "general-distill": lambda: run_general_distillation(profile, artifacts_dir, device, rebuild=rebuild),
        "finetune-teacher": lambda: run_teacher_finetuning(profile, artifacts_dir, device, rebuild=rebuild),
        "augment": lambda: _augment_stage(profile, artifacts_dir, device, rebuild),
        "task-intermediate": lambda: run_task_distillation(profile, artifacts_dir, "intermediate", device, rebuild),
        "task-prediction": lambda: run_task_distillation(profile, artifacts_dir, "prediction", device, rebuild),
    }
    if stage not in runners:
        raise ValueError(f"unknown stage {stage!r}; stages: {', '.join(STAGES)}")
    return runners[stage]()

"""The course pipeline as artifacts: each stage reads its inputs from one artifacts folder and
writes its output there, building any missing upstream artifact first.

    artifacts/
      general_student/   stage 1: model/ (HF folder), projections.safetensors, checkpoint/, summary.json
      teacher_sst2/      fine-tuned teacher: model/, checkpoint/, summary.json
      augmented_sst2/    the augmented SST-2 training set (datasets folder)
      task_step1/        stage 2 step 1: model/, projections.safetensors, summary.json
      task_step2/        stage 2 step 2: model/ (the final TinyBERT student), summary.json

Lessons 06-09 call these so that each one runs on its own; the command line
(``python -m tinybert_lib run STAGE --profile cpu``) calls the same functions headless.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any, Optional

from datasets import Dataset, concatenate_datasets
from safetensors import safe_open

from .bert import Bert
from .data import corpus_blocks, load_sst2
from .distill import StageResult, finetune_teacher, general_distill, load_projections, task_distill
from .profiles import Profile, get_profile
from .runtime import main_process_first, world_size
from .students import build_student
from .teachers import load_teacher, load_tokenizer

log = logging.getLogger(__name__)

STAGES = ("general-distill", "finetune-teacher", "augment", "task-intermediate", "task-prediction")
FOLDERS = {
    "general-distill": "general_student",
    "finetune-teacher": "teacher_sst2",
    "augment": "augmented_sst2",
    "task-intermediate": "task_step1",
    "task-prediction": "task_step2",
}


def stage_dir(artifacts_dir: str | Path, stage: str) -> Path:
    if stage not in FOLDERS:
        raise ValueError(f"unknown stage {stage!r}; stages: {', '.join(STAGES)}")
    return Path(artifacts_dir) / FOLDERS[stage]


def is_done(artifacts_dir: str | Path, stage: str) -> bool:
    """A stage is done when its summary is written (the last thing it writes)."""
    folder = stage_dir(artifacts_dir, stage)
    return (folder / "dataset_info.json").is_file() if stage == "augment" else (folder / "summary.json").is_file()


def summary(artifacts_dir: str | Path, stage: str) -> dict[str, Any]:
    return json.loads((stage_dir(artifacts_dir, stage) / "summary.json").read_text())


def _load_model(folder: Path) -> Bert:
    model = Bert.from_folder(folder / "model")
    model.tokenizer = load_tokenizer(folder / "model")
    model.source = str(folder / "model")
    return model


# --- stage 1 --------------------------------------------------------------------------------


def run_general_distillation(profile: Profile | str, artifacts_dir: str | Path, device: Optional[str] = None,
                             stop_after: Optional[int] = None) -> StageResult:
    """Stage 1 for a profile: pre-trained teacher, fresh student, WikiText-2 blocks."""
    profile = get_profile(profile)
    teacher = load_teacher(profile.teacher)
    student = build_student(profile.student, teacher=teacher)
    corpus = corpus_blocks(teacher.tokenizer, profile.max_seq_len_general, split="train", max_blocks=profile.corpus_max_blocks)
    valid = corpus_blocks(teacher.tokenizer, profile.max_seq_len_general, split="valid",
                          max_blocks=max(8, (profile.corpus_max_blocks or 2000) // 10))
    return general_distill(teacher, student, corpus, profile, out_dir=stage_dir(artifacts_dir, "general-distill"),
                           valid=valid, device=device, stop_after=stop_after)


def get_general_student(profile: Profile | str, artifacts_dir: str | Path, device: Optional[str] = None):
    """(student, projections) from stage 1, running it first if its artifact is missing."""
    if not is_done(artifacts_dir, "general-distill"):
        log.info("no general student in %s: running general distillation (lesson 06) first", artifacts_dir)
        result = run_general_distillation(profile, artifacts_dir, device)
        return result.model, result.projections
    folder = stage_dir(artifacts_dir, "general-distill")
    student = _load_model(folder)
    proj_file = folder / "projections.safetensors"
    with safe_open(str(proj_file), "pt") as f:  # the teacher's width is the projections' output size
        teacher_width = f.get_slice("0.linear.weight").get_shape()[0]
    projections = load_projections(proj_file, student.config.hidden_size, teacher_width, student.config.num_hidden_layers)
    return student, projections


# --- teacher --------------------------------------------------------------------------------


def run_teacher_finetuning(profile: Profile | str, artifacts_dir: str | Path, device: Optional[str] = None) -> StageResult:
    profile = get_profile(profile)
    return finetune_teacher(load_teacher(profile.teacher), None, profile,
                            out_dir=stage_dir(artifacts_dir, "finetune-teacher"), device=device)


def get_finetuned_teacher(profile: Profile | str, artifacts_dir: str | Path, device: Optional[str] = None) -> Bert:
    """The SST-2 teacher, fine-tuning it first if its artifact is missing."""
    if not is_done(artifacts_dir, "finetune-teacher"):
        log.info("no fine-tuned teacher in %s: fine-tuning it (lesson 07) first", artifacts_dir)
        return run_teacher_finetuning(profile, artifacts_dir, device).model
    return _load_model(stage_dir(artifacts_dir, "finetune-teacher")).eval()


# --- augmentation ---------------------------------------------------------------------------


def run_augmentation(profile: Profile | str, artifacts_dir: str | Path, device: Optional[str] = None) -> Dataset:
    """Augment SST-2 train (the profile's subset) with the pre-trained teacher's vocabulary."""
    from .augment import augment

    profile = get_profile(profile)
    train = load_sst2("train", limit=profile.sst2_train_limit)
    teacher = load_teacher(profile.teacher)
    augmented = augment(train, teacher, profile, device=device)
    if profile.augment_limit is not None and profile.augment_limit < len(train):
        # Examples beyond the augmentation budget still count, un-augmented.
        rest = train.select(range(profile.augment_limit, len(train)))
        rest = rest.add_column("is_original", [True] * len(rest))
        augmented = concatenate_datasets([augmented, rest.cast(augmented.features)])
    folder = stage_dir(artifacts_dir, "augment")
    tmp = folder.with_name(f".{folder.name}.tmp")
    augmented.save_to_disk(str(tmp))
    if folder.exists():
        shutil.rmtree(folder)
    tmp.rename(folder)
    return augmented


def get_augmented_sst2(profile: Profile | str, artifacts_dir: str | Path, device: Optional[str] = None) -> Dataset:
    # With several processes the main one augments and writes; the others then read its copy.
    with main_process_first():
        if not is_done(artifacts_dir, "augment"):
            log.info("no augmented set in %s: running data augmentation (lesson 08) first", artifacts_dir)
            return run_augmentation(profile, artifacts_dir, device)
        return Dataset.load_from_disk(str(stage_dir(artifacts_dir, "augment")))


# --- stage 2 --------------------------------------------------------------------------------


def run_task_distillation(profile: Profile | str, artifacts_dir: str | Path, stage: str = "intermediate",
                          device: Optional[str] = None) -> StageResult:
    """One step of stage 2, building every missing upstream artifact first."""
    profile = get_profile(profile)
    teacher = get_finetuned_teacher(profile, artifacts_dir, device)
    train = get_augmented_sst2(profile, artifacts_dir, device)
    if stage == "intermediate":
        student, projections = get_general_student(profile, artifacts_dir, device)
        return task_distill(teacher, student, train, profile, "intermediate", projections=projections,
                            out_dir=stage_dir(artifacts_dir, "task-intermediate"), device=device)
    if stage != "prediction":
        raise ValueError(f"unknown task-distillation stage {stage!r}: use 'intermediate' or 'prediction'.")
    if not is_done(artifacts_dir, "task-intermediate"):
        run_task_distillation(profile, artifacts_dir, "intermediate", device)
    student = _load_model(stage_dir(artifacts_dir, "task-intermediate"))
    return task_distill(teacher, student, train, profile, "prediction",
                        out_dir=stage_dir(artifacts_dir, "task-prediction"), device=device)


def get_final_student(profile: Profile | str, artifacts_dir: str | Path, device: Optional[str] = None) -> Bert:
    if not is_done(artifacts_dir, "task-prediction"):
        return run_task_distillation(profile, artifacts_dir, "prediction", device).model
    return _load_model(stage_dir(artifacts_dir, "task-prediction")).eval()


def run_stage(stage: str, profile: Profile | str, artifacts_dir: str | Path, device: Optional[str] = None) -> Any:
    """Run one named stage (see ``STAGES``)."""
    runners = {
        "general-distill": lambda: run_general_distillation(profile, artifacts_dir, device),
        "finetune-teacher": lambda: run_teacher_finetuning(profile, artifacts_dir, device),
        "augment": lambda: get_augmented_sst2(profile, artifacts_dir, device) if world_size() > 1
        else run_augmentation(profile, artifacts_dir, device),
        "task-intermediate": lambda: run_task_distillation(profile, artifacts_dir, "intermediate", device),
        "task-prediction": lambda: run_task_distillation(profile, artifacts_dir, "prediction", device),
    }
    if stage not in runners:
        raise ValueError(f"unknown stage {stage!r}; stages: {', '.join(STAGES)}")
    return runners[stage]()

"""The course's five stages, named once: the command line, the artifact folders, the profile fields,
the training runs and the estimate all read this table.

Lessons: 06-13 (through ``tl.pipeline``: ``stage_dir(artifacts, "general")``, ``is_done``, ``summary``).

    name          builds                        folder (SST-2; MRPC)            lesson  profile fields
    general       the general student           general_student                 06      general_{epochs,batch_size,lr}
    finetune      the fine-tuned teacher        teacher_sst2; teacher_mrpc      07      finetune_{epochs,batch_size,lr}
    augment       the augmented train set       augmented_sst2; augmented_mrpc  08      augment_{p,n,k,limit}
    intermediate  step 1 of task distillation   task_step1; task_step1_mrpc     09      intermediate_{epochs,batch_size,lr}
    prediction    step 2: the final student     task_step2; task_step2_mrpc     09      prediction_{epochs,batch_size,lr}

One scheme: a stage's name is its command (``python -m tinybert_lib run intermediate``), the
prefix of its profile fields (``intermediate_lr``) and the key of its training settings
(``FitConfig.for_stage(profile, "intermediate")``). Only the folders keep their descriptive names.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Stage:
    """One stage of the pipeline."""

    name: str  # the command, the profile-field prefix, the FitConfig key
    title: str  # how records, logs and progress bars call it
    folder: str  # its artifact folder for SST-2 (see folder_for)
    lesson: str
    per_task: bool = True  # False: one artifact for every task (the general student never sees task data)
    trains: bool = True  # False: augmentation, which has no training run

    @property
    def fit_fields(self) -> dict[str, str]:
        """The profile fields that give a training stage its epochs, batch size and learning rate."""
        if not self.trains:
            return {}
        return {"epochs": f"{self.name}_epochs", "batch_size": f"{self.name}_batch_size", "lr": f"{self.name}_lr"}

    def folder_for(self, task: str = "sst2") -> str:
        """``teacher_sst2`` for SST-2, the lessons' task, ``teacher_mrpc`` for MRPC, ``task_step1_mrpc``..."""
        if not self.per_task or task == "sst2":
            return self.folder
        return f"{self.folder.removesuffix('_sst2')}_{task}"


STAGES: dict[str, Stage] = {s.name: s for s in (
    Stage("general", "general distillation", "general_student", "06", per_task=False),
    Stage("finetune", "teacher fine-tuning", "teacher_sst2", "07"),
    Stage("augment", "augmentation", "augmented_sst2", "08", trains=False),
    Stage("intermediate", "task distillation (intermediate)", "task_step1", "09"),
    Stage("prediction", "task distillation (prediction)", "task_step2", "09"),
)}

#: The stages that train, in pipeline order (the keys of ``FitConfig.for_stage``).
TRAINING_STAGES = tuple(name for name, s in STAGES.items() if s.trains)

#: Profile fields of the augmentation stage (its settings record).
AUGMENT_FIELDS = ("seed", "augment_p", "augment_n", "augment_k", "augment_limit")


def get_stage(name: str) -> Stage:
    """The stage called ``name``; an unknown name says which exist."""
    if name not in STAGES:
        raise ValueError(f"unknown stage {name!r}; stages: {', '.join(STAGES)}")
    return STAGES[name]


def stage_dir(artifacts_dir: str | Path, stage: str, task: Any = "sst2") -> Path:
    """The folder of ``stage``'s output for ``task`` (a name or a :class:`~tinybert_lib.tasks.Task`)."""
    from .tasks import get_task

    return Path(artifacts_dir) / get_stage(stage).folder_for(get_task(task).name)


def first_stage_of(field: str) -> str:
    """The first stage a profile field changes (``intermediate_lr`` -> ``intermediate``): that stage
    and every later one must be built again when it changes (``scripts/sweep.py``)."""
    own = {"classifier_pooling": "finetune", "temperature": "prediction"}
    if field in own:
        return own[field]
    for name in STAGES:
        if field.startswith(f"{name}_"):
            return name
    raise ValueError(f"{field!r} is not the field of one stage; stage fields start with "
                     f"{', '.join(f'{n}_' for n in STAGES)} (or are classifier_pooling, temperature)")

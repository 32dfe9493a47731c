"""tinybert_lib: the library the TinyBERT-from-Scratch lessons build and reuse.

Modules, one idea each: ``bert`` (the model), ``teachers`` / ``students`` (which models),
``tasks`` (SST-2, MRPC, RTE, CoLA: what a task is, its GLUE metrics), ``data`` (reading them, and
WikiText-2), ``losses`` (the four TinyBERT losses), ``profiles`` (run sizes),
``runtime`` (seeds, devices, processes), ``export`` (Hugging Face folders), ``training`` (the
one loop, through Accelerate), ``distill`` / ``pipeline`` (the stages), ``augment`` /
``candidates`` (data augmentation, its replacement words), ``ablations``, ``bench`` /
``estimate`` (measured and estimated cost), ``preflight`` (is a profile ready to run?),
``quantization`` (int8 by hand), ``deploy`` (ONNX, ONNX Runtime, int8 variants, measured side by side),
and ``task_runs`` (lesson 13: the pipeline on MRPC, RTE and CoLA, beside a baseline).
"""

from . import (ablations, augment, bench, candidates, data, deploy, distill, estimate, evaluate, exercises, losses, pipeline,
               plotting, preflight, quantization, task_runs, tasks, training)
from .bert import Bert, BertConfig, BertOutput
from .export import export_hf
from .preflight import LessonParameterError, check_lesson_parameters
from .profiles import PROFILES, Profile, get_profile
from .runtime import pick_device, set_seed
from .students import DEFAULT_STUDENT, STUDENT_PRESETS, build_student
from .teachers import TeacherNotFoundError, load_teacher

__version__ = "0.1.0"

__all__ = [
    "Bert",
    "BertConfig",
    "BertOutput",
    "DEFAULT_STUDENT",
    "PROFILES",
    "Profile",
    "STUDENT_PRESETS",
    "LessonParameterError",
    "TeacherNotFoundError",
    "build_student",
    "check_lesson_parameters",
    "export_hf",
    "get_profile",
    "load_teacher",
    "pick_device",
    "set_seed",
]

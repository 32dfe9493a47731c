"""tinybert_lib: the library the TinyBERT-from-Scratch lessons build and reuse.

Lessons: 00-13 (the README's "Where each lesson's ideas live" maps each lesson to its modules).

Modules, one idea each: ``bert`` (the model), ``teachers`` / ``students`` (which models),
``tasks`` (SST-2, MRPC, RTE, CoLA: what a task is, its GLUE metrics), ``data`` (reading them, and
WikiText-2), ``losses`` (the four TinyBERT losses), ``profiles`` (run sizes),
``runtime`` (seeds, devices, processes), ``export`` (Hugging Face folders), ``training`` (the
one loop, through Accelerate), ``checkpoints`` (exact resume), ``distill`` / ``pipeline`` (the
stages), ``augment`` / ``candidates`` (data augmentation, its replacement words), ``ablations``,
``bench`` / ``estimate`` (measured and estimated cost), ``quantization`` (int8 by hand), ``deploy``
(ONNX, ONNX Runtime, int8 variants, measured side by side), and ``task_runs`` (lesson 13: the
pipeline on MRPC, RTE and CoLA, beside a baseline).

Setup and command line, not taught: ``paths`` (where a lesson runs: a checkout or anywhere else),
``data_setup`` (getting and checking the data), ``preflight``
(is a profile ready to run?), ``cli`` / ``predict_cli`` / ``__main__`` (``python -m tinybert_lib``).

``import tinybert_lib`` loads only the model, the profiles and the parameters check; every other
module loads the first time it is used (``tl.data``, ``tl.bench``, ...), so a lesson that never
plots never imports matplotlib, and none imports ONNX Runtime before lesson 12.
"""

from __future__ import annotations

import importlib
from types import ModuleType

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

#: Submodules reached as ``tl.<name>``, imported on first use (PEP 562): some pull in matplotlib,
#: ``datasets``, Accelerate or ONNX Runtime, which a lesson should pay for only when it uses them.
LAZY_SUBMODULES: tuple[str, ...] = (
    "ablations", "atomic", "augment", "bench", "bert", "candidates", "checkpoints", "data", "data_setup", "deploy",
    "distill", "estimate", "evaluate", "exercises", "export", "losses", "paths", "pipeline", "plotting",
    "preflight", "profiles", "quantization", "records", "runtime", "stages", "students", "task_runs", "tasks",
    "teachers", "training",
)


def __getattr__(name: str) -> ModuleType:
    if name in LAZY_SUBMODULES:
        return importlib.import_module(f".{name}", __name__)  # which also sets it on the package
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *LAZY_SUBMODULES})

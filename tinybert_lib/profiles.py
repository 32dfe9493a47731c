"""Run profiles: how big a run is, from a CI smoke test to the paper's setting on a GPU.

Lessons: 00, 06-08, 13 (and every lesson's parameters cell, through ``check_lesson_parameters``).
"""

from __future__ import annotations

import difflib
import math
import os
import types
import typing
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Optional

from .data_setup import check_general_corpus
from .errors import CourseError
from .tasks import get_task

#: Where a learner finds every profile field with what it does (error messages point there).
FIELDS_LISTED = "tinybert_lib/profiles.py (class Profile; also `python -m tinybert_lib run --help`)"


class ProfileFieldError(CourseError, ValueError):
    """A profile field that does not exist, or a value that is not of the field's type."""


@dataclass(frozen=True)
class Profile:
    """Every knob of a course run. ``None`` for a size means "all of it"."""

    name: str
    teacher: str = "minilm"
    student: str = "minilm-3l-192d"
    # where the student starts: "random" (the paper's, from the seed), "teacher" (DistilBERT's: the
    # teacher's embeddings and every N/M-th layer, for a student of the teacher's width, e.g. minilm-3l-384d),
    # or the folder of a saved general student (another run's general_student/model, a released general
    # TinyBERT): then the general stage only loads it (students.student_from_teacher_layers,
    # students.load_general_student)
    student_init: str = "random"
    device: str = "auto"
    seed: int = 42
    # data
    # the task teacher fine-tuning, augmentation and task distillation work on (tinybert_lib.tasks:
    # sst2, mrpc, rte, cola, or one registered); SST-2 is the lessons' main thread
    task: str = "sst2"
    # the first rows of the task's train and dev files
    train_limit: Optional[int] = None
    dev_limit: Optional[int] = None
    max_seq_len_general: int = 128
    max_seq_len_task: int = 64
    max_seq_len_pair: int = 128  # a sentence pair's length (the paper: 64 for single sentences, 128 for pairs)
    corpus_max_blocks: Optional[int] = None
    # the general-distillation text: "wikitext-2" (in the data folder), "wikitext-103" (50 times
    # larger, from the hub or a local copy; WikiText-2 with a warning when it cannot be had), or the
    # path of a UTF-8 text file of one's own (documents separated by blank lines, or one per line)
    general_corpus: str = "wikitext-2"
    # stage 1: general distillation
    general_epochs: int = 3
    general_batch_size: int = 32
    general_lr: float = 5e-5
    # the classification head of teacher and student: "cls" (BERT's pooler) or "mean" (see BertConfig)
    classifier_pooling: str = "cls"
    # teacher fine-tuning
    finetune_epochs: int = 3
    finetune_batch_size: int = 32
    finetune_lr: float = 2e-5
    # data augmentation (paper: p_t = 0.4, N_a = 20, K = 15)
    augment_p: float = 0.4
    augment_n: int = 20
    augment_k: int = 15
    augment_limit: Optional[int] = None
    # stage 2: task distillation, step 1 (intermediate layers) and step 2 (prediction layer)
    intermediate_epochs: int = 10
    intermediate_batch_size: int = 32
    intermediate_lr: float = 5e-5
    prediction_epochs: int = 3
    prediction_batch_size: int = 32
    prediction_lr: float = 3e-5
    temperature: float = 1.0
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    # bf16 autocast on a CPU that multiplies bf16 natively (AVX512-BF16 or AMX): matrix products at about twice
    # float32's rate, while weights, optimiser state and losses stay float32. A CPU without those instructions
    # would emulate bf16, slower than float32: there the run stays float32 and says so. (CUDA always trains in
    # mixed precision: training.make_accelerator.)
    cpu_bf16: bool = False
    grad_accum_steps: int = 1  # batches per optimiser step (batch sizes above are per batch, all processes together)
    log_every: int = 10
    # lesson 10: baselines and ablations share one smaller budget
    ablation_examples: int = 2000
    ablation_epochs: int = 1
    ablation_seeds: int = 3
    # rows whose student starts from random weights (no general distillation) train every step at
    # this rate: far from a solution, they need larger steps than a distilled student
    scratch_lr: float = 1e-4
    # the row that fine-tunes the general student on the labels, without task distillation ("general student +
    # fine-tuning"): a fresh head on a student never trained for the task, with its own rate from a small grid,
    # as the paper tunes each baseline's; None: prediction_lr, step 2's
    ablation_finetune_lr: Optional[float] = None

    def __post_init__(self) -> None:
        if isinstance(self.general_corpus, os.PathLike):  # a Path is kept as text, as records store it
            object.__setattr__(self, "general_corpus", os.fspath(self.general_corpus))
        check_general_corpus(self.general_corpus)  # a typo fails here, not an hour into a run
        get_task(self.task)
        if isinstance(self.student_init, os.PathLike):  # a folder is kept as text too
            object.__setattr__(self, "student_init", os.fspath(self.student_init))
        _check_student_init(self.student_init)

    def max_length_for(self, task: Any) -> int:
        """Tokens per example of ``task``: ``max_seq_len_pair`` for a sentence pair, ``max_seq_len_task`` otherwise."""
        return self.max_seq_len_pair if get_task(task).is_pair else self.max_seq_len_task

    def augment_settings(self) -> dict[str, Any]:
        """This profile's Algorithm 1 settings, as :func:`~tinybert_lib.augment.augment`'s keywords."""
        return dict(p=self.augment_p, n=self.augment_n, k=self.augment_k, limit=self.augment_limit, seed=self.seed)

    def with_overrides(self, **overrides: Any) -> "Profile":
        """A copy with some fields changed, e.g. ``get_profile("cpu").with_overrides(device="cuda")``."""
        unknown = sorted(set(overrides) - set(FIELD_TYPES))
        if unknown:
            raise ProfileFieldError("; ".join(_unknown_field(name) for name in unknown))
        return replace(self, **overrides)


STUDENT_INITS = ("random", "teacher")  # or the folder of a saved general student


def _check_student_init(value: str) -> None:
    """Refuse a ``student_init`` that is neither a start the course knows nor an existing folder (a typo)."""
    if value in STUDENT_INITS or Path(value).expanduser().is_dir():
        return
    raise ProfileFieldError(f"student_init {value!r}: use 'random', 'teacher' or the folder of a saved "
                            "general student (config.json + model.safetensors); there is no folder "
                            f"{value!r} in {Path.cwd()}")


#: Each profile field's type (``Optional[int]``, ``float``, ...), what ``--set FIELD=VALUE`` parses to.
FIELD_TYPES: dict[str, Any] = {f.name: typing.get_type_hints(Profile)[f.name] for f in fields(Profile)}

_TRUE, _FALSE = ("true", "1", "yes"), ("false", "0", "no")
_NONE = ("none", "null")
_UNIONS = (typing.Union, types.UnionType)  # Optional[int], int | None


def _unknown_field(name: str) -> str:
    """The message for a field ``Profile`` lacks: the close names, and where every field is listed."""
    close = difflib.get_close_matches(name, FIELD_TYPES, n=3, cutoff=0.6)
    names = ", ".join(close[:-1]) + " or " + close[-1] if len(close) > 1 else "".join(close)
    hint = f" (did you mean {names}?)" if close else ""
    return f"unknown profile field {name!r}{hint}; every field is listed in {FIELDS_LISTED}"


def _type_name(kind: Any) -> str:
    """How a message names a field's type: ``an integer or none``, ``a number (e.g. 5e-05)``, ..."""
    if typing.get_origin(kind) in _UNIONS:
        inner = [k for k in typing.get_args(kind) if k is not type(None)]
        return f"{_type_name(inner[0])} or none"
    names = {int: "an integer", float: "a number (float, e.g. 5e-05)",
             bool: "true or false (also 1/0, yes/no)", str: "text"}
    return names.get(kind, str(kind))


def _parse_value(kind: Any, text: str) -> Any:
    """``text`` as a value of type ``kind``; ValueError when it is not one."""
    word = text.strip()
    if typing.get_origin(kind) in _UNIONS:  # Optional[X]: "none" or "null" is None, else an X
        if word.lower() in _NONE:
            return None
        (inner,) = [k for k in typing.get_args(kind) if k is not type(None)]
        return _parse_value(inner, text)
    if kind is bool:
        if word.lower() not in _TRUE + _FALSE:
            raise ValueError(word)
        return word.lower() in _TRUE
    if kind is int:
        return int(word)  # "3", "-1", "10_000"; never "1.5" (a silent rounding)
    if kind is float:
        value = float(word)  # "5e-5", "0.001", "3"
        if not math.isfinite(value):  # nan and inf would only fail later, mid-run
            raise ValueError(word)
        return value
    return text  # str: as given


def parse_override(assignment: str) -> tuple[str, Any]:
    """``"FIELD=VALUE"`` (``python -m tinybert_lib run --set``) as ``(field, value)``, of the field's type.

    ``int``, ``float`` (``1e-3``), ``bool`` (``true``/``false``, ``1``/``0``, ``yes``/``no``), ``str``, and
    ``none``/``null`` for an ``Optional`` field. An unknown field (with the close names) or a value not of its
    type is a :class:`ProfileFieldError`. The pair goes to :meth:`Profile.with_overrides`.
    """
    name, equals, text = assignment.partition("=")
    name = name.strip()
    if not equals or not name:
        raise ProfileFieldError(f"--set {assignment!r}: expected FIELD=VALUE, e.g. --set general_lr=1e-3")
    if name not in FIELD_TYPES:
        raise ProfileFieldError(f"--set {assignment}: {_unknown_field(name)}")
    kind = FIELD_TYPES[name]
    try:
        return name, _parse_value(kind, text)
    except ValueError:
        raise ProfileFieldError(f"--set {assignment}: profile field {name} takes {_type_name(kind)}, "
                                f"not {text!r}") from None


PROFILES: dict[str, Profile] = {
    # CI and nbval: every lesson end to end in minutes on 2 CPU cores. Numbers mean nothing.
    "smoke": Profile(
        name="smoke", train_limit=256, dev_limit=128, max_seq_len_general=64, corpus_max_blocks=64,
        general_epochs=1, general_batch_size=16, finetune_epochs=1, finetune_batch_size=16,
        augment_n=2, augment_k=5, augment_limit=32, intermediate_epochs=1, prediction_epochs=1,
        intermediate_batch_size=16, prediction_batch_size=16, log_every=2, ablation_examples=16, ablation_seeds=1,
    ),
    # A learner's laptop (2-4 cores, ~2 hours): all of SST-2, one epoch over all of WikiText-2 for
    # general distillation, a reduced augmentation budget (the paper's N_a = 20 would take days on a
    # CPU). A student this far from a solution needs larger steps than the paper's (chosen with
    # scripts/sweep.py, one lever at a time; results/cpu_sweep.jsonl and lesson 10, section 8):
    # - general_lr 6e-4: on the same batches the loss at step 155 is 9.2 against 12.9 at 2e-4;
    # - mean pooling: all-MiniLM-L6-v2 was trained as a mean-pooled sentence encoder and has no pooler
    #   weights; fine-tuned one epoch at 2e-5 it reaches 88.9% SST-2 dev, 88.3% with [CLS], and at
    #   3e-5 (mean) 89.1%;
    # - step 1 at 1e-3, then one epoch of step 2 at 1e-4: 87.6% SST-2 dev (98.3% of the 89.1% teacher),
    #   against 86.9% at 2e-3, 85.9% at 5e-4 (86.6% with two epochs of step 2) and 82.1% for the paper's
    #   rates (step 1 at 5e-5, two epochs of step 2 at 3e-5).
    "cpu": Profile(
        name="cpu", device="cpu", max_seq_len_general=128, corpus_max_blocks=None, general_epochs=1, general_lr=6e-4,
        classifier_pooling="mean", finetune_epochs=1, finetune_lr=3e-5, augment_n=1, augment_k=8, augment_limit=20000,
        intermediate_epochs=1, intermediate_lr=1e-3, prediction_epochs=1, prediction_lr=1e-4,
        # bf16 autocast where the CPU multiplies bf16 natively: per step 1.5-1.6x faster than float32 on a 2-core
        # AMD Zen 4, with the same teacher (89.1%) and general-distillation loss (3.43 against 3.44); the rates
        # above were chosen in float32. Elsewhere the run stays float32 on its own (README, "How fast is a step").
        cpu_bf16=True,
        # 6,000 SST-2 rows per variant (333 steps per step with their augmentations): with this recipe's
        # rates every row leaves the one-class regime (seed 42: no distillation 59.1%, prediction KD only
        # 60.0%, general student + fine-tuning 63.4%, TinyBERT 80.7%; majority 50.9%). From those runs' times
        # (20-50 s for one step, about 200 s for two, one thread) the 20 runs take an estimated 30-40 min;
        # at 12,000 rows they were on course for about two hours.
        ablation_examples=6000,
        # "general student + fine-tuning" gets its own rate from a small grid, as the paper tunes each baseline's:
        # seed 42, 6,000 rows, one epoch: 59.5% at 3e-5, 54.7% at 1e-4 (step 2's rate; close to one class), 70.6% at
        # 3e-4, 74.1% at 1e-3, 50.9% at 3e-3 (one class: too large).
        ablation_finetune_lr=1e-3,
    ),
    # The paper's setting (../REFERENCE: general distillation 3 epochs, batch 256, lr 5e-5, length
    # 128; step 1 10 epochs, step 2 3 epochs at lr 3e-5, batch 32, length 64; p_t 0.4, N_a 20, K 15)
    # with a BERT-base teacher and TinyBERT-4L-312D, on WikiText-103 instead of Wikipedia (~103M words
    # against ~2,500M; WikiText-2 would be 201 steps at batch 256, too few to learn anything). Several
    # GPUs: the batch sizes are global, see README "Scaling up".
    "gpu": Profile(
        name="gpu", teacher="bert-base-uncased", student="tinybert-4l-312d", device="cuda", general_corpus="wikitext-103",
        general_epochs=3, general_batch_size=256, general_lr=5e-5, intermediate_epochs=10,
        prediction_epochs=3, ablation_examples=20000, ablation_epochs=3, ablation_seeds=3,
    ),
    # One GPU from local files only, for a machine that cannot reach the hub: the packaged MiniLM teacher
    # instead of bert-base-uncased, WikiText-2 instead of WikiText-103 (both from the data folder or
    # DATA_MIRROR), a student of the teacher's width and half its depth (the paper's 4-layer student cannot map
    # uniformly onto MiniLM's 6 layers). A budget that teaches: ten epochs of general distillation (2,650
    # steps at batch 64), the teacher three epochs, all of SST-2 augmented four times, ten epochs of step 1
    # and three of step 2, at the cpu recipe's rates (chosen for a student this far from a solution).
    "gpu-local": Profile(
        name="gpu-local", student="minilm-3l-384d", device="cuda", general_corpus="wikitext-2",
        general_epochs=10, general_batch_size=64, general_lr=6e-4, classifier_pooling="mean",
        finetune_epochs=3, finetune_lr=3e-5, augment_n=4, augment_k=8, intermediate_epochs=10,
        intermediate_batch_size=64, intermediate_lr=1e-3, prediction_epochs=3, prediction_lr=1e-4,
        ablation_examples=20000, ablation_epochs=3, ablation_seeds=3, ablation_finetune_lr=1e-3,
    ),
}

#: What to run instead of a profile whose teacher or corpus must come from the hub, when the hub is out of reach.
OFFLINE_ALTERNATIVE = {"gpu": "gpu-local"}


def get_profile(name: str, **overrides: Any) -> Profile:
    """Look up a run profile by name (``smoke``, ``cpu``, ``gpu``, ``gpu-local``), optionally overriding fields."""
    if isinstance(name, Profile):
        return name.with_overrides(**overrides) if overrides else name
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; valid profiles: {', '.join(PROFILES)}.")
    profile = PROFILES[name]
    return profile.with_overrides(**overrides) if overrides else profile


#: Per-task changes to a profile. The small tasks have a few thousand rows, and a pair costs about four SST-2
#: phrases (53 and 67 word pieces on average for MRPC and RTE, 13 for SST-2). On a laptop CPU (cpu):
#: - the teacher takes batches of 16 and three epochs: after one epoch (230, 156 and 535 steps) it barely beat
#:   a constant answer (MRPC F1 82.1 against 81.2, RTE 56.7% against 52.7%, CoLA Matthews correlation 0.0;
#:   seed 42); after three, MRPC F1 85.4 (accuracy 78.7%) and CoLA 0.248;
#: - the pair tasks augment their first 1,000 examples: each pair gives up to three rows (one new sentence at a
#:   time), and step 1, step 2 and its extra seeds on the small dev sets scale with the rows (at 2,000 the three
#:   tasks were estimated at about 48 minutes);
#: so that the three tasks stay within 45 minutes (lesson 13). The paper's 20 epochs of step 1 are out of reach.
TASK_SETTINGS: dict[str, dict[str, dict[str, Any]]] = {
    # smoke: every code path on a few dozen rows per task (lesson 13 runs three tasks under make test)
    "smoke": {name: dict(train_limit=48, dev_limit=32, augment_limit=16) for name in ("mrpc", "rte", "cola")},
    "cpu": {
        "mrpc": dict(finetune_epochs=3, finetune_batch_size=16, augment_limit=1000),
        "rte": dict(finetune_epochs=3, finetune_batch_size=16, augment_limit=1000),
        "cola": dict(finetune_epochs=3, finetune_batch_size=16),
    },
}


def for_task(profile: Profile | str, task: str) -> Profile:
    """The profile for ``task``: its ``task`` field set, with the profile's settings for that task (``TASK_SETTINGS``).

    The command line (``--task``) and lesson 13 both go through here, so they build the same artifacts.
    """
    profile = get_profile(profile)
    name = get_task(task).name
    return profile.with_overrides(task=name, **TASK_SETTINGS.get(profile.name, {}).get(name, {}))

"""Tasks: what a classification task is, for every stage of the course.

Lessons: 13 (and every stage reads its task from here).

A :class:`Task` says what the model reads (one sentence, or a pair encoded as BERT does:
``[CLS] a [SEP] b [SEP]``), what it predicts (its label names, in label-id order), how it is
scored (GLUE's metrics) and where its data lies (tab-separated files in the data folder, and
the GLUE config on the Hugging Face hub). The stages read everything task-specific from here,
so a new task is one description::

    from tinybert_lib.tasks import Task, register_task

    register_task(Task(
        name="reviews", text_fields=("text",), label_names=("bad", "good"),
        files={"train": "/path/to/train.tsv", "dev": "/path/to/dev.tsv"},
        file_columns=("text", "label"),
    ))

after which ``get_profile("cpu", task="reviews")`` runs the whole pipeline on it (see
:func:`~tinybert_lib.pipeline.run_stage`).

This module imports nothing else from ``tinybert_lib``: :mod:`~tinybert_lib.data` reads its
files through these descriptions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Optional

#: The metrics a task may name: GLUE's for classification. ``f1`` is the F1 score of label 1
#: (MRPC's "equivalent"), ``matthews_correlation`` is CoLA's.
METRIC_NAMES: tuple[str, ...] = ("accuracy", "f1", "matthews_correlation")

#: Where a task's splits are on the hub (GLUE names its dev split "validation").
HUB_SPLITS: dict[str, str] = {"train": "train", "dev": "validation"}


@dataclass(frozen=True)
class Task:
    """A sentence or sentence-pair classification task, and how its files are laid out.

    The dataset a loader returns has the columns ``text_fields`` (one: a sentence; two: a pair)
    and ``label`` (an int, the index into ``label_names``). The files are tab-separated with
    no quoting (a double quote is text), read as UTF-8 (a byte-order mark is skipped).
    """

    name: str  # short name, as on the command line: "mrpc"
    text_fields: tuple[str, ...]  # the dataset's text columns: ("sentence",) or ("sentence1", "sentence2")
    label_names: tuple[str, ...]  # in label-id order: label 0 is label_names[0]
    files: Mapping[str, str]  # {"train": ..., "dev": ...}: paths relative to the data folder (or absolute)
    file_columns: tuple[str, ...]  # every column of the files, in order
    header: bool = True  # the files' first line is ``file_columns`` (CoLA's files have no header)
    text_columns: Optional[tuple[str, ...]] = None  # file columns holding ``text_fields`` (default: the same names)
    label_column: str = "label"  # the file column holding the label
    labels_in_file: str = "id"  # "id": written 0, 1, ...; "name": written as in label_names (RTE)
    metrics: tuple[str, ...] = ("accuracy",)  # from METRIC_NAMES; the first is the main one
    hub_config: Optional[str] = None  # the GLUE config on the hub ("mrpc"), used when there is no mirror
    hub_dataset: str = "nyu-mll/glue"
    title: str = ""  # how lessons and messages write it ("MRPC"); default: name

    def __post_init__(self) -> None:
        # Every mistake in a description is found here, not an hour into a run.
        where = f"task {self.name!r}"
        object.__setattr__(self, "text_fields", tuple(self.text_fields))
        object.__setattr__(self, "label_names", tuple(self.label_names))
        object.__setattr__(self, "file_columns", tuple(self.file_columns))
        object.__setattr__(self, "metrics", tuple(self.metrics))
        object.__setattr__(self, "files", dict(self.files))
        if self.text_columns is None:
            object.__setattr__(self, "text_columns", self.text_fields)
        object.__setattr__(self, "text_columns", tuple(self.text_columns))
        if len(self.text_fields) not in (1, 2):
            raise ValueError(f"{where}: text_fields must name one column (a sentence) or two (a pair), got {self.text_fields}")
        if len(self.text_columns) != len(self.text_fields):
            raise ValueError(f"{where}: text_columns {self.text_columns} must match text_fields {self.text_fields} one for one")
        if len(self.label_names) < 2 or len(set(self.label_names)) != len(self.label_names):
            raise ValueError(f"{where}: label_names must name two or more distinct classes, got {self.label_names}")
        missing = [c for c in (*self.text_columns, self.label_column) if c not in self.file_columns]
        if missing:
            raise ValueError(f"{where}: column(s) {missing} are not among file_columns {self.file_columns}; "
                             "file_columns lists every column of the files, in order")
        if self.labels_in_file not in ("id", "name"):
            raise ValueError(f"{where}: labels_in_file must be 'id' (0, 1, ...) or 'name' (as in label_names), "
                             f"got {self.labels_in_file!r}")
        unknown = [m for m in self.metrics if m not in METRIC_NAMES]
        if not self.metrics or unknown:
            raise ValueError(f"{where}: unknown metric(s) {unknown or '(none given)'}; valid metrics: {', '.join(METRIC_NAMES)}")
        if "f1" in self.metrics and len(self.label_names) != 2:
            raise ValueError(f"{where}: f1 is the F1 score of label 1 of a two-class task; use accuracy or "
                             f"matthews_correlation for {len(self.label_names)} classes")
        if set(self.files) != {"train", "dev"}:
            raise ValueError(f"{where}: files must give 'train' and 'dev', got {sorted(self.files)}")

    @property
    def is_pair(self) -> bool:
        """Whether an example is a sentence pair (``[CLS] a [SEP] b [SEP]``)."""
        return len(self.text_fields) == 2

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    @property
    def main_metric(self) -> str:
        """The metric a task is judged by (the first of ``metrics``): step 2 keeps the epoch best at it."""
        return self.metrics[0]

    @property
    def display(self) -> str:
        return self.title or self.name

    def hub_source(self, split: str) -> Optional[tuple[str, str, str]]:
        """``(dataset, config, split)`` on the hub for a split, or None when the task has no hub copy."""
        return None if self.hub_config is None else (self.hub_dataset, self.hub_config, HUB_SPLITS[split])


SST2 = Task(
    name="sst2", title="SST-2", text_fields=("sentence",), label_names=("negative", "positive"),
    files={"train": "sst2/train.tsv", "dev": "sst2/dev.tsv"}, file_columns=("sentence", "label"),
    metrics=("accuracy",), hub_config="sst2",
)
MRPC = Task(
    name="mrpc", title="MRPC", text_fields=("sentence1", "sentence2"), label_names=("not_equivalent", "equivalent"),
    files={"train": "mrpc/train.tsv", "dev": "mrpc/dev.tsv"},
    file_columns=("Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"),
    text_columns=("#1 String", "#2 String"), label_column="Quality",
    metrics=("f1", "accuracy"), hub_config="mrpc",  # the paper reports F1 for MRPC
)
RTE = Task(
    name="rte", title="RTE", text_fields=("sentence1", "sentence2"), label_names=("entailment", "not_entailment"),
    files={"train": "rte/train.tsv", "dev": "rte/dev.tsv"}, file_columns=("index", "sentence1", "sentence2", "label"),
    labels_in_file="name", metrics=("accuracy",), hub_config="rte",
)
COLA = Task(
    name="cola", title="CoLA", text_fields=("sentence",), label_names=("unacceptable", "acceptable"),
    files={"train": "cola/train.tsv", "dev": "cola/dev.tsv"}, file_columns=("source", "label", "mark", "sentence"),
    header=False, metrics=("matthews_correlation",), hub_config="cola",
)

#: The tasks the course knows, by name. SST-2 is the lessons' main thread.
TASKS: dict[str, Task] = {t.name: t for t in (SST2, MRPC, RTE, COLA)}


def register_task(task: Task, replace: bool = False) -> Task:
    """Add a task of your own, so that profiles (``task="name"``) and the stages can name it."""
    if task.name in TASKS and TASKS[task.name] != task and not replace:
        raise ValueError(f"a task named {task.name!r} is already registered; choose another name "
                         "(or register_task(task, replace=True) to redefine it)")
    TASKS[task.name] = task
    return task


def get_task(task: Task | str) -> Task:
    """The task of that name (``sst2``, ``mrpc``, ``rte``, ``cola`` or one registered), or a Task as given."""
    if isinstance(task, Task):
        return task
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; valid tasks: {', '.join(TASKS)} "
                         "(add your own with tinybert_lib.tasks.register_task(Task(...)))")
    return TASKS[task]


# --------------------------------------------------------------------------------------
# Metrics (GLUE's, through scikit-learn)
# --------------------------------------------------------------------------------------


def _as_list(values: Any) -> list[int]:
    if hasattr(values, "tolist"):  # a tensor or an array
        values = values.tolist()
    return [int(v) for v in values]


def _metric(name: str, predictions: Sequence[int], labels: Sequence[int]) -> float:
    """One GLUE metric of predicted against gold label ids."""
    from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

    functions = {"accuracy": accuracy_score, "f1": f1_score, "matthews_correlation": matthews_corrcoef}
    if name not in functions:
        raise ValueError(f"unknown metric {name!r}; valid metrics: {', '.join(METRIC_NAMES)}")
    preds, gold = _as_list(predictions), _as_list(labels)
    if len(preds) != len(gold) or not gold:
        raise ValueError(f"{len(preds)} predictions for {len(gold)} labels: give one prediction per example")
    if name == "f1":
        # zero_division=0: a model that never predicts label 1 scores 0, without a warning
        return float(f1_score(gold, preds, pos_label=1, average="binary", zero_division=0))
    return float(functions[name](gold, preds))


def task_metrics(task: Task | str, predictions: Sequence[int], labels: Sequence[int]) -> dict[str, float]:
    """The task's metrics, ``{name: value}`` in the task's order (the main metric first).

    ``predictions`` and ``labels`` are label ids (lists, tensors or arrays).
    """
    task = get_task(task)
    return {name: _metric(name, predictions, labels) for name in task.metrics}

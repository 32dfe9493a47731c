"""The course pipeline as artifacts: each stage reads its inputs from one artifacts folder and
writes its output there, building any missing upstream artifact first.

Lessons: 06-13.

    artifacts/
      general_student/   stage 1: model/ (HF folder), projections.safetensors, checkpoint/, summary.json
      teacher_sst2/      fine-tuned teacher: model/, checkpoint/, summary.json
      augmented_sst2/    the augmented SST-2 training set (datasets folder), tinybert_settings.json, augment_stats.json
      task_step1/        stage 2 step 1: model/, projections.safetensors, summary.json
      task_step2/        stage 2 step 2: model/ (the final TinyBERT student), summary.json

Those are SST-2's folders, the lessons' task. Another task (the profile's ``task``, or ``--task``
on the command line) gets its own: ``teacher_mrpc/``, ``augmented_mrpc/``, ``task_step1_mrpc/``,
``task_step2_mrpc/``; the general student is the same for every task (it never sees task data).
The stages' names and folders come from one table, :mod:`~tinybert_lib.stages`.

This module alone knows folders, summaries and "done"; the training itself is
:mod:`~tinybert_lib.distill`'s. A :class:`PipelineRun` builds or reads each stage once and hands
it to the stages after it, so a headless ``python -m tinybert_lib run prediction`` loads the
teacher, the augmented set and each student once. Lessons 06-09 call the ``run_*``/``get_*``
functions below so that each lesson runs on its own, with the lesson's own models where it passes them.

Each artifact records the settings that built it (profile fields, teacher, student, data and
upstream artifacts, by fingerprint; see :mod:`~tinybert_lib.records`). A finished stage is
reused only when they match the settings asked for now; otherwise the run stops and names what
changed. ``rebuild=True`` (``--rebuild``) builds the asked-for stage again.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import json
import logging
import shutil
from pathlib import Path
from typing import Any, Callable, Optional, TypeVar

import torch
from datasets import Dataset, concatenate_datasets
from safetensors.torch import load_file, save_file
from torch import nn

from .atomic import atomic_file, atomic_folder, atomic_write_text, old_sibling, recover_folder
from .bert import Bert
from .checkpoints import dedupe_tensors
from .data import corpus_blocks, load_task
from .data_setup import check_corpus_file, is_corpus_file
from .errors import ArtifactError, reading
from .distill import StageResult, finetune_teacher, general_distill, intermediate_distill, prediction_distill
from .export import export_hf
from .lock import artifacts_lock
from .losses import layer_map, make_projections
from .profiles import Profile, get_profile
from .records import SHORT, check_reuse, fingerprint_dataset, fingerprint_tensors, profile_fields, rebuild_hint
from .runtime import is_main_process, main_process_first, pick_device, set_seed, wait_for_everyone
from .stages import AUGMENT_FIELDS, STAGES, get_stage, stage_dir  # noqa: F401  (STAGES, stage_dir: tl.pipeline's too)
from .students import build_student, load_general_student, student_from_teacher_layers
from .tasks import Task, get_task
from .teachers import check_tokenizer_files, load_teacher, read_bert_folder
from .training import FitConfig, TrainResult

log = logging.getLogger(__name__)

#: What a training stage writes in its folder (``rebuild`` removes exactly these).
STAGE_OUTPUTS = ("checkpoint", "model", "projections.safetensors", "summary.json")
# Beside the datasets files of augmented_sst2/: the settings that built the set (compared before it is
# reused, so a changed teacher or profile never reuses stale rows) and what the run did (AugmentStats).
AUGMENT_SETTINGS = "tinybert_settings.json"
AUGMENT_STATS = "augment_stats.json"
# The augmented rows' fingerprint, checked whenever the set is reused (a damaged .arrow file is refused).
AUGMENT_FINGERPRINT = "fingerprint.json"


def _verify(path: Path, recorded: Optional[str], actual: str, out: Path) -> None:
    """Refuse a reused file whose content is not the one its stage recorded."""
    if recorded is not None and recorded != actual:
        raise ArtifactError(f"{path} is not the file its stage wrote (fingerprint {actual[:SHORT]}, recorded "
                            f"{recorded[:SHORT]}): it was changed or damaged since; {rebuild_hint(out)}.")


# --- done, summaries and projections on disk ------------------------------------------------


def is_done(artifacts_dir: str | Path, stage: str, task: Task | str = "sst2") -> bool:
    """A stage is done when its last file is written: ``summary.json`` (the datasets info for augmentation)."""
    folder = stage_dir(artifacts_dir, stage, task)
    return (folder / "dataset_info.json").is_file() if stage == "augment" else (folder / "summary.json").is_file()


def summary(artifacts_dir: str | Path, stage: str, task: Task | str = "sst2") -> dict[str, Any]:
    """A finished stage's ``summary.json``: its scores, curves and the settings that built it."""
    return json.loads((stage_dir(artifacts_dir, stage, task) / "summary.json").read_text())


def _finished(out: Path, settings: dict[str, Any], what: str, rebuild: bool) -> Optional[dict[str, Any]]:
    """The summary of a finished stage in ``out`` built with ``settings`` (None: train it).

    Reads only ``summary.json`` and ``model/``, never the checkpoint, so a damaged checkpoint
    does not block a finished stage. Other recorded settings raise StaleArtifactError;
    ``rebuild`` removes what the stage wrote first.
    """
    if rebuild:
        if is_main_process():
            for name in STAGE_OUTPUTS:
                for path in (out / name, old_sibling(out / name)):
                    shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
            log.info("%s: previous outputs removed, building again", out)
        wait_for_everyone()
        return None
    # A kill between the two renames of an export parks model/ as .model.old: put it back. Every process
    # does (no barrier here: Accelerate's state must not exist before training makes it); one rename wins.
    with contextlib.suppress(OSError):
        recover_folder(out / "model")
    if not ((out / "summary.json").is_file() and (out / "model" / "model.safetensors").is_file()):
        return None
    with reading(out / "summary.json", rebuild_hint(out)):
        done = json.loads((out / "summary.json").read_text())
        if not isinstance(done, dict):
            raise ValueError("not a summary record")
    check_reuse(out, done.get("settings"), settings, what)
    return done


def _reused(out: Path, done: dict[str, Any], model: Bert, device: torch.device,
            projections: Optional[nn.ModuleList] = None) -> StageResult:
    """A finished stage's result, read into ``model`` (and ``projections``) from its folder.

    Each file is checked against the fingerprint the stage recorded, so a damaged file is refused, not reused.
    """
    check_tokenizer_files(out / "model")
    model.load_state_dict(read_bert_folder(out / "model", rebuild_hint(out)).state_dict())
    _verify(out / "model" / "model.safetensors", done.get("fingerprint"), fingerprint_tensors(model), out)
    model.to(device)
    if projections is not None:
        with reading(out / "projections.safetensors", rebuild_hint(out)):
            projections.load_state_dict(_load_projections(out / "projections.safetensors", projections).state_dict())
        _verify(out / "projections.safetensors", done.get("projections_fingerprint"),
                fingerprint_tensors(projections), out)
        projections.to(device)
    steps = int(done.get("steps", 0))
    train = TrainResult(history=done.get("history", []), evals=done.get("evals", []), steps=steps,
                        seconds=float(done.get("seconds", 0.0)), resumed_from=steps)
    log.info("%s was already finished with these settings: reusing its outputs", out)
    return StageResult(model.eval(), train, projections, metrics=dict(done.get("metrics", {})))


def _save(out: Path, stage: str, result: StageResult, extra: dict[str, Any], settings: dict[str, Any]) -> None:
    """The stage's outputs: ``model/``, its projections, then ``summary.json`` last (what "done" reads)."""
    if is_main_process():
        projections_record = ({} if result.projections is None
                              else {"projections_fingerprint": fingerprint_tensors(result.projections)})
        if stage != "prediction":  # step 2's model/ is the kept epoch, written as it was kept
            export_hf(result.model, result.model.tokenizer, out / "model")
        if result.projections is not None:
            _save_projections(result.projections, out / "projections.safetensors")
        record = {"stage": get_stage(stage).title, "steps": result.train.steps, "seconds": round(result.train.seconds, 1),
                  "metrics": result.metrics, "evals": result.train.evals, **extra,
                  "fingerprint": fingerprint_tensors(result.model), **projections_record, "settings": settings,
                  "history": result.train.history}
        atomic_write_text(out / "summary.json", json.dumps(record, indent=1))
    wait_for_everyone()


def _save_projections(projections: nn.ModuleList, path: Path) -> None:
    # A shared projection is stored once (_load_projections refills the other indices).
    tensors = {k: v.detach().cpu().contiguous() for k, v in dedupe_tensors(projections.state_dict()).items()}
    with atomic_file(path) as tmp:
        save_file(tensors, str(tmp))


def _load_projections(path: Path, like: nn.ModuleList) -> nn.ModuleList:
    tensors = load_file(str(path))
    layers, (teacher_width, student_width) = len(like), like[0].linear.weight.shape
    shared = "1.linear.weight" not in tensors and layers > 1
    projections = make_projections(student_width, teacher_width, layers - 1, shared=shared)
    full = {k: tensors[k] if k in tensors else tensors[f"0.{k.split('.', 1)[1]}"] for k in projections.state_dict()}
    projections.load_state_dict(full)
    return projections


def _reused_set(folder: Path, settings: dict[str, Any], what: str) -> Dataset:
    """A finished augmented set, after its settings and its rows' fingerprint are checked."""
    recorded = None
    if (folder / AUGMENT_SETTINGS).is_file():
        with reading(folder / AUGMENT_SETTINGS, rebuild_hint(folder)):
            recorded = json.loads((folder / AUGMENT_SETTINGS).read_text())
    check_reuse(folder, recorded, settings, what)
    for name in ("dataset_info.json", "state.json"):  # the datasets library's own records, named when damaged
        with reading(folder / name, rebuild_hint(folder)):
            json.loads((folder / name).read_text())
    with reading(folder, rebuild_hint(folder)):
        dataset = Dataset.load_from_disk(str(folder))
        actual = fingerprint_dataset(dataset)  # reads every row: a damaged .arrow file fails here
    if (folder / AUGMENT_FINGERPRINT).is_file():
        with reading(folder / AUGMENT_FINGERPRINT, rebuild_hint(folder)):
            expected = json.loads((folder / AUGMENT_FINGERPRINT).read_text())["sha256"]
        _verify(folder, expected, actual["sha256"], folder)
    return dataset


# --- what a stage's settings record holds ---------------------------------------------------


def _task_record(task: Task) -> dict[str, Any]:
    """The task, for a settings record: ``{}`` for SST-2, whose records were written before tasks
    were recorded (adding a key would make every existing SST-2 artifact stale), ``{"task": name}``
    for any other, so an artifact built for one task is never reused for another."""
    return {} if task.name == "sst2" else {"task": task.name}


def _teacher_record(model: Bert) -> dict[str, Any]:
    return {"sha256": fingerprint_tensors(model), "layers": model.config.num_hidden_layers,
            "hidden_size": model.config.hidden_size}


def _length_fields(task: Task) -> tuple[str, ...]:
    # SST-2's records hold max_seq_len_task only; a pair task records the length it really uses too.
    return ("max_seq_len_task", "max_seq_len_pair") if task.is_pair else ("max_seq_len_task",)


def _corpus_file_record(profile: Profile) -> dict[str, Any]:
    """``{"corpus_file": {"path", "sha256"}}`` when the profile's corpus is a file of one's own (the blocks'
    fingerprint covers only the blocks used), ``{}`` for WikiText, whose records were written without it."""
    if not is_corpus_file(profile.general_corpus):
        return {}
    found = check_corpus_file(profile.general_corpus)
    return {"corpus_file": {"path": str(found.path), "sha256": found.sha256}}


def _student_init_record(profile: Profile) -> dict[str, Any]:
    """``{"student_init": "teacher"}`` for a student copied from the teacher's layers, ``{}`` for a random
    one, whose records were written without it (a new key would make every existing general student stale)."""
    return {} if profile.student_init == "random" else {"student_init": profile.student_init}


def _fit_fields(profile: Profile, stage: str, *more: str) -> dict[str, Any]:
    record = profile_fields(profile, FitConfig.recorded_fields(stage) + more)
    if profile.cpu_bf16:  # recorded only when on, so the records of float32 runs stay as they were
        record["cpu_bf16"] = True
    return record


# --- one run of the pipeline ----------------------------------------------------------------

_Method = TypeVar("_Method", bound=Callable[..., Any])


def _locked(method: _Method) -> _Method:
    """Hold the artifacts folder's lock while a stage builds or reads it (one run per folder)."""

    @functools.wraps(method)
    def wrapper(self: "PipelineRun", *args: Any, **kwargs: Any) -> Any:
        try:
            if not is_main_process():  # the other processes of one distributed run share the main one's lock
                return method(self, *args, **kwargs)
            with artifacts_lock(self.artifacts):
                return method(self, *args, **kwargs)
        except KeyboardInterrupt:
            self.interrupted_in = self.interrupted_in or method.__name__  # the innermost stage: the one training
            raise

    return wrapper  # type: ignore[return-value]



class PipelineRun:
    """The stages of one profile in one artifacts folder, each built or read once per run.

    ``teacher``, ``student``, ``corpus``, ``valid`` (stage 1) and ``train`` (stage 2) are the
    lesson's own objects when it passes them; what is not given is built from the profile.
    A stage that trains a model it was handed gets a copy, so every result stays as it was built.
    """

    def __init__(self, profile: Profile | str, artifacts_dir: str | Path, device: Optional[str] = None) -> None:
        self.profile = get_profile(profile)
        self.task = get_task(self.profile.task)
        self.artifacts = Path(artifacts_dir)
        self.device_name = device
        self.device = pick_device(device or self.profile.device)
        self._results: dict[str, Any] = {}
        self.interrupted_in: Optional[str] = None  # the stage Ctrl-C stopped (the command line says how to resume)
        self._pretrained: Optional[Bert] = None

    def out(self, stage: str) -> Path:
        return stage_dir(self.artifacts, stage, self.task)

    def pretrained_teacher(self) -> Bert:
        """The profile's pre-trained teacher, loaded once (stage 1 and augmentation read it; fine-tuning copies it)."""
        if self._pretrained is None:
            self._pretrained = load_teacher(self.profile.teacher)
        return self._pretrained

    def get(self, stage: str, rebuild: bool = False) -> Any:
        """The result of ``stage``: built (with what it needs first) or read from its folder, once per run."""
        get_stage(stage)
        if rebuild or stage not in self._results:
            build = {"general": self.general, "finetune": self.finetune, "augment": self.augment,
                     "intermediate": self.intermediate, "prediction": self.prediction}[stage]
            self._results[stage] = build(rebuild=rebuild)
        return self._results[stage]

    # stage 1
    @_locked
    def general(self, rebuild: bool = False, stop_after: Optional[int] = None, teacher: Optional[Bert] = None,
                student: Optional[Bert] = None, corpus: Optional[Dataset] = None, valid: Optional[Dataset] = None) -> StageResult:
        """Stage 1: the pre-trained teacher, a fresh student, blocks of the profile's ``general_corpus``.

        The held-out loss is measured on WikiText-2's validation blocks whatever the corpus (see ``corpus_blocks``).
        A corpus file of one's own is recorded in the settings by path and sha256 (``corpus_file``).
        The student starts as the profile's ``student_init`` says: random, the teacher's layers, or (no
        training then) the saved general student in a folder (:meth:`_general_from_folder`).
        """
        p, out = self.profile, self.out("general")
        teacher = teacher if teacher is not None else self.pretrained_teacher()
        if student is not None and p.student_init != "random":
            raise ValueError(f"a student was passed in, and the profile's student_init is "
                             f"{p.student_init!r}: give one or the other (student_init='random' keeps the "
                             "student passed in).")
        if p.student_init not in ("random", "teacher"):
            return self._general_from_folder(teacher, rebuild)
        if student is None:
            set_seed(p.seed)  # the student's initial weights: the same on every run of the same profile
            student = (student_from_teacher_layers(teacher, p.student) if p.student_init == "teacher"
                       else build_student(p.student, teacher=teacher))
        if corpus is None:
            corpus = corpus_blocks(teacher.tokenizer, p.max_seq_len_general, split="train", max_blocks=p.corpus_max_blocks,
                                   corpus=p.general_corpus)
        if valid is None:
            valid = corpus_blocks(teacher.tokenizer, p.max_seq_len_general, split="valid",
                                  max_blocks=max(8, (p.corpus_max_blocks or 2000) // 10))
        mapping = layer_map(student.config.num_hidden_layers, teacher.config.num_hidden_layers)
        train_settings = {
            "stage": "general distillation", "profile": _fit_fields(p, "general"),
            # a fresh student: its config and the seed (class names change nothing that is trained)
            "teacher": _teacher_record(teacher),
            "student": {k: v for k, v in student.config.to_dict().items() if k != "label_names"},
            "projections": None, "mapping": mapping, "weights": [1.0, 1.0, 1.0], "attention_kind": "mse",
            "corpus": fingerprint_dataset(corpus), **_corpus_file_record(p), **_student_init_record(p),
        }
        settings = {**train_settings, "valid": fingerprint_dataset(valid)}
        done = _finished(out, settings, "the general student", rebuild)
        if done is not None:
            set_seed(p.seed)  # as training would: a reused stage leaves the random state where a trained one starts
            like = make_projections(student.config.hidden_size, teacher.config.hidden_size, student.config.num_hidden_layers)
            return _reused(out, done, student, self.device, like)
        result = general_distill(teacher, student, corpus, FitConfig.for_stage(p, "general"), valid=valid, device=self.device,
                                 checkpoint_dir=out / "checkpoint", settings=train_settings, stop_after=stop_after)
        _save(out, "general", result, {"mapping": mapping, "weights": [1.0, 1.0, 1.0]}, settings)
        return result

    def _general_from_folder(self, teacher: Bert, rebuild: bool = False) -> StageResult:
        """Stage 1 without training: the saved general student in the folder ``student_init`` names.

        Its projections are the ``projections.safetensors`` beside the folder (where stage 1 writes them) when
        there is one, else fresh ones from the seed. The folder and its weights' sha256 are recorded, so a
        changed source is refused like any changed setting, and the next stages see another student.
        """
        p, out = self.profile, self.out("general")
        source = Path(p.student_init).expanduser().resolve()
        student = load_general_student(source, teacher)
        set_seed(p.seed)  # fresh projections: the same on every run of the same profile
        projections = make_projections(student.config.hidden_size, teacher.config.hidden_size,
                                       student.config.num_hidden_layers)
        saved = source.parent / "projections.safetensors"
        if saved.is_file():
            with reading(saved, "it must hold this student's projections to this teacher's width (stage 1 "
                                "writes them beside model/); move it away to start from fresh projections"):
                projections = _load_projections(saved, projections)
        log.info("general student from %s (no training), with %s", source,
                 f"the projections in {saved}" if saved.is_file() else f"fresh projections (no {saved})")
        settings = {"stage": "general distillation", "teacher": _teacher_record(teacher),
                    "student_init": {"folder": str(source), "sha256": fingerprint_tensors(student)},
                    "projections": fingerprint_tensors(projections)}
        result = StageResult(student.to(self.device), TrainResult(), projections.to(self.device))
        if _finished(out, settings, "the general student", rebuild) is None:  # a copy, for the next stages
            _save(out, "general", result, {}, settings)
        return result

    # teacher
    @_locked
    def finetune(self, rebuild: bool = False, teacher: Optional[Bert] = None) -> StageResult:
        """The pre-trained teacher fine-tuned on the profile's task."""
        p, task, out = self.profile, self.task, self.out("finetune")
        teacher = teacher if teacher is not None else copy.deepcopy(self.pretrained_teacher())
        train = load_task(task, "train", limit=p.train_limit)
        dev = load_task(task, "dev", limit=p.dev_limit)
        train_settings = {
            "stage": "teacher fine-tuning",
            "profile": _fit_fields(p, "finetune", *_length_fields(task), "classifier_pooling"),
            **_task_record(task),
            "teacher": _teacher_record(teacher), "num_labels": teacher.config.num_labels or task.num_labels,
            "train": fingerprint_dataset(train),
        }
        settings = {**train_settings, "dev": fingerprint_dataset(dev)}
        done = _finished(out, settings, "the fine-tuned teacher", rebuild)
        if done is not None:
            set_seed(p.seed)  # as training would, before its fresh head
            if teacher.config.num_labels == 0:
                teacher.add_classifier(task.num_labels, pooling=p.classifier_pooling, label_names=task.label_names)
            return _reused(out, done, teacher, self.device)
        result = finetune_teacher(teacher, train, dev, task, FitConfig.for_stage(p, "finetune"),
                                  max_length=p.max_length_for(task), pooling=p.classifier_pooling, device=self.device,
                                  checkpoint_dir=out / "checkpoint", settings=train_settings)
        _save(out, "finetune", result, {"train_rows": len(train), "dev_rows": len(dev)}, settings)
        return result

    # augmentation
    @_locked
    def augment(self, rebuild: bool = False) -> Dataset:
        """The task's train set (the profile's subset) augmented with the pre-trained teacher's vocabulary.

        Each sentence of a pair is augmented in turn, the other kept (see :func:`~tinybert_lib.augment.augment`).
        The saved folder is the cache: a finished set built with the same settings is loaded instead
        (one built with others is refused). What the run did is saved beside it (:func:`augmentation_stats`).
        With several processes the main one builds the set; the others then read its copy.
        """
        from .augment import ALGORITHM_VERSION, augment

        p, task, folder = self.profile, self.task, self.out("augment")
        with main_process_first():
            train = load_task(task, "train", limit=p.train_limit)
            teacher = self.pretrained_teacher()
            settings = {"stage": "augmentation", "algorithm": ALGORITHM_VERSION, **_task_record(task),
                        "profile": profile_fields(p, AUGMENT_FIELDS),
                        "teacher": {"sha256": fingerprint_tensors(teacher)}, "train": fingerprint_dataset(train)}
            if is_main_process():
                recover_folder(folder)  # a kill between the two renames of the last save
            if not (rebuild and is_main_process()) and is_done(self.artifacts, "augment", task):
                return _reused_set(folder, settings, f"the augmented {task.display} set")
            augmented, stats = augment(train, teacher, **p.augment_settings(), device=self.device, text_column=task.text_fields)
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
                (tmp / AUGMENT_FINGERPRINT).write_text(json.dumps(fingerprint_dataset(augmented), indent=1))
            return augmented

    # stage 2
    def _task_settings(self, stage: str, teacher: Bert, student: Bert, projections: Optional[nn.ModuleList],
                       train: Dataset, dev: Dataset, extra: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """(what a checkpoint is checked against, what the finished stage is checked against)."""
        train_settings = {
            "stage": get_stage(stage).title, "profile": _fit_fields(self.profile, stage, *_length_fields(self.task)),
            **_task_record(self.task), "teacher": _teacher_record(teacher), "student": fingerprint_tensors(student),
            "projections": None if projections is None else fingerprint_tensors(projections),
            "train": fingerprint_dataset(train), **extra,
        }
        return train_settings, {**train_settings, "dev": fingerprint_dataset(dev)}

    @_locked
    def intermediate(self, rebuild: bool = False, teacher: Optional[Bert] = None, student: Optional[Bert] = None,
                     projections: Optional[nn.ModuleList] = None, train: Optional[Dataset] = None) -> StageResult:
        """Step 1 of task distillation, from the general student (a copy) and the fine-tuned teacher."""
        p, task, out = self.profile, self.task, self.out("intermediate")
        teacher = teacher if teacher is not None else self.get("finetune").model
        train = train if train is not None else self.get("augment")
        if student is None:
            general = self.get("general")
            student, projections = copy.deepcopy(general.model), copy.deepcopy(general.projections)
        dev = load_task(task, "dev", limit=p.dev_limit)
        train_settings, settings = self._task_settings("intermediate", teacher, student, projections, train, dev,
                                                       {"mapping": None, "weights": [1.0, 1.0, 1.0], "attention_kind": "mse"})
        done = _finished(out, settings, "task distillation (intermediate)", rebuild)
        if done is not None:
            set_seed(p.seed)  # as training would, before its fresh head
            if student.config.num_labels == 0:
                student.add_classifier(teacher.config.num_labels, pooling=teacher.config.classifier_pooling,
                                       label_names=teacher.config.label_names)
            if projections is None:
                projections = make_projections(student.config.hidden_size, teacher.config.hidden_size, student.config.num_hidden_layers)
            return _reused(out, done, student, self.device, projections)
        result = intermediate_distill(teacher, student, train, dev, task, FitConfig.for_stage(p, "intermediate"),
                                      max_length=p.max_length_for(task), projections=projections, device=self.device,
                                      checkpoint_dir=out / "checkpoint", settings=train_settings)
        _save(out, "intermediate", result, {"train_rows": len(train), "temperature": p.temperature}, settings)
        return result

    @_locked
    def prediction(self, rebuild: bool = False, teacher: Optional[Bert] = None, student: Optional[Bert] = None,
                   train: Optional[Dataset] = None) -> StageResult:
        """Step 2 of task distillation, from step 1's student (a copy): the final TinyBERT student."""
        p, task, out = self.profile, self.task, self.out("prediction")
        teacher = teacher if teacher is not None else self.get("finetune").model
        train = train if train is not None else self.get("augment")
        student = student if student is not None else copy.deepcopy(self.get("intermediate").model)
        dev = load_task(task, "dev", limit=p.dev_limit)
        train_settings, settings = self._task_settings("prediction", teacher, student, None, train, dev,
                                                       {"temperature": p.temperature, "keep_best_epoch": True})
        train_settings["dev"] = settings["dev"]  # the dev set picks the epoch that is kept
        done = _finished(out, settings, "task distillation (prediction)", rebuild)
        if done is not None:
            set_seed(p.seed)  # as training would
            return _reused(out, done, student, self.device)

        def save_kept(model: Bert) -> None:  # model/ always holds the kept epoch, also across a resume
            if is_main_process():
                export_hf(model, model.tokenizer, out / "model")

        result = prediction_distill(teacher, student, train, dev, task, FitConfig.for_stage(p, "prediction"),
                                    max_length=p.max_length_for(task), temperature=p.temperature, on_kept=save_kept,
                                    device=self.device, checkpoint_dir=out / "checkpoint", settings=train_settings)
        if not result.train.evals or result.train.resumed_from:  # resumed: the kept epoch may predate this process
            result.model.load_state_dict(read_bert_folder(out / "model", rebuild_hint(out)).state_dict())
        _save(out, "prediction", result, {"train_rows": len(train), "temperature": p.temperature}, settings)
        return result


# --- the lessons' entry points --------------------------------------------------------------


def run_general_distillation(profile: Profile | str, artifacts_dir: str | Path, device: Optional[str] = None,
                             stop_after: Optional[int] = None, rebuild: bool = False, *, teacher: Optional[Bert] = None,
                             student: Optional[Bert] = None, corpus: Optional[Dataset] = None,
                             valid: Optional[Dataset] = None) -> StageResult:
    """Stage 1 for a profile (lesson 06): its artifact when built with these settings, else trained.

    ``teacher``, ``student``, ``corpus`` and ``valid`` default to the profile's; ``rebuild=True`` trains again.
    """
    return PipelineRun(profile, artifacts_dir, device).general(rebuild, stop_after, teacher, student, corpus, valid)


def get_general_student(profile: Profile | str, artifacts_dir: str | Path, device: Optional[str] = None):
    """(student, projections) from stage 1: its artifact when built with these settings, else run it first."""
    if not is_done(artifacts_dir, "general"):
        log.info("no general student in %s: running general distillation (lesson 06) first", artifacts_dir)
    result = run_general_distillation(profile, artifacts_dir, device)
    return result.model, result.projections


def run_teacher_finetuning(profile: Profile | str, artifacts_dir: str | Path, device: Optional[str] = None,
                           rebuild: bool = False, *, teacher: Optional[Bert] = None) -> StageResult:
    """The pre-trained teacher (or ``teacher``) fine-tuned on the profile's task (lesson 07)."""
    return PipelineRun(profile, artifacts_dir, device).finetune(rebuild, teacher)


def get_finetuned_teacher(profile: Profile | str, artifacts_dir: str | Path, device: Optional[str] = None) -> Bert:
    """The teacher of the profile's task (SST-2 in the lessons): its artifact when built with these settings, else fine-tuned first."""
    profile = get_profile(profile)
    if not is_done(artifacts_dir, "finetune", profile.task):
        log.info("no fine-tuned teacher in %s: fine-tuning it (lesson 07) first", artifacts_dir)
    return run_teacher_finetuning(profile, artifacts_dir, device).model.eval()


def _run_augmentation(profile: Profile | str, artifacts_dir: str | Path, device: Optional[str] = None,
                      rebuild: bool = False) -> Dataset:
    """The task's augmented train set (lesson 08): see :meth:`PipelineRun.augment`."""
    return PipelineRun(profile, artifacts_dir, device).augment(rebuild)


def get_augmented(profile: Profile | str, artifacts_dir: str | Path, device: Optional[str] = None) -> Dataset:
    """The augmented train set of the profile's task: its artifact when built with these settings, else augmented first."""
    profile = get_profile(profile)
    if not is_done(artifacts_dir, "augment", profile.task):
        log.info("no augmented set in %s: running data augmentation (lesson 08) first", artifacts_dir)
    return _run_augmentation(profile, artifacts_dir, device)


get_augmented_sst2 = get_augmented  # the lessons' name, from when SST-2 was the only task


def augmentation_stats(artifacts_dir: str | Path, task: Task | str = "sst2") -> Optional[dict[str, Any]]:
    """What the run that built the task's augmented set did: :class:`~tinybert_lib.augment.AugmentStats`'
    fields plus ``unaugmented`` (rows beyond ``augment_limit``, passed through). ``None`` when not recorded."""
    path = stage_dir(artifacts_dir, "augment", task) / AUGMENT_STATS
    return json.loads(path.read_text()) if path.is_file() else None


def run_task_distillation(profile: Profile | str, artifacts_dir: str | Path, stage: str = "intermediate",
                          device: Optional[str] = None, rebuild: bool = False, *, teacher: Optional[Bert] = None,
                          student: Optional[Bert] = None, projections: Optional[nn.ModuleList] = None,
                          train: Optional[Dataset] = None) -> StageResult:
    """One step of stage 2 (lesson 09), building every missing upstream artifact first.

    ``stage``: ``"intermediate"`` (step 1) or ``"prediction"`` (step 2). ``teacher``, ``student``
    (``projections`` for step 1) and ``train`` default to the upstream stages' results; a student
    passed in is trained in place. Upstream artifacts are reused only when built with the current
    settings; ``rebuild=True`` rebuilds this step only (a stale upstream stops the run and says which one to rebuild).
    """
    run = PipelineRun(profile, artifacts_dir, device)
    if stage == "intermediate":
        return run.intermediate(rebuild, teacher, student, projections, train)
    if stage == "prediction":
        return run.prediction(rebuild, teacher, student, train)
    raise ValueError(f"unknown stage {stage!r} of task distillation: use 'intermediate' (step 1) or 'prediction' (step 2).")


def get_final_student(profile: Profile | str, artifacts_dir: str | Path, device: Optional[str] = None) -> Bert:
    """The final TinyBERT student (step 2's), built with everything it needs when missing."""
    return PipelineRun(profile, artifacts_dir, device).get("prediction").model.eval()


def run_stage(stage: str, profile: Profile | str, artifacts_dir: str | Path, device: Optional[str] = None,
              rebuild: bool = False) -> Any:
    """Run one named stage (see :data:`~tinybert_lib.stages.STAGES`); ``rebuild=True`` builds it again even if it is finished."""
    return PipelineRun(profile, artifacts_dir, device).get(stage, rebuild)

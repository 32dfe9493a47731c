"""What each part of TinyBERT is worth: baselines and ablations on one shared budget.

Lessons: 10-11.

Every variant trains the same student architecture on the same source examples (the first
``profile.ablation_examples`` rows of SST-2 train, augmented or not) with the same epochs and
seeds, and is scored on the same SST-2 dev rows. Only the named ingredient changes:

| variant | start | task data | step 1 (emb/hid/att) | step 2 |
|---|---|---|---|---|
| tinybert | general student | augmented | uniform map, all losses | soft CE vs teacher |
| no distillation (fine-tune) | random | original | — | hard-label CE |
| prediction KD only | random | original | — | soft CE vs teacher |
| w/o general distillation | random | augmented | yes | soft CE |
| general student + fine-tuning | general student | original | — | hard-label CE |
| w/o data augmentation | general student | original | yes | soft CE |
| w/o embedding / attention / hidden loss | general student | augmented | that weight 0 | soft CE |
| w/o prediction loss | general student | augmented | yes | hard-label CE |
| mapping top / bottom | general student | augmented | that mapping | soft CE |

The general student itself was distilled with the uniform mapping and all losses; the
objective and mapping ablations change stage 2 only (say so when reading the table).

Every run also records which dev sentences it got right: ``results_table`` writes them beside
``results.json`` (``results_per_sentence.json``), so that two rows, scored on the same sentences,
can be compared with a paired test (:func:`paired_table`; ``tl.evaluate.mcnemar``).
"""

from __future__ import annotations

import json
import logging
import math
import platform
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch
from datasets import Dataset

from .atomic import atomic_write_text
from .bert import Bert
from .bench import inference_latency
from .data import load_sst2, tokenize_task
from .distill import gold_label_loss, intermediate_distill, prediction_distill
from .evaluate import accuracy, correct_per_example, mcnemar  # noqa: F401 (accuracy: tests patch tl.ablations.accuracy)
from .export import export_hf
from .losses import layer_map
from .pipeline import get_augmented_sst2, get_final_student, get_finetuned_teacher, get_general_student
from .profiles import Profile, get_profile
from .runtime import pick_device, set_seed
from .students import build_student
from .tasks import Task, get_task
from .training import FitConfig, fit

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Variant:
    name: str
    general: bool = True  # start from the general student (else random init)
    augmented: bool = True  # augmented task data (else the original sentences)
    step1: bool = True  # intermediate-layer distillation
    weights: tuple[float, float, float] = (1.0, 1.0, 1.0)
    mapping: str = "uniform"
    step2: str = "soft"  # "soft": prediction distillation; "hard": cross-entropy on gold labels


VARIANTS: dict[str, Variant] = {v.name: v for v in [
    Variant("tinybert"),
    Variant("no distillation (fine-tune)", general=False, augmented=False, step1=False, step2="hard"),
    Variant("prediction KD only", general=False, augmented=False, step1=False),
    Variant("w/o general distillation", general=False),
    # BERT_TINY-style: the general student fine-tuned on labels (= "w/o task distillation")
    Variant("general student + fine-tuning", augmented=False, step1=False, step2="hard"),
    Variant("w/o data augmentation", augmented=False),
    Variant("w/o embedding loss", weights=(0.0, 1.0, 1.0)),
    Variant("w/o attention loss", weights=(1.0, 1.0, 0.0)),
    Variant("w/o hidden loss", weights=(1.0, 0.0, 1.0)),
    Variant("w/o prediction loss", step2="hard"),
    Variant("mapping: top", mapping="top"),
    Variant("mapping: bottom", mapping="bottom"),
]}
MAIN_VARIANTS = ("tinybert", "no distillation (fine-tune)", "prediction KD only", "general student + fine-tuning")

# The paper's relative figures (Table 1), labelled as theirs wherever they are shown.
PAPER = {"source": "Jiao et al. 2020, Table 1 (GLUE test; speed-up on a K80)",
         "tinybert4_vs_bert_base": {"params_ratio": 7.5, "speedup": 9.4, "glue_avg_kept": 0.968, "sst2_kept": 92.6 / 93.4}}


def _first_examples(augmented: Dataset, n: int) -> Dataset:
    """Rows of the augmented set that come from its first ``n`` source examples."""
    originals = 0
    for i, is_original in enumerate(augmented["is_original"]):
        originals += bool(is_original)
        if originals > n:
            return augmented.select(range(i))
    return augmented


def finetune_hard(student: Bert, train: Dataset, profile: Profile, epochs: int, device: torch.device,
                  task: Task | str = "sst2") -> None:
    """Plain cross-entropy on gold labels (the no-distillation and hard-label rows), at step 2's settings
    (batch, learning rate, accumulation, clipping: everything but the number of ``epochs``)."""
    tok = student.tokenizer
    task = get_task(task)
    data = tokenize_task(train, task, tok, profile.max_length_for(task))
    config = FitConfig.for_stage(profile, "prediction", epochs=epochs)
    fit(modules={"student": student}, loss_fn=gold_label_loss(student), loader_for_epoch=config.loader_for_epoch(data, tok),
        config=config, device=device, desc="fine-tuning (hard labels)")


def run_variant(variant: Variant, profile: Profile | str, artifacts_dir: str | Path, seed: int,
                device: Optional[str] = None, teacher: Optional[Bert] = None) -> dict[str, Any]:
    """Train one variant at the ablation budget; return its dev accuracy and time.

    ``teacher``: the fine-tuned teacher, when the caller already holds it (else it is loaded).
    ``dev_correct``: which dev sentences it got right, one character per sentence in dev order ("1" right,
    "0" wrong), for the paired tests (``tl.evaluate.mcnemar``).
    """
    # The shared inputs (teacher, augmented set, general student) are the profile's own artifacts, built
    # with its seed; ``seed`` changes only this variant's training: its fresh weights and batch order.
    shared = get_profile(profile)
    profile = shared.with_overrides(seed=seed, intermediate_epochs=shared.ablation_epochs,
                                    prediction_epochs=shared.ablation_epochs)
    if not variant.general:  # far from any solution: its own, larger learning rate for every step
        profile = profile.with_overrides(intermediate_lr=profile.scratch_lr, prediction_lr=profile.scratch_lr)
    elif not variant.step1 and variant.step2 == "hard" and profile.ablation_finetune_lr is not None:
        # the general student fine-tuned on the labels alone: a baseline with its own rate, as the paper tunes each
        profile = profile.with_overrides(prediction_lr=profile.ablation_finetune_lr)
    dev = pick_device(device or profile.device)
    teacher = teacher if teacher is not None else get_finetuned_teacher(shared, artifacts_dir, device)
    n = profile.ablation_examples
    originals = load_sst2("train", limit=n)
    train = _first_examples(get_augmented_sst2(shared, artifacts_dir, device), n) if variant.augmented else originals
    dev_set = load_sst2("dev", limit=profile.dev_limit)
    set_seed(seed)
    if variant.general:
        student, projections = get_general_student(shared, artifacts_dir, device)
    else:
        student, projections = build_student(profile.student, teacher=teacher), None
    start = time.perf_counter()
    length = profile.max_length_for("sst2")
    if variant.step1:
        mapping = layer_map(student.config.num_hidden_layers, teacher.config.num_hidden_layers, variant.mapping)
        student = intermediate_distill(teacher, student, train, dev_set, "sst2", FitConfig.for_stage(profile, "intermediate"),
                                       max_length=length, mapping=mapping, projections=projections,
                                       weights=variant.weights, device=dev).model
    if student.config.num_labels == 0:
        student.add_classifier(teacher.config.num_labels, pooling=teacher.config.classifier_pooling,
                               label_names=teacher.config.label_names)
    if variant.step2 == "soft":
        # the last epoch, like the hard-label rows: every row is scored on the same dev set
        student = prediction_distill(teacher, student, train, dev_set, "sst2", FitConfig.for_stage(profile, "prediction"),
                                     max_length=length, temperature=profile.temperature, keep_best_epoch=False,
                                     device=dev).model
    else:
        finetune_hard(student, train, profile, profile.ablation_epochs, dev)
    correct = correct_per_example(student, dev_set, max_length=profile.max_seq_len_task)
    acc = correct.float().mean().item()  # as tl.evaluate.accuracy computes it
    return {"variant": variant.name, "seed": seed, "accuracy": acc, "train_rows": len(train),
            "seconds": time.perf_counter() - start, "dev_correct": _bits(correct)}


def _bits(correct: torch.Tensor) -> str:
    """Per-sentence correctness as a compact string: "1" right, "0" wrong, in dev order."""
    return "".join("1" if c else "0" for c in correct.tolist())


def standard_error(values: list[float]) -> float:
    """Standard error of the mean of per-seed scores (0.0 for a single seed: no spread is known)."""
    n = len(values)
    if n < 2:
        return 0.0
    mean = sum(values) / n
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1) / n)


def _chance_corrected(accuracy: float, majority: float, teacher: float) -> float:
    """(acc - majority) / (teacher - majority): 0 for a one-class model, 1 for the teacher's accuracy."""
    return (accuracy - majority) / (teacher - majority) if teacher != majority else float("nan")


def compare(results: dict[str, Any], a: str, b: str, single_seed_sd: Optional[float] = None) -> dict[str, Any]:
    """Is variant ``a`` better or worse than ``b`` beyond seed noise?

    The difference of their mean dev accuracies and its standard error sqrt(se_a^2 + se_b^2), each
    row's se from its seeds. A row trained once has no spread of its own: give ``single_seed_sd``
    (e.g. the seed standard deviation of the main rows) to take that as its se, else nothing about
    it can be called real. ``real``: |difference| > 2 standard errors.
    """
    rows = {r["variant"].removesuffix(" (ablation budget)"): r for r in results["rows"]}
    missing = [n for n in (a, b) if n not in rows]
    if missing:
        raise KeyError(f"no row {missing} in these results; rows: {sorted(rows)}")

    def se(row: dict[str, Any]) -> Optional[float]:
        accs = row.get("accuracies", [row["accuracy"]])
        return standard_error(accs) if len(accs) > 1 else single_seed_sd

    se_a, se_b = se(rows[a]), se(rows[b])
    diff = rows[a]["accuracy"] - rows[b]["accuracy"]
    se_diff = math.sqrt(se_a ** 2 + se_b ** 2) if se_a is not None and se_b is not None else float("nan")
    return {"a": a, "b": b, "difference": diff, "se": se_diff, "seeds": (rows[a]["seeds"], rows[b]["seeds"]),
            "real": se_diff > 0 and abs(diff) > 2 * se_diff}  # False when se_diff is nan


def sweep_figure(metrics: dict[str, dict[str, float]]) -> str:
    """One line of ``scripts/sweep.py``'s record as text: the last stage's dev accuracy, else its held-out loss."""
    for stage in reversed(list(metrics)):
        m = metrics[stage]
        if "dev_accuracy" in m:
            return f"{stage}: dev accuracy {m['dev_accuracy']:.3f}"
        for key in ("valid_total", "dev_total"):
            if key in m:
                return f"{stage}: held-out distillation loss {m[key]:.2f}"
        if m:  # a figure of its own, e.g. a training loss at a given step
            key, value = next(iter(m.items()))
            return f"{stage}: {key.replace('_', ' ')} {value:.2f}"
    return "-"


def _model_figures(model: Bert, sentences: list[str], device: torch.device) -> dict[str, float]:
    """Parameters, size on disk and CPU/GPU latency of one model."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = export_hf(model, model.tokenizer, Path(tmp) / "m")
        size_mb = (folder / "model.safetensors").stat().st_size / 2**20
    model.to(device)
    b1, b32 = (inference_latency(model, sentences, bs, device=device) for bs in (1, 32))
    return {"params": model.num_parameters(), "encoder_params": model.num_parameters(encoder_only=True), "size_mb": size_mb,
            "latency_b1_ms": b1["median_ms"], "latency_b32_ms": b32["median_ms"], "throughput_b32": b32["sentences_per_s"]}


def results_table(profile: Profile | str, artifacts_dir: str | Path, variants: Optional[list[str]] = None,
                  device: Optional[str] = None, out_file: Optional[str | Path] = None) -> dict[str, Any]:
    """Run every variant (main rows over ``profile.ablation_seeds`` seeds) and write ``results.json``."""
    import transformers

    profile = get_profile(profile)
    dev = pick_device(device or profile.device)
    names = variants or list(VARIANTS)
    teacher = get_finetuned_teacher(profile, artifacts_dir, device)
    dev_set = load_sst2("dev", limit=profile.dev_limit)
    sentences = dev_set["sentence"][:32]
    rows: list[dict[str, Any]] = []

    runs: list[dict[str, Any]] = []
    for name in names:
        seeds = range(profile.seed, profile.seed + (profile.ablation_seeds if name in MAIN_VARIANTS else 1))
        runs += [run_variant(VARIANTS[name], profile, artifacts_dir, s, device, teacher) for s in seeds]

    teacher_fig = _model_figures(teacher, sentences, torch.device("cpu"))
    student_fig = _model_figures(build_student(profile.student, teacher=teacher, num_labels=teacher.config.num_labels),
                                 sentences, torch.device("cpu"))
    teacher_correct = correct_per_example(teacher, dev_set, max_length=profile.max_seq_len_task)
    teacher_acc = teacher_correct.float().mean().item()  # as tl.evaluate.accuracy computes it
    labels = dev_set["label"]
    majority = max(labels.count(c) for c in set(labels)) / len(labels)  # a one-class model's accuracy
    rows.append({"variant": "teacher (fine-tuned)", "accuracy": teacher_acc, "accuracy_std": 0.0, "seeds": 1, **teacher_fig})
    final = get_final_student(profile, artifacts_dir, device)
    final_correct = correct_per_example(final, dev_set, max_length=profile.max_seq_len_task)
    rows.append({"variant": "TinyBERT student (full run)", "accuracy": final_correct.float().mean().item(),
                 "accuracy_std": 0.0, "seeds": 1, **student_fig})
    # which dev sentences each run got right: kept apart from results.json, whose keys lesson 10 prints
    per_sentence = {
        "about": "per-sentence correctness on the dev set, one character per sentence in dev order: 1 right, 0 wrong",
        "dev_rows": len(dev_set), "labels": "".join(str(label) for label in labels),
        "runs": [{"variant": r["variant"], "seed": r["seed"], "correct": r.pop("dev_correct")} for r in runs],
        "models": {"teacher (fine-tuned)": _bits(teacher_correct), "TinyBERT student (full run)": _bits(final_correct)},
    }
    for name in names:
        accs = [r["accuracy"] for r in runs if r["variant"] == name]
        std = float(torch.tensor(accs).std()) if len(accs) > 1 else 0.0
        rows.append({"variant": name + " (ablation budget)", "accuracy": sum(accs) / len(accs), "accuracy_std": std,
                     "seeds": len(accs), "accuracies": accs, **student_fig})
    for r in rows:
        r["speedup_b1"] = teacher_fig["latency_b1_ms"] / r["latency_b1_ms"]
        r["speedup_b32"] = teacher_fig["latency_b32_ms"] / r["latency_b32_ms"]
        r["accuracy_kept"] = r["accuracy"] / teacher_acc if teacher_acc else float("nan")
        r["accuracy_se"] = standard_error(r.get("accuracies", [r["accuracy"]]))
        r["chance_corrected"] = _chance_corrected(r["accuracy"], majority, teacher_acc)
    results = {
        "profile": profile.name, "device": str(dev), "latency_device": "cpu", "torch_threads": torch.get_num_threads(),
        "versions": {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__},
        "budget": {"ablation_examples": profile.ablation_examples, "ablation_epochs": profile.ablation_epochs,
                   "seeds_main_rows": profile.ablation_seeds, "dev_rows": len(dev_set)},
        "majority": majority,
        "rows": rows, "runs": runs, "paper": PAPER,
    }
    if out_file is not None:  # the per-sentence file first: results.json, written last, says the run is complete
        atomic_write_text(_per_sentence_file(out_file), json.dumps(per_sentence, indent=1))
        atomic_write_text(out_file, json.dumps(results, indent=1))
    results["per_sentence"] = per_sentence  # as load_results gives it back
    return results


PER_SENTENCE_NAME = "results_per_sentence.json"


def _per_sentence_file(results_file: str | Path) -> Path:
    return Path(results_file).with_name(PER_SENTENCE_NAME)


def _per_sentence_problem(results: dict[str, Any], per_sentence: dict[str, Any]) -> Optional[str]:
    """Why a per-sentence record does not belong to these results (None when it does)."""
    dev_rows = results.get("budget", {}).get("dev_rows", per_sentence.get("dev_rows"))
    if per_sentence.get("dev_rows") != dev_rows:
        return f"it scores {per_sentence.get('dev_rows')} dev sentences, results.json {dev_rows}"
    recorded = {(r["variant"], r["seed"]): r["correct"] for r in per_sentence.get("runs", [])}
    for run in results.get("runs", []):
        correct = recorded.get((run["variant"], run["seed"]))
        if correct is None:
            continue
        if len(correct) != dev_rows or abs(correct.count("1") / len(correct) - run["accuracy"]) > 1e-6:
            return f"{run['variant']!r} seed {run['seed']} does not have the accuracy results.json records"
    return None


def load_results(results_file: str | Path) -> dict[str, Any]:
    """Read a ``results.json`` written by :func:`results_table`, with each run's per-sentence correctness.

    The correctness lives beside it, in ``results_per_sentence.json``, and comes back as
    ``results["per_sentence"]`` (as :func:`results_table` returns it). Records written before it was kept have
    no such file; they load all the same, and :func:`paired_table` then says "not recorded". A file that does
    not match this ``results.json`` (another run's) is ignored, with a warning.
    """
    results = json.loads(Path(results_file).read_text(encoding="utf-8"))
    side = _per_sentence_file(results_file)
    if side.is_file():
        per_sentence = json.loads(side.read_text(encoding="utf-8"))
        problem = _per_sentence_problem(results, per_sentence)
        if problem is None:
            results["per_sentence"] = per_sentence
        else:
            log.warning("ignoring %s: it belongs to another run (%s)", side, problem)
    return results


def paired_table(results: dict[str, Any], reference: str = "tinybert", single_seed_sd: Optional[float] = None,
                 alpha: float = 0.05) -> list[dict[str, Any]]:
    """Every ablation-budget row against ``reference``: the spread over seeds and the paired test, side by side.

    One dict per row (``pd.DataFrame(paired_table(results))`` shows them), with
    - ``seeds``, ``accuracy`` (mean over seeds) and ``se`` (its standard error over seeds; None for one seed);
    - ``difference`` (row - reference, means over all their seeds), ``se_difference`` and ``beyond_2_se``: the
      seed yardstick of :func:`compare` (``single_seed_sd`` as there; nan and False where no spread is known);
    - the paired test, **per matched seed**: the row's run with seed s against the reference's run with the
      same seed s, by McNemar's exact test on the dev sentences (``tl.evaluate.mcnemar``). ``matched_seeds``
      lists them, ``p_values`` gives one p-value per matched seed, ``row_only_right`` / ``reference_only_right``
      the discordant sentences summed over them, and ``p_value`` is the **largest** of the per-seed p-values:
      the test rejects only if every matched seed does. The seeds' tests are not pooled into one, because every
      seed is scored on the same sentences: pooled, a hard sentence would count once per seed, as if it were
      new evidence each time; the largest p-value is valid however the seeds' results depend on each other.
    - ``decisive``: the paired test rejects at level ``alpha`` on every matched seed, all in the same
      direction, *and* the difference is beyond 2 seed standard errors. The paired test says these trained
      models differ beyond what the choice of dev sentences explains; the seed spread, that retraining keeps
      the order. ``verdict`` says which of them holds, or "not recorded" for rows whose runs kept no
      per-sentence correctness (records written before it was kept; ``p_value`` is then None).
    """
    names = [r["variant"].removesuffix(" (ablation budget)") for r in results["rows"]
             if r["variant"].endswith(" (ablation budget)")]
    if reference not in names:
        raise KeyError(f"no row {reference!r} at the ablation budget in these results; rows: {names}")
    recorded = {(r["variant"], r["seed"]): r["correct"] for r in (results.get("per_sentence") or {}).get("runs", [])}
    seeds_of = {name: [r["seed"] for r in results.get("runs", []) if r["variant"] == name] for name in names}
    rows = {r["variant"].removesuffix(" (ablation budget)"): r for r in results["rows"]}
    table = []
    for name in names:
        if name == reference:
            continue
        row, c = rows[name], compare(results, name, reference, single_seed_sd=single_seed_sd)
        accs = row.get("accuracies", [row["accuracy"]])
        matched = [s for s in seeds_of[name] if s in seeds_of[reference]
                   and (name, s) in recorded and (reference, s) in recorded]
        tests = [mcnemar(recorded[(name, s)], recorded[(reference, s)]) for s in matched]
        entry = {"variant": name, "seeds": row["seeds"], "accuracy": row["accuracy"],
                 "se": standard_error(accs) if len(accs) > 1 else None,
                 "difference": c["difference"], "se_difference": c["se"], "beyond_2_se": c["real"],
                 "matched_seeds": matched, "row_only_right": sum(t[0] for t in tests),
                 "reference_only_right": sum(t[1] for t in tests), "p_values": [t[2] for t in tests],
                 "p_value": max((t[2] for t in tests), default=None)}
        if not tests:
            verdict, decisive = "not recorded", False
        else:
            directions = {(t[0] > t[1]) - (t[0] < t[1]) for t in tests}
            paired = entry["p_value"] < alpha and len(directions) == 1 and 0 not in directions
            decisive = paired and c["real"]
            if decisive:
                verdict = "decisive: beyond the dev set's noise and the seeds'"
            elif paired and math.isnan(c["se"]):
                verdict = "the paired test separates them; no seed spread measured"
            elif paired:
                verdict = "the paired test separates them, but within 2 seed standard errors"
            elif entry["p_value"] < alpha:
                verdict = "the direction changes with the seed"
            else:
                verdict = f"not distinguishable on these dev sentences (p = {entry['p_value']:.2g})"
        table.append({**entry, "decisive": decisive, "verdict": verdict})
    return table

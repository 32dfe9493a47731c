"""Benchmarks that print figures: distillation-step throughput and inference latency.

``python -m tinybert_lib.bench`` (``make bench``) measures, on the same teacher, student and
SST-2 batches, in one run:

- the course's distillation step (teacher in eval mode under ``no_grad``, dynamic padding with
  length-grouped batches, raw attention scores from the course model) against a *naive* step
  written the common way (teacher and student inside one ``nn.Module``, the teacher tracking
  gradients, every batch padded to the maximum length, ``transformers`` models with
  ``output_attentions=True``): tokens/s, sequences/s, and peak memory, each variant measured in
  its own process so one's memory does not hide the other's;
- inference latency of teacher vs student at batch 1 and batch 32 (median of repeated runs after
  warm-up) and throughput in sentences/s.

Nothing here is asserted in a test: timings depend on the machine; they are printed.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from torch import nn

from .bert import Bert
from .data import load_sst2
from .losses import layer_map, make_projections
from .runtime import keep_freed_memory


def sst2_sentence_batches(n_batches: int, batch_size: int, seed: int = 0) -> list[list[str]]:
    """``n_batches`` random batches of SST-2 train sentences (the same for every variant)."""
    train = load_sst2("train")
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(train), generator=g)[: n_batches * batch_size].tolist()
    sentences = train.select(idx)["sentence"]
    return [sentences[i * batch_size:(i + 1) * batch_size] for i in range(n_batches)]


def length_grouped(batches: list[list[str]], tokenizer) -> list[list[str]]:
    """Re-group the same sentences so each batch holds similar lengths (what the course loader does)."""
    flat = [s for b in batches for s in b]
    flat.sort(key=lambda s: len(tokenizer.tokenize(s)))
    size = len(batches[0])
    return [flat[i:i + size] for i in range(0, len(flat), size)]


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _timed(step: Callable[[list[str]], int], batches: list[list[str]], warmup: int, device: torch.device) -> dict[str, float]:
    for b in batches[:warmup]:
        step(b)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    tokens, seqs, start = 0, 0, time.perf_counter()
    for b in batches[warmup:]:
        tokens += step(b)
        seqs += len(b)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    secs = time.perf_counter() - start
    return {"seconds": secs, "tokens_per_s": tokens / secs, "sequences_per_s": seqs / secs,
            "peak_memory_mb": _peak_memory_mb(device)}


# --- the two distillation steps -------------------------------------------------------------


def course_step(teacher: Bert, student: Bert, max_length: int, device: torch.device, lr: float = 1e-4,
                max_grad_norm: float = 1.0) -> Callable[[list[str]], int]:
    """One course distillation step (Transformer-layer losses) on a list of sentences.

    The step of the pipeline's stages: ``distill.layer_distillation_loss`` for the loss and
    ``training.training_step`` (the body of ``fit``) with ``fit``'s optimiser, at a constant
    learning rate ``lr``. Returns a function that takes sentences and gives their real token count.
    """
    from .distill import layer_distillation_loss
    from .training import TrainStep, make_accelerator, make_optimizer, training_step

    mapping = layer_map(student.config.num_hidden_layers, teacher.config.num_hidden_layers)
    projections = make_projections(student.config.hidden_size, teacher.config.hidden_size, student.config.num_hidden_layers).to(device)
    teacher.eval()
    student.train()
    modules = {"student": student, "projections": projections}
    accelerator = make_accelerator(device)
    optimizer = make_optimizer(modules.values(), lr, weight_decay=0.01)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    loss_fn = layer_distillation_loss(teacher, student, mapping, projections)
    train_step, optimizer, scheduler = accelerator.prepare(TrainStep(modules, loss_fn), optimizer, scheduler)
    params = [p for g in optimizer.param_groups for p in g["params"]]
    tok = teacher.tokenizer
    if device.type == "cpu":
        keep_freed_memory()  # as fit does

    def step(sentences: list[str]) -> int:
        batch = dict(tok(sentences, padding=True, truncation=True, max_length=max_length, return_tensors="pt").to(device))
        training_step(accelerator, train_step, batch, optimizer, scheduler, params, max_grad_norm)
        return int(batch["attention_mask"].sum())

    return step


class NaiveDistiller(nn.Module):
    """The common write-up: teacher inside the trained module, tracking gradients."""

    def __init__(self, teacher_folder: str, student_folder: str) -> None:
        super().__init__()
        from transformers import BertModel

        self.teacher = BertModel.from_pretrained(teacher_folder, attn_implementation="eager")
        self.student = BertModel.from_pretrained(student_folder, attn_implementation="eager")
        self.proj = nn.Linear(self.student.config.hidden_size, self.teacher.config.hidden_size)
        self.mapping = layer_map(self.student.config.num_hidden_layers, self.teacher.config.num_hidden_layers)

    def forward(self, **batch: torch.Tensor) -> torch.Tensor:
        t = self.teacher(**batch, output_hidden_states=True, output_attentions=True)  # grads tracked
        s = self.student(**batch, output_hidden_states=True, output_attentions=True)
        mse = nn.functional.mse_loss
        loss = mse(self.proj(s.hidden_states[0]), t.hidden_states[0])
        for m, g in enumerate(self.mapping, start=1):
            loss = loss + mse(self.proj(s.hidden_states[m]), t.hidden_states[g]) + mse(s.attentions[m - 1], t.attentions[g - 1])
        return loss


def naive_step(teacher_folder: str, student_folder: str, tokenizer, max_length: int, device: torch.device) -> Callable[[list[str]], int]:
    model = NaiveDistiller(teacher_folder, student_folder).to(device).train()
    opt = torch.optim.AdamW([p for n, p in model.named_parameters() if not n.startswith("teacher.")], lr=1e-4)

    def step(sentences: list[str]) -> int:
        batch = tokenizer(sentences, padding="max_length", truncation=True, max_length=max_length, return_tensors="pt").to(device)
        loss = model(**batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return int(batch["attention_mask"].sum())  # count real tokens for both variants

    return step


# --- inference latency ----------------------------------------------------------------------


@torch.no_grad()
def inference_latency(model: Bert, sentences: list[str], batch_size: int, repeats: int = 20, warmup: int = 3,
                      max_length: int = 64, device: Optional[torch.device] = None) -> dict[str, float]:
    """Median latency (ms) of one forward pass on ``batch_size`` sentences, and sentences/s."""
    device = device or next(model.parameters()).device
    model.eval()
    batch = model.tokenizer(sentences[:batch_size], padding=True, truncation=True, max_length=max_length, return_tensors="pt").to(device)
    times = []
    for i in range(warmup + repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        model(**batch)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i >= warmup:
            times.append(time.perf_counter() - start)
    median = statistics.median(times)
    return {"batch_size": batch_size, "median_ms": median * 1000, "sentences_per_s": batch_size / median}


# --- command line ---------------------------------------------------------------------------


def _variant_main(args: argparse.Namespace) -> int:
    """Run one variant in this process and print its figures as JSON (used by the parent run)."""
    from .students import build_student
    from .teachers import load_teacher, resolve_teacher_folder

    torch.manual_seed(0)
    device = torch.device(args.device)
    teacher = load_teacher(args.teacher).to(device)
    batches = sst2_sentence_batches(args.batches + args.warmup, args.batch_size)
    if args.variant == "course":
        student = build_student(args.student, teacher=teacher).to(device)
        step = course_step(teacher, student, args.max_length, device)
        batches = length_grouped(batches, teacher.tokenizer)
    else:
        step = naive_step(str(resolve_teacher_folder(args.teacher)), args.student_folder, teacher.tokenizer, args.max_length, device)
        del teacher
    print(json.dumps(_timed(step, batches, args.warmup, device)))
    return 0


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tinybert_lib.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--teacher", default="minilm")
    parser.add_argument("--student", default="minilm-3l-192d")
    parser.add_argument("--batches", type=int, default=10, help="timed distillation steps per variant")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--variant", choices=["course", "naive"], help=argparse.SUPPRESS)
    parser.add_argument("--student-folder", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.variant:
        return _variant_main(args)

    from .export import export_hf
    from .students import build_student
    from .teachers import load_teacher

    device = torch.device(args.device)
    teacher = load_teacher(args.teacher).to(device)
    torch.manual_seed(0)
    student = build_student(args.student, teacher=teacher).to(device)
    results: dict[str, Any] = {"device": str(device), "torch_threads": torch.get_num_threads(),
                               "batch_size": args.batch_size, "max_length": args.max_length}
    with tempfile.TemporaryDirectory() as tmp:
        student_folder = export_hf(student, teacher.tokenizer, Path(tmp) / "student")
        common = [sys.executable, "-m", "tinybert_lib.bench", "--teacher", args.teacher, "--student", args.student,
                  "--batches", str(args.batches), "--warmup", str(args.warmup), "--batch-size", str(args.batch_size),
                  "--max-length", str(args.max_length), "--device", args.device, "--student-folder", str(student_folder)]
        for variant in ("course", "naive"):
            out = subprocess.run(common + ["--variant", variant], capture_output=True, text=True, check=True).stdout
            results[variant] = json.loads(out.strip().splitlines()[-1])
    c, n = results["course"], results["naive"]
    results["speedup_tokens_per_s"] = c["tokens_per_s"] / n["tokens_per_s"]
    results["memory_ratio_naive_over_course"] = n["peak_memory_mb"] / c["peak_memory_mb"]

    sentences = [s for b in sst2_sentence_batches(1, 32, seed=1) for s in b]
    results["latency"] = {name: [inference_latency(m, sentences, bs, device=device) for bs in (1, 32)]
                          for name, m in (("teacher", teacher), ("student", student))}

    print(f"distillation step, {args.batches} batches of {args.batch_size} SST-2 sentences on {device}:")
    print(f"  {'variant':<8} {'tokens/s':>10} {'seqs/s':>8} {'peak MB':>9}")
    for name in ("course", "naive"):
        r = results[name]
        print(f"  {name:<8} {r['tokens_per_s']:>10.0f} {r['sequences_per_s']:>8.1f} {r['peak_memory_mb']:>9.0f}")
    print(f"  course / naive throughput: {results['speedup_tokens_per_s']:.2f}x; "
          f"naive / course peak memory: {results['memory_ratio_naive_over_course']:.2f}x")
    print("inference latency (median) and throughput:")
    for name, rows in results["latency"].items():
        for r in rows:
            print(f"  {name:<8} batch {r['batch_size']:>2}: {r['median_ms']:8.1f} ms  {r['sentences_per_s']:8.1f} sentences/s")
    t1, s1 = results["latency"]["teacher"][0]["median_ms"], results["latency"]["student"][0]["median_ms"]
    t32, s32 = results["latency"]["teacher"][1]["median_ms"], results["latency"]["student"][1]["median_ms"]
    print(f"  student speed-up vs teacher: {t1 / s1:.1f}x at batch 1, {t32 / s32:.1f}x at batch 32")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

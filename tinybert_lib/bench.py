"""Benchmarks that print figures: distillation-step throughput, what a step costs, inference latency.

Lessons: 06, 11 (what a step costs; the naive step); ``make bench`` itself is tooling, not taught.

``python -m tinybert_lib.bench`` (``make bench``) measures, on the same teacher, student and
SST-2 batches, in one run:

- the course's distillation step (``course_step``: the loss closure and training step that
  ``fit`` runs in the pipeline's stages) against TextBrewer 0.2.1's ``GeneralDistiller``
  configured alike (when it is installed: ``make bench-peer``) and against a *naive* step
  written the common way (teacher and student inside one ``nn.Module``, the teacher tracking
  gradients, every batch padded to the maximum length, ``transformers`` models with
  ``output_attentions=True``): sequences/s on random batches and on the same sentences
  length-grouped, and peak memory. Each variant runs in its own process; the parent hands
  every batch to each of them in turn, one at a time (lockstep), so each variant has the cores
  to itself and the ratios survive a varying machine load;
- inference latency of teacher vs student at batch 1 and batch 32 (median of repeated runs after
  warm-up) and throughput in sentences/s.

``profile_step`` / ``profile_table`` and ``matmul_gflops`` say where the time of one step goes
(lesson 06). Nothing here is asserted in a test: timings depend on the machine; they are printed.
"""

from __future__ import annotations

import argparse
import json
import os
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

from .atomic import atomic_write_text
from .bert import Bert
from .data import load_sst2
from .losses import layer_map, make_projections
from .runtime import keep_freed_memory, native_cpu_bf16


def sst2_sentence_batches(n_batches: int, batch_size: int, seed: int = 0) -> list[list[str]]:
    """``n_batches`` random batches of SST-2 train sentences (the same for every variant)."""
    train = load_sst2("train")
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(train), generator=g)[: n_batches * batch_size].tolist()
    sentences = train.select(idx)["sentence"]
    return [sentences[i * batch_size:(i + 1) * batch_size] for i in range(n_batches)]


def _length_grouped(batches: list[list[str]], tokenizer) -> list[list[str]]:
    """Re-group the same sentences so each batch holds similar lengths (what the course loader does)."""
    flat = [s for b in batches for s in b]
    flat.sort(key=lambda s: len(tokenizer.tokenize(s)))
    size = len(batches[0])
    return [flat[i:i + size] for i in range(0, len(flat), size)]


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


# --- the two distillation steps -------------------------------------------------------------


def course_step(teacher: Bert, student: Bert, max_length: int, device: torch.device, lr: float = 1e-4,
                max_grad_norm: float = 1.0, cpu_bf16: bool = False) -> Callable[[list[str]], int]:
    """One course distillation step (Transformer-layer losses) on a list of sentences.

    The step of the pipeline's stages: ``distill.layer_distillation_loss`` for the loss and
    ``training.training_step`` (the body of ``fit``) with ``fit``'s optimiser, at a constant
    learning rate ``lr``; ``cpu_bf16`` as a profile's (bf16 autocast on a CPU with native bf16).
    Returns a function that takes sentences and gives their real token count; its ``precision``
    is what the step computes in (Accelerate's ``mixed_precision``: ``"no"``, ``"bf16"``, ``"fp16"``).
    """
    from .distill import layer_distillation_loss
    from .training import TrainStep, make_accelerator, make_optimizer, training_step

    mapping = layer_map(student.config.num_hidden_layers, teacher.config.num_hidden_layers)
    projections = make_projections(student.config.hidden_size, teacher.config.hidden_size, student.config.num_hidden_layers).to(device)
    teacher.eval()
    student.train()
    modules = {"student": student, "projections": projections}
    accelerator = make_accelerator(device, cpu_bf16=cpu_bf16)
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

    step.precision = accelerator.mixed_precision  # decided once, by make_accelerator
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


# --- what a step costs ----------------------------------------------------------------------

PHASES = ("teacher forward", "student forward", "losses", "backward", "optimizer")


def matmul_gflops(shapes: Optional[list[tuple[int, int, int]]] = None, tokens: int = 32 * 14, repeats: int = 20,
                  dtype: torch.dtype = torch.float32) -> dict[str, float]:
    """This machine's matrix-product rate (GFLOP/s, in ``dtype``: float32, or bf16) at the shapes of a distillation step.

    ``shapes``: (M, K, N) products, by default those of the default teacher (384 wide, 1536 in
    the feed-forward block) and student (192, 768) on ``tokens`` rows (32 SST-2 sentences of
    about 14 tokens). Returns the rate of each shape (``"MxKxN"``) and, under ``"all"``, the
    rate over all of them together: the most a step made of these products could reach.
    """
    shapes = shapes or [(tokens, 384, 384), (tokens, 384, 1536), (tokens, 1536, 384),
                        (tokens, 192, 192), (tokens, 192, 768), (tokens, 768, 192), (tokens, 192, 384)]
    out, total_flops, total_s = {}, 0.0, 0.0
    for m, k, n in shapes:
        a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
        for _ in range(3):  # warm-up: thread pool, caches
            a @ b
        start = time.perf_counter()
        for _ in range(repeats):
            a @ b
        secs = (time.perf_counter() - start) / repeats
        out[f"{m}x{k}x{n}"] = 2 * m * k * n / secs / 1e9
        total_flops, total_s = total_flops + 2 * m * k * n, total_s + secs
    out["all"] = total_flops / total_s / 1e9
    return out


def profile_step(teacher: Bert, student: Bert, sentences: Optional[list[list[str]]] = None, *, max_length: int = 64,
                 steps: int = 5, warmup: int = 2, top: int = 10, device: Optional[torch.device] = None,
                 cpu_bf16: bool = False) -> dict[str, Any]:
    """Where the time of the course's distillation step goes, measured with ``torch.profiler``.

    Runs ``warmup`` then ``steps`` steps of ``course_step`` (the step ``fit`` runs in the
    pipeline's stages) on ``sentences`` (batches of sentences; default: random SST-2 batches of
    32), training ``student``, in float32 or, with ``cpu_bf16`` on a CPU with native bf16, under
    bf16 autocast. Returns:

    - ``ms_per_step``, ``sequences_per_s``: wall-clock time of the profiled steps;
    - ``phases``: ms per step in each of ``PHASES`` (teacher forward, student forward, losses,
      backward, optimizer) and ``other`` (tokenising, the loop's own work);
    - ``top_ops``: the ``top`` operators by time spent in them, ``(name, ms per step, calls per step)``;
    - ``gflop_per_step`` (matrix products, counted by ``estimate.step_flops`` at each batch's
      padded length) and ``achieved_gflops`` = those FLOPs / time, to set beside ``matmul_gflops()``.

    The profiler adds a little time of its own, so ``sequences_per_s`` is slightly below ``make bench``'s.
    """
    from torch.profiler import ProfilerActivity, profile

    from .estimate import step_flops

    device = device or next(student.parameters()).device
    batches = sentences or sst2_sentence_batches(warmup + steps, 32)
    if len(batches) < warmup + steps:
        raise ValueError(f"profile_step needs warmup + steps = {warmup + steps} batches, got {len(batches)}")
    step = course_step(teacher, student, max_length, device, cpu_bf16=cpu_bf16)
    for b in batches[:warmup]:
        step(b)
    timed = batches[warmup:warmup + steps]
    start = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for b in timed:
            step(b)
    seconds = time.perf_counter() - start
    events = prof.key_averages()
    ms = {e.key: e.cpu_time_total / 1000 / steps for e in events}
    phases = {name: ms.get(name, 0.0) for name in PHASES}
    phases["other"] = max(seconds * 1000 / steps - sum(phases.values()), 0.0)
    ops = sorted((e for e in events if e.key not in PHASES and not e.key.startswith(("ProfilerStep", "Optimizer."))),
                 key=lambda e: e.self_cpu_time_total, reverse=True)[:top]
    lengths = [teacher.tokenizer(b, padding=True, truncation=True, max_length=max_length, return_tensors="pt")["input_ids"].shape
               for b in timed]
    flops = sum(step_flops(teacher.config, student.config, n, t, "general") for n, t in lengths)
    return {
        "ms_per_step": seconds * 1000 / steps,
        "sequences_per_s": sum(len(b) for b in timed) / seconds,
        "phases": phases,
        "top_ops": [(e.key, e.self_cpu_time_total / 1000 / steps, e.count / steps) for e in ops],
        "gflop_per_step": flops / steps / 1e9,
        "achieved_gflops": flops / seconds / 1e9,
        "threads": torch.get_num_threads(),
        "precision": "float32" if step.precision == "no" else step.precision,
    }


def profile_table(result: dict[str, Any]) -> str:
    """``profile_step``'s result as a few lines of text, for a lesson to print."""
    total = result["ms_per_step"]
    lines = [f"one step: {total:.0f} ms ({result['sequences_per_s']:.1f} sequences/s, {result['threads']} threads, "
             f"{result.get('precision', 'float32')}); "
             f"{result['gflop_per_step']:.1f} GFLOP of matrix products -> {result['achieved_gflops']:.0f} GFLOP/s achieved",
             f"  {'phase':<18}{'ms/step':>9}{'share':>8}"]
    lines += [f"  {name:<18}{v:>9.1f}{v / total:>8.0%}" for name, v in result["phases"].items()]
    lines.append(f"  {'operator':<32}{'ms/step':>9}{'calls/step':>12}")
    lines += [f"  {name:<32}{v:>9.1f}{calls:>12.0f}" for name, v, calls in result["top_ops"]]
    return "\n".join(lines)


# --- the peer: TextBrewer -----------------------------------------------------------------


def _textbrewer_missing() -> Optional[str]:
    """None when TextBrewer (``pip install .[bench]``) can be imported, else why not."""
    try:
        import textbrewer  # noqa: F401
    except Exception as err:  # ImportError, or one of its own imports failing
        return f"{type(err).__name__}: {err}"
    return None


def _textbrewer_distiller(teacher: Bert, student: Bert, device: torch.device, out_dir: str):
    """TextBrewer's ``GeneralDistiller`` configured as the course's step, and its optimiser.

    The same models, layer mapping and losses: hidden-state MSE through one linear projection
    per mapped layer (embeddings included) and MSE of the raw attention scores, both over real
    tokens only (TextBrewer's ``hidden_mse`` / ``attention_mse`` with ``inputs_mask``); AdamW
    at the same learning rate and weight decay, written as its documentation does.
    """
    from textbrewer import DistillationConfig, GeneralDistiller, TrainingConfig

    mapping = layer_map(student.config.num_hidden_layers, teacher.config.num_hidden_layers)
    widths = [student.config.hidden_size, teacher.config.hidden_size]
    matches = [{"layer_T": 0, "layer_S": 0, "feature": "hidden", "loss": "hidden_mse", "weight": 1, "proj": ["linear", *widths]}]
    for m, g in enumerate(mapping, start=1):
        matches.append({"layer_T": g, "layer_S": m, "feature": "hidden", "loss": "hidden_mse", "weight": 1, "proj": ["linear", *widths]})
        matches.append({"layer_T": g - 1, "layer_S": m - 1, "feature": "attention", "loss": "attention_mse", "weight": 1})

    def adaptor(batch: dict[str, torch.Tensor], out: Any) -> dict[str, Any]:
        return {"hidden": out.hidden_states, "attention": out.attention_scores, "inputs_mask": batch["attention_mask"]}

    teacher.eval()
    student.train()
    train_config = TrainingConfig(device=str(device), output_dir=out_dir, log_dir=out_dir)
    distiller = GeneralDistiller(train_config, DistillationConfig(intermediate_matches=matches), teacher, student, adaptor, adaptor)
    decay = [p for p in student.parameters() if p.ndim >= 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01},
                                   {"params": [p for p in student.parameters() if p.ndim < 2], "weight_decay": 0.0}], lr=1e-4)
    return distiller, optimizer


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


# --- command line: every variant in its own process, driven in lockstep ---------------------
#
# Each variant (course, textbrewer, naive) runs in a worker process of its own (its own memory
# peak, its own process-wide settings), and the parent hands the same batch to each worker in
# turn, waiting for one to finish before the next starts: only one variant computes at a time, so
# each has every core its threads ask for, and batch i of every variant runs within seconds of the
# others, so a change in the machine's load reaches all variants alike.


class _Commands:
    """The worker's batches, one per command line on stdin: ``run MODE I`` or ``quit``.

    Iterated by the worker's own loop (TextBrewer's ``train``, or a plain ``for``): when the
    loop asks for the next batch, the previous one is finished, and its seconds go to stdout.
    """

    def __init__(self, batches: dict[str, list[list[str]]], device: torch.device) -> None:
        self.batches, self.device, self.started = batches, device, None

    def __len__(self) -> int:
        return sum(len(b) for b in self.batches.values())

    def __iter__(self):
        while True:
            if self.started is not None:
                if self.device.type == "cuda":
                    torch.cuda.synchronize(self.device)
                print(f"BENCH {time.perf_counter() - self.started:.6f}", flush=True)
            line = sys.stdin.readline().split()
            if not line or line[0] == "quit":
                return
            batch = self.batches[line[1]][int(line[2])]
            self.started = time.perf_counter()
            yield batch


def _variant_main(args: argparse.Namespace) -> int:
    """A worker: build one variant, then run the batches the parent names (see ``_Commands``)."""
    from .teachers import load_teacher, resolve_teacher_folder

    torch.manual_seed(0)
    device = torch.device(args.device)
    teacher = load_teacher(args.teacher).to(device)
    tok = teacher.tokenizer
    commands = _Commands(_bench_batches(args, tok), device)
    student = Bert.from_folder(args.student_folder).to(device)  # the same initial weights for every variant
    if args.variant == "textbrewer":
        with tempfile.TemporaryDirectory() as tmp:
            distiller, optimizer = _textbrewer_distiller(teacher, student, device, tmp)
            tokenize = lambda sentences: dict(tok(sentences, padding=True, truncation=True, max_length=args.max_length,  # noqa: E731
                                                  return_tensors="pt"))
            distiller.train(optimizer, commands, num_epochs=1, max_grad_norm=1.0, batch_postprocessor=tokenize)
    else:
        if args.variant in ("course", "course-bf16"):
            step = course_step(teacher, student, args.max_length, device, cpu_bf16=args.variant == "course-bf16")
        else:
            step = naive_step(str(resolve_teacher_folder(args.teacher)), args.student_folder, tok, args.max_length, device)
            del teacher
        for sentences in commands:
            step(sentences)
    print(f"BENCH {_peak_memory_mb(device):.1f}", flush=True)  # peak memory, MB
    return 0


def _bench_batches(args: argparse.Namespace, tokenizer) -> dict[str, list[list[str]]]:
    """The same batches in every process: random ones, and the same sentences length-grouped."""
    batches = sst2_sentence_batches(args.batches + args.warmup, args.batch_size)
    grouped = _length_grouped(batches, tokenizer)
    order = torch.randperm(len(grouped), generator=torch.Generator().manual_seed(1)).tolist()
    return {"random": batches, "grouped": [grouped[i] for i in order]}  # grouped batches in a random order, as the sampler gives


class _Worker:
    def __init__(self, command: list[str], log: Path) -> None:
        self.log = log  # progress bars and warnings go there, not to the table
        with open(log, "w") as err:
            self.proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True, bufsize=1)

    def run(self, mode: str, i: int) -> float:
        """Run batch ``i`` of ``mode`` and wait for it: its seconds (the worker then waits for the next)."""
        self.proc.stdin.write(f"run {mode} {i}\n")
        self.proc.stdin.flush()
        return float(self._line())

    def finish(self) -> float:
        """Stop the worker; its peak memory."""
        self.proc.stdin.write("quit\n")
        self.proc.stdin.flush()
        memory = float(self._line())
        self.proc.wait()
        return memory

    def _line(self) -> str:
        """The worker's next figure (lines without the BENCH tag are a library's own output)."""
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"benchmark worker {self.proc.args[-1]!r} stopped (exit code {self.proc.wait()}); "
                                   f"its messages are in {self.log}")
            if line.startswith("BENCH "):
                return line.split()[1]


def _compare_steps(args: argparse.Namespace, student_folder: str, variants: list[str], log_dir: Path) -> dict[str, Any]:
    """Seconds per batch of each variant on the same batches, run in lockstep (see above)."""
    common = [sys.executable, "-m", "tinybert_lib.bench", "--teacher", args.teacher, "--student", args.student,
              "--batches", str(args.batches), "--warmup", str(args.warmup), "--batch-size", str(args.batch_size),
              "--max-length", str(args.max_length), "--device", args.device, "--student-folder", student_folder,
              "--threads", str(torch.get_num_threads())]
    workers = {v: _Worker(common + ["--variant", v], log_dir / f"{v}.log") for v in variants}
    n = args.batches + args.warmup
    seconds = {v: {"random": [], "grouped": []} for v in variants}
    plan = [(mode, i) for mode in ("random", "grouped") for i in range(n)]
    for k, (mode, i) in enumerate(plan):
        order = variants[k % len(variants):] + variants[:k % len(variants)]  # who goes first rotates
        for v in order:
            seconds[v][mode].append(workers[v].run(mode, i))
    results: dict[str, Any] = {}
    for v, w in workers.items():
        results[v] = {"peak_memory_mb": w.finish()}
        for mode in ("random", "grouped"):
            timed = sum(seconds[v][mode][args.warmup:])
            results[v][mode] = {"seconds": timed, "sequences_per_s": args.batches * args.batch_size / timed}
    return results


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tinybert_lib.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--teacher", default="minilm")
    parser.add_argument("--student", default="minilm-3l-192d")
    parser.add_argument("--batches", type=int, default=12, help="timed distillation steps per variant and batch order")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, help="torch threads in each variant's process (default: torch's)")
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--variant", choices=["course", "course-bf16", "textbrewer", "naive"], help=argparse.SUPPRESS)
    parser.add_argument("--student-folder", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
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
                               "batch_size": args.batch_size, "max_length": args.max_length, "batches": args.batches}
    variants = ["course", "textbrewer", "naive"]
    missing = _textbrewer_missing()
    if missing:
        print(f"TextBrewer not importable ({missing}): skipped; `pip install .[bench]` adds it.")
        variants.remove("textbrewer")
    if device.type == "cpu" and native_cpu_bf16():  # the step a profile with cpu_bf16 runs on this CPU
        variants.insert(1, "course-bf16")
    peers = [v for v in variants if not v.startswith("course")]
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        student_folder = export_hf(student, teacher.tokenizer, Path(tmp) / "student")
        results.update(_compare_steps(args, str(student_folder), variants, Path(tmp)))
    results["load_average"] = {"before": load_before, "after": os.getloadavg()}
    courses = [v for v in variants if v.startswith("course")]
    for course in courses:
        for peer in peers:
            for mode in ("random", "grouped"):
                results[f"{course}_over_{peer}_{mode}"] = (results[course][mode]["sequences_per_s"]
                                                           / results[peer][mode]["sequences_per_s"])
            # the course's own loader against the random batches a plain DataLoader gives
            results[f"{course}_grouped_over_{peer}_random"] = (results[course]["grouped"]["sequences_per_s"]
                                                               / results[peer]["random"]["sequences_per_s"])
        results[f"{course}_grouped_over_random"] = (results[course]["grouped"]["sequences_per_s"]
                                                    / results[course]["random"]["sequences_per_s"])

    sentences = [s for b in sst2_sentence_batches(1, 32, seed=1) for s in b]
    results["latency"] = {name: [inference_latency(m, sentences, bs, device=device) for bs in (1, 32)]
                          for name, m in (("teacher", teacher), ("student", student))}

    print(f"distillation step, {args.batches} batches of {args.batch_size} SST-2 sentences on {device} "
          f"({results['torch_threads']} threads), every variant on the same batches, in lockstep:")
    print(f"  {'variant':<11} {'random seqs/s':>14} {'grouped seqs/s':>15} {'peak MB':>9}")
    for name in variants:
        r = results[name]
        print(f"  {name:<11} {r['random']['sequences_per_s']:>14.1f} {r['grouped']['sequences_per_s']:>15.1f} {r['peak_memory_mb']:>9.0f}")
    for course in courses:
        for peer in peers:
            print(f"  {course} / {peer}: {results[f'{course}_over_{peer}_random']:.2f}x on random batches, "
                  f"{results[f'{course}_over_{peer}_grouped']:.2f}x length-grouped")
        print(f"  {course} length-grouped: {results[f'{course}_grouped_over_random']:.2f}x its own random batches"
              + "".join(f", {results[f'{course}_grouped_over_{p}_random']:.2f}x {p} on random batches" for p in peers))
    print(f"  load average (1, 5, 15 min) before {', '.join(f'{x:.2f}' for x in load_before)}, "
          f"after {', '.join(f'{x:.2f}' for x in results['load_average']['after'])}")
    print("inference latency (median) and throughput:")
    for name, rows in results["latency"].items():
        for r in rows:
            print(f"  {name:<8} batch {r['batch_size']:>2}: {r['median_ms']:8.1f} ms  {r['sentences_per_s']:8.1f} sentences/s")
    t1, s1 = results["latency"]["teacher"][0]["median_ms"], results["latency"]["student"][0]["median_ms"]
    t32, s32 = results["latency"]["teacher"][1]["median_ms"], results["latency"]["student"][1]["median_ms"]
    print(f"  student speed-up vs teacher: {t1 / s1:.1f}x at batch 1, {t32 / s32:.1f}x at batch 32")
    if args.json:
        atomic_write_text(args.json, json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

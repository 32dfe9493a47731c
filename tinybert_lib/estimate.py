"""How long would a stage take on a GPU? An estimate from counted FLOPs, not a measurement.

Lessons: 06; ``python -m tinybert_lib.estimate`` itself is tooling, not taught.

``step_flops`` counts the floating-point operations of one training step of a stage (the
teacher's forward pass, the student's forward and backward passes, the projections and the
losses) with ``torch.utils.flop_counter`` on the ``meta`` device: no weights, no data, no GPU
needed, so a laptop can size a BERT-base run. Only matrix products are counted (they are
nearly all the work); element-wise operations, data loading and evaluation are not.

``stage_estimates`` turns that into hours per stage for a profile, given the sustained
throughput of a GPU (FLOP/s actually achieved, well below the data-sheet peak) and the
shortest time a step can take: small SST-2 batches (32 rows of ~14 tokens) are too little
work to fill a large GPU, so their steps cost a roughly fixed time (kernel launches, the
optimiser) whatever their FLOPs.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass, replace
from typing import Optional

import torch
from torch.utils.flop_counter import FlopCounterMode

from .bert import Bert, BertConfig
from .data import SST2_FILES, general_corpus_lines
from .data_setup import EXPECTED_ROWS
from .losses import layer_map, make_projections, prediction_loss, transformer_loss
from .profiles import Profile, get_profile
from .students import STUDENT_PRESETS
from .stages import TRAINING_STAGES
from .training import FitConfig

# Shapes of teachers the profiles name (weights are not needed to count FLOPs).
TEACHER_CONFIGS: dict[str, BertConfig] = {
    "minilm": BertConfig(hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536),
    "bert-base-uncased": BertConfig(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
}
# Rows each stage reads per epoch (counted on this course's data; see README "Scaling up").
WIKITEXT2_BLOCKS_128 = 16_959  # corpus_blocks(..., 128) over all of WikiText-2 train
# WikiText-103 train is not in the data folder, so its blocks are scaled from WikiText-2's by word count:
# 103,227,021 against 2,088,628 words (Merity et al. 2016, Table 1, both counting one end-of-line token per
# line; the WikiText-2 figure re-counted on the course's copy), 16,959 x 49.42 = 838,171 blocks. A slight
# underestimate: WikiText-103 writes out rare words that WikiText-2 replaces by <unk> (one WordPiece).
WIKITEXT2_TRAIN_WORDS = 2_088_628
WIKITEXT103_TRAIN_WORDS = 103_227_021
WIKITEXT103_BLOCKS_128 = round(WIKITEXT2_BLOCKS_128 * WIKITEXT103_TRAIN_WORDS / WIKITEXT2_TRAIN_WORDS)
CORPUS_BLOCKS_128: dict[str, int] = {"wikitext-2": WIKITEXT2_BLOCKS_128, "wikitext-103": WIKITEXT103_BLOCKS_128}
SST2_TRAIN_ROWS = EXPECTED_ROWS[SST2_FILES["train"]]
SST2_MEAN_TOKENS = 13.3  # mean tokens per SST-2 train row, [CLS] and [SEP] included (uncased WordPiece)


def general_blocks(profile: Profile | str) -> int:
    """Blocks per epoch of ``profile``'s general distillation: its block limit, else all of its corpus.

    Assumes WikiText-103 is had when the profile names it (offline, a run falls back to WikiText-2).
    """
    p = get_profile(profile)
    return p.corpus_max_blocks or _corpus_blocks_128(p.general_corpus) * 128 // p.max_seq_len_general


def _corpus_blocks_128(corpus: str) -> int:
    """Blocks of 128 tokens in ``corpus``; a file of one's own: scaled from WikiText-2's by word count."""
    if corpus in CORPUS_BLOCKS_128:
        return CORPUS_BLOCKS_128[corpus]
    words = sum(len(document.split()) for document in general_corpus_lines(corpus))
    return round(WIKITEXT2_BLOCKS_128 * words / WIKITEXT2_TRAIN_WORDS)


def step_flops(teacher_cfg: BertConfig, student_cfg: BertConfig, batch_size: int, seq_len: int, stage: str) -> float:
    """FLOPs of one training step of ``stage`` (``general``, ``intermediate``, ``prediction``, ``finetune``)."""
    if stage not in TRAINING_STAGES:
        raise ValueError(f"unknown stage {stage!r}: use {', '.join(TRAINING_STAGES)}")
    with torch.device("meta"):
        teacher = Bert(replace(teacher_cfg, num_labels=0 if stage == "general" else 2))
        student = Bert(replace(student_cfg, vocab_size=teacher_cfg.vocab_size, num_labels=2 if stage == "prediction" else 0))
        ids = torch.zeros(batch_size, seq_len, dtype=torch.long)
        mask = torch.ones(batch_size, seq_len, dtype=torch.long)
        projections = make_projections(student_cfg.hidden_size, teacher_cfg.hidden_size, student_cfg.num_hidden_layers)
        with FlopCounterMode(display=False) as counter:
            if stage == "finetune":
                logits = teacher(input_ids=ids, attention_mask=mask).logits
                torch.nn.functional.cross_entropy(logits, torch.zeros(batch_size, dtype=torch.long)).backward()
            else:
                with torch.no_grad():
                    t = teacher(input_ids=ids, attention_mask=mask)
                s = student(input_ids=ids, attention_mask=mask)
                if stage == "prediction":
                    loss = prediction_loss(s.logits, t.logits, 1.0)
                else:
                    mapping = layer_map(student_cfg.num_hidden_layers, teacher_cfg.num_hidden_layers)
                    loss = transformer_loss(s, t, mapping, projections, attention_mask=mask)["total"]
                loss.backward()
    return float(counter.get_total_flops())


@dataclass
class StageEstimate:
    stage: str
    steps: int
    batch_size: int
    seq_len: float
    flops_per_step: float
    hours: float


def stage_estimates(profile: Profile | str, sustained_tflops: float, min_step_seconds: float = 0.0,
                    augmented_rows: Optional[int] = None) -> list[StageEstimate]:
    """Hours per stage of ``profile`` at ``sustained_tflops`` (10^12 FLOP/s actually achieved).

    A step takes ``max(FLOPs / throughput, min_step_seconds)``.
    ``augmented_rows`` defaults to the paper's bound, N_a + 1 rows per augmented training row
    (rows beyond ``augment_limit`` pass through once).
    SST-2 steps use the mean row length (length-grouped batches waste ~4% on padding).
    """
    p = get_profile(profile)
    teacher_cfg = TEACHER_CONFIGS.get(p.teacher)
    if teacher_cfg is None:
        raise ValueError(f"no shape known for teacher {p.teacher!r}; known: {', '.join(TEACHER_CONFIGS)}")
    student_cfg = STUDENT_PRESETS[p.student]
    sst2_rows = p.train_limit or SST2_TRAIN_ROWS
    augmented = min(sst2_rows, p.augment_limit or sst2_rows)
    aug_rows = augmented_rows or augmented * (p.augment_n + 1) + sst2_rows - augmented
    sst2_len = min(p.max_seq_len_task, SST2_MEAN_TOKENS * 1.04)
    plan = [  # stage, rows per epoch, length
        ("general", general_blocks(p), p.max_seq_len_general),
        ("finetune", sst2_rows, sst2_len),
        ("intermediate", aug_rows, sst2_len),
        ("prediction", aug_rows, sst2_len),
    ]
    out = []
    for stage, rows, length in plan:
        config = FitConfig.for_stage(p, stage)  # the epochs and batch size the stage trains with
        batch = config.batch_size
        steps = math.ceil(rows / batch) * config.epochs
        # FLOPs grow (almost) linearly with tokens; count at a whole length and scale.
        whole = max(1, math.ceil(length))
        flops = step_flops(teacher_cfg, student_cfg, batch, whole, stage) * length / whole
        out.append(StageEstimate(stage, steps, batch, round(length, 1), flops, steps * max(flops / (sustained_tflops * 1e12), min_step_seconds) / 3600))
    return out


def _corpus_note(profile: Profile | str) -> str:
    """One line: the general-distillation corpus the estimate assumes, and its blocks per epoch."""
    p = get_profile(profile)
    blocks = general_blocks(p)
    if p.corpus_max_blocks:
        return f"general distillation: the first {blocks:,} blocks of {p.general_corpus} (the profile's limit)"
    how = ("counted" if p.general_corpus == "wikitext-2"
           else f"scaled from WikiText-2's {WIKITEXT2_BLOCKS_128:,} by word count"
           + ("; offline, a run falls back to WikiText-2" if p.general_corpus == "wikitext-103" else ""))
    return f"general distillation: all of {p.general_corpus}, {blocks:,} blocks of {p.max_seq_len_general} tokens ({how})"


def _hms(hours: float) -> str:
    seconds = round(hours * 3600)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def main(argv: list[str] | None = None) -> int:
    """``python -m tinybert_lib.estimate --profile gpu --tflops 150``: an estimate table."""
    parser = argparse.ArgumentParser(prog="python -m tinybert_lib.estimate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="gpu")
    parser.add_argument("--tflops", type=float, required=True, help="sustained throughput of the GPU, 10^12 FLOP/s")
    parser.add_argument("--min-step-seconds", type=float, default=0.0, help="floor on the time of one step")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    rows = stage_estimates(args.profile, args.tflops, args.min_step_seconds)
    if args.json:
        print(json.dumps([r.__dict__ for r in rows], indent=1))
        return 0
    print(f"ESTIMATE for profile {args.profile!r} at {args.tflops:g} TFLOP/s sustained, at least "
          f"{args.min_step_seconds:g} s per step (FLOPs of matrix products only; not a measurement)")
    print(_corpus_note(args.profile))
    print(f"{'stage':<14}{'steps':>9}{'batch':>7}{'length':>8}{'TFLOP/step':>12}{'h:mm:ss':>10}")
    for r in rows:
        print(f"{r.stage:<14}{r.steps:>9,}{r.batch_size:>7}{r.seq_len:>8}{r.flops_per_step / 1e12:>12.3f}{_hms(r.hours):>10}")
    print(f"{'total':<14}{'':>36}{_hms(sum(r.hours for r in rows)):>10}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

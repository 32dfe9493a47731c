"""A smoke-sized general distillation, run by ``tests/test_accelerate.py``.

Started plainly (one process) or under ``accelerate launch --cpu --num_processes 2``; the code
path is the library's own stage 1 (``pipeline.run_general_distillation``). Dropout is off so that one process and two
processes on the same global batch must give the same weights. Each process records the
blocks its student was trained on and, at each optimiser step, the gradients the optimiser
applies (the sum and norm of each parameter's) in ``seen_<rank>_<attempt>.json``; the main
process writes the final weights (``student.safetensors``) and the loss history (``history.json``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch.optim.optimizer import register_optimizer_step_pre_hook

from tinybert_lib import build_student, load_teacher
from tinybert_lib.data import corpus_blocks
from tinybert_lib.pipeline import run_general_distillation, stage_dir
from tinybert_lib.profiles import get_profile
from tinybert_lib.runtime import is_main_process, process_index, set_seed, world_size
from tinybert_lib.students import _student_config
from tinybert_lib.training import Interrupted


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True, help="folder for the run (checkpoint, records)")
    parser.add_argument("--blocks", type=int, default=32)
    parser.add_argument("--batch", type=int, default=8, help="global batch size (all processes together)")
    parser.add_argument("--block-size", type=int, default=32)
    parser.add_argument("--stop-after", type=int, default=None)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    profile = get_profile("smoke", general_batch_size=args.batch, general_epochs=1, general_lr=1e-3,
                          warmup_ratio=0.0, log_every=1)
    teacher = load_teacher("minilm")
    set_seed(profile.seed)  # the same initial student in every process
    cfg = _student_config("minilm-3l-192d", teacher)
    cfg.hidden_dropout_prob = cfg.attention_probs_dropout_prob = 0.0
    student = build_student(cfg, teacher=teacher)
    corpus = corpus_blocks(teacher.tokenizer, args.block_size, split="train", max_blocks=args.blocks)

    seen: list[list[int]] = []
    forward = student.forward

    def recording_forward(*a, **kw):
        if student.training:
            seen.extend(kw["input_ids"].tolist())
        return forward(*a, **kw)

    student.forward = recording_forward
    grads: list[list[float]] = []  # per step: the sum and the norm of each parameter's gradient, one after the other

    def record_gradients(optimizer: torch.optim.Optimizer, args: tuple, kwargs: dict) -> None:
        params = [p for group in optimizer.param_groups for p in group["params"]]
        grads.append([float(f(p.grad.double())) if p.grad is not None else 0.0 for p in params
                      for f in (torch.sum, torch.linalg.vector_norm)])

    hook = register_optimizer_step_pre_hook(record_gradients)  # every optimiser: the one fit makes
    status = "finished"
    try:
        result = run_general_distillation(profile, out / "stage", "cpu", args.stop_after, teacher=teacher, student=student,
                                          corpus=corpus, valid=corpus)
        print(f"trained {result.train.steps} steps in {result.train.seconds:.1f} s on {world_size()} process(es)",
              file=sys.stderr)
    except Interrupted:
        status = "interrupted"
    hook.remove()
    attempt = len(list(out.glob(f"seen_{process_index()}_*.json")))
    record = {"world_size": world_size(), "rows": seen, "grads": grads}
    (out / f"seen_{process_index()}_{attempt}.json").write_text(json.dumps(record))
    if is_main_process() and status == "finished":
        save_file({k: v.detach().contiguous() for k, v in student.state_dict().items()}, str(out / "student.safetensors"))
        state = json.loads((stage_dir(out / "stage", "general") / "checkpoint" / "state.json").read_text())
        (out / "history.json").write_text(json.dumps(state["history"]))
    print(f"process {process_index()} of {world_size()}: {status}, {len(seen)} rows", file=sys.stderr)
    return 0


if __name__ == "__main__":
    if world_size() > 1:
        torch.set_num_threads(1)  # two processes on a 2-core machine
    raise SystemExit(main())

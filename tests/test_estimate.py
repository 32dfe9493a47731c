"""FLOP counting for the GPU estimate: checked against the textbook count for a BERT layer stack."""

from __future__ import annotations

import pytest

from tinybert_lib import get_profile
from tinybert_lib.estimate import TEACHER_CONFIGS, stage_estimates, step_flops
from tinybert_lib.students import STUDENT_PRESETS


def _textbook_forward_flops(cfg, tokens: int, seq: int) -> float:
    """2 FLOPs per multiply-add: Q, K, V, output and the two FFN matrices, plus QK^T and PV."""
    h, f, layers = cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers
    per_token = 2 * (4 * h * h + 2 * h * f) + 2 * 2 * seq * h
    return layers * per_token * tokens


def test_fine_tuning_step_is_three_forward_passes():
    cfg = TEACHER_CONFIGS["minilm"]
    batch, seq = 4, 16
    counted = step_flops(cfg, STUDENT_PRESETS["minilm-3l-192d"], batch, seq, "finetune")
    forward = _textbook_forward_flops(cfg, batch * seq, seq)
    # backward = 2x forward, except the embedding lookup's gradient (no matrix product)
    assert counted == pytest.approx(3 * forward, rel=0.02)


def test_distillation_step_counts_teacher_forward_and_student_training():
    t, s = TEACHER_CONFIGS["minilm"], STUDENT_PRESETS["minilm-3l-192d"]
    batch, seq = 4, 16
    counted = step_flops(t, s, batch, seq, "general")
    expected = _textbook_forward_flops(t, batch * seq, seq) + 3 * _textbook_forward_flops(s, batch * seq, seq)
    assert counted > expected  # plus the projections W_h / W_e and their gradients
    assert counted == pytest.approx(expected, rel=0.1)


def test_stage_estimates_follow_the_profile():
    rows = {r.stage: r for r in stage_estimates("cpu", sustained_tflops=0.1)}
    assert rows["general"].steps == 530 and rows["general"].batch_size == 32  # 16,959 blocks / 32
    assert rows["finetune"].steps == 2105  # all 67,349 SST-2 rows, one epoch
    cpu = get_profile("cpu")  # both steps read the same augmented rows
    assert rows["prediction"].steps * cpu.intermediate_epochs == rows["intermediate"].steps * cpu.prediction_epochs
    floor = {r.stage: r for r in stage_estimates("cpu", sustained_tflops=1e6, min_step_seconds=0.5)}
    assert floor["finetune"].hours == pytest.approx(2105 * 0.5 / 3600)
    with pytest.raises(ValueError, match="unknown stage"):
        step_flops(TEACHER_CONFIGS["minilm"], STUDENT_PRESETS["minilm-3l-192d"], 1, 4, "pretrain")

"""The optimised distillation step gives the numbers of the plain one (within float rounding).

Each optimisation of issue #13 is checked against a reference written the straightforward way:
the masked MSE against masked copies + subtraction + square, the fused AdamW against torch's
plain AdamW, the truncated teacher against a full forward pass, and whole training steps
(loss, gradients, weights) against a step spelled out with those references.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tinybert_lib.bert import Bert, BertConfig
from tinybert_lib.distill import layer_distillation_loss
from tinybert_lib.losses import attention_loss, hidden_loss, layer_map, make_projections
from tinybert_lib.training import TrainStep, make_accelerator, make_optimizer, training_step


def rel_err(got: torch.Tensor, ref: torch.Tensor) -> float:
    """max |got - ref| / max |ref|: an error relative to the scale of the reference."""
    return float((got - ref).abs().max() / ref.abs().max().clamp_min(1e-30))


def reference_masked_mse(s: torch.Tensor, t: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """The loss before the change: masked copies of both tensors, subtract, square, mean over kept entries."""
    keep = keep.expand_as(s)
    diff = s.masked_fill(~keep, 0.0) - t.masked_fill(~keep, 0.0)
    return diff.pow(2).sum() / keep.sum().clamp_min(1)


def _mask(batch: int, length: int, lengths: list[int]) -> torch.Tensor:
    return (torch.arange(length)[None, :] < torch.tensor(lengths)[:, None]).long()


@pytest.mark.parametrize("lengths", [[7, 3, 5, 1], [7, 7, 7, 7], [7, 0, 2, 7]])
def test_attention_mse_matches_masked_copies(lengths):
    g = torch.Generator().manual_seed(0)
    s = torch.randn(4, 3, 7, 7, generator=g, requires_grad=True)
    t = torch.randn(4, 3, 7, 7, generator=g)
    mask = _mask(4, 7, lengths)
    m = mask.bool()
    got = attention_loss(s, t, mask)
    (got_grad,) = torch.autograd.grad(got, s)
    ref = reference_masked_mse(s, t, m[:, None, :, None] & m[:, None, None, :])
    (ref_grad,) = torch.autograd.grad(ref, s)
    assert abs(float(got.detach() - ref.detach())) / float(ref.detach()) < 1e-6
    assert rel_err(got_grad, ref_grad) < 1e-6


@pytest.mark.parametrize("lengths", [[5, 2, 4], [5, 5, 5]])
def test_hidden_mse_matches_masked_copies_and_reaches_a_teacher_that_asks(lengths):
    g = torch.Generator().manual_seed(1)
    s = torch.randn(3, 5, 6, generator=g, requires_grad=True)
    t = torch.randn(3, 5, 6, generator=g, requires_grad=True)
    mask = _mask(3, 5, lengths)
    got = hidden_loss(s, t, None, attention_mask=mask)
    got_grads = torch.autograd.grad(got, (s, t))
    ref = reference_masked_mse(s, t, mask.bool()[:, :, None])
    ref_grads = torch.autograd.grad(ref, (s, t))
    assert abs(float(got.detach() - ref.detach())) / float(ref.detach()) < 1e-6
    for a, b in zip(got_grads, ref_grads):
        assert rel_err(a, b) < 1e-6


def test_fused_optimizer_matches_plain_adamw():
    torch.manual_seed(0)
    fused_model = nn.Sequential(nn.Embedding(50, 8), nn.Linear(8, 4), nn.LayerNorm(4))
    plain_model = nn.Sequential(nn.Embedding(50, 8), nn.Linear(8, 4), nn.LayerNorm(4))
    plain_model.load_state_dict(fused_model.state_dict())
    fused = make_optimizer([fused_model], lr=1e-2, weight_decay=0.01)
    assert all(g["fused"] for g in fused.param_groups)
    groups = [{"params": [p for p in plain_model.parameters() if p.ndim >= 2], "weight_decay": 0.01},
              {"params": [p for p in plain_model.parameters() if p.ndim < 2], "weight_decay": 0.0}]
    plain = torch.optim.AdamW(groups, lr=1e-2)
    ids = torch.randint(0, 50, (6, 5))
    for _ in range(5):
        for model, opt in ((fused_model, fused), (plain_model, plain)):
            model(ids).pow(2).mean().backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
    for a, b in zip(fused_model.parameters(), plain_model.parameters()):
        assert rel_err(a.detach(), b.detach()) < 1e-5


def _tiny_pair(seed: int = 0) -> tuple[Bert, Bert]:
    torch.manual_seed(seed)
    common = dict(vocab_size=60, num_attention_heads=4, max_position_embeddings=32,
                  hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)  # no dropout: comparable steps
    teacher = Bert(BertConfig(hidden_size=16, num_hidden_layers=4, intermediate_size=32, num_labels=2, **common)).eval()
    student = Bert(BertConfig(hidden_size=8, num_hidden_layers=2, intermediate_size=16, **common))
    return teacher, student


def _prepared_step(teacher: Bert, student: Bert, mapping: list[int], projections: nn.ModuleList, lr: float,
                   cpu_bf16: bool = False):
    """What fit prepares for the course's step: accelerator, step module, optimiser, constant schedule, parameters."""
    modules = {"student": student, "projections": projections}
    accelerator = make_accelerator(torch.device("cpu"), cpu_bf16=cpu_bf16)
    optimizer = make_optimizer(modules.values(), lr=lr, weight_decay=0.01)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    step, optimizer, scheduler = accelerator.prepare(
        TrainStep(modules, layer_distillation_loss(teacher, student, mapping, projections)), optimizer, scheduler)
    return accelerator, step, optimizer, scheduler, [p for g in optimizer.param_groups for p in g["params"]]


def test_truncated_teacher_gives_the_first_layers_of_a_full_pass():
    teacher, _ = _tiny_pair()
    ids = torch.randint(1, 60, (3, 9))
    mask = _mask(3, 9, [9, 4, 6])
    full = teacher(input_ids=ids, attention_mask=mask)
    part = teacher(input_ids=ids, attention_mask=mask, num_layers=2)
    assert len(part.hidden_states) == 3 and len(part.attention_scores) == 2 and part.logits is None
    for a, b in zip(part.hidden_states + part.attention_scores, full.hidden_states[:3] + full.attention_scores[:2]):
        assert torch.equal(a, b)


@pytest.mark.parametrize("mapping_kind", ["uniform", "bottom"])
def test_training_steps_match_a_plain_reference(mapping_kind):
    """Three steps of the course's step (loss closure + fit's body) against a plain re-implementation."""
    teacher, student = _tiny_pair()
    ref_student = Bert(student.config)
    ref_student.load_state_dict(student.state_dict())
    mapping = layer_map(2, 4, mapping_kind)
    projections = make_projections(8, 16, 2)
    ref_projections = make_projections(8, 16, 2)
    ref_projections.load_state_dict(projections.state_dict())

    accelerator, step, optimizer, scheduler, params = _prepared_step(teacher, student, mapping, projections, lr=1e-2)

    ref_params = list(ref_student.parameters()) + list(ref_projections.parameters())
    ref_opt = torch.optim.AdamW([{"params": [p for p in ref_params if p.ndim >= 2], "weight_decay": 0.01},
                                 {"params": [p for p in ref_params if p.ndim < 2], "weight_decay": 0.0}], lr=1e-2)

    def reference_loss(batch: dict[str, torch.Tensor]) -> torch.Tensor:
        with torch.no_grad():
            t = teacher(**batch)  # the whole teacher, head included
        s = ref_student(**batch)
        m = batch["attention_mask"].bool()
        loss = reference_masked_mse(ref_projections[0](s.hidden_states[0]), t.hidden_states[0], m[:, :, None])
        for i, g in enumerate(mapping, start=1):
            loss = loss + reference_masked_mse(ref_projections[i](s.hidden_states[i]), t.hidden_states[g], m[:, :, None])
            loss = loss + reference_masked_mse(s.attention_scores[i - 1], t.attention_scores[g - 1],
                                               m[:, None, :, None] & m[:, None, None, :])
        return loss

    g = torch.Generator().manual_seed(3)
    for lengths in ([9, 4, 6], [9, 9, 9], [2, 9, 5]):
        batch = {"input_ids": torch.randint(1, 60, (3, 9), generator=g), "attention_mask": _mask(3, 9, lengths),
                 "token_type_ids": torch.zeros(3, 9, dtype=torch.long)}
        got = training_step(accelerator, step, batch, optimizer, scheduler, params, max_grad_norm=1.0)["total"]
        ref = reference_loss(batch)
        ref.backward()
        torch.nn.utils.clip_grad_norm_(ref_params, 1.0)
        ref_opt.step()
        ref_opt.zero_grad(set_to_none=True)
        assert abs(float(got.detach()) - float(ref.detach())) / float(ref.detach()) < 1e-5
    for a, b in zip(list(student.parameters()) + list(projections.parameters()), ref_params):
        assert rel_err(a.detach(), b.detach()) < 1e-4


def test_teacher_on_real_tokens_only_matches_the_padded_pass_where_it_counts():
    teacher, _ = _tiny_pair()
    ids = torch.randint(1, 60, (4, 9))
    mask = _mask(4, 9, [9, 2, 5, 1])
    m = mask.bool()
    with torch.no_grad():
        full = teacher(input_ids=ids, attention_mask=mask, num_layers=3)
        fast = teacher(input_ids=ids, attention_mask=mask, num_layers=3, skip_padding=True)
    pairs = m[:, None, :, None] & m[:, None, None, :]
    for a, b in zip(full.hidden_states, fast.hidden_states):
        assert rel_err(b[m], a[m]) < 1e-5
    for a, b in zip(full.attention_scores, fast.attention_scores):
        assert rel_err(b.masked_select(pairs), a.masked_select(pairs)) < 1e-5
    for kind in ("mse", "kl"):  # the masked losses cannot tell the two passes apart
        s = Bert(BertConfig(vocab_size=60, hidden_size=16, num_hidden_layers=2, num_attention_heads=4,
                            intermediate_size=32, max_position_embeddings=32))(input_ids=ids, attention_mask=mask)
        from tinybert_lib.losses import transformer_loss

        got = transformer_loss(s, fast, [1, 3], None, attention_mask=mask, attention_kind=kind)["total"]
        ref = transformer_loss(s, full, [1, 3], None, attention_mask=mask, attention_kind=kind)["total"]
        assert abs(float(got.detach()) - float(ref.detach())) / float(ref.detach()) < 1e-5


def test_profile_step_reports_phases_operators_and_rates(teacher, sentences):
    from tinybert_lib.bench import PHASES, matmul_gflops, profile_step, profile_table
    from tinybert_lib.students import build_student

    student = build_student("minilm-3l-192d", teacher=teacher)
    result = profile_step(teacher, student, [sentences, sentences], steps=1, warmup=1, top=3)
    assert set(result["phases"]) == set(PHASES) | {"other"}
    assert result["phases"]["teacher forward"] > 0 and result["phases"]["optimizer"] > 0
    assert len(result["top_ops"]) == 3 and result["gflop_per_step"] > 0 and result["achieved_gflops"] > 0
    assert "teacher forward" in profile_table(result)
    rates = matmul_gflops([(8, 16, 4)], repeats=2)
    assert set(rates) == {"8x16x4", "all"} and rates["all"] > 0
    assert matmul_gflops([(8, 16, 4)], repeats=2, dtype=torch.bfloat16)["all"] > 0
    bf16 = profile_step(teacher, student, [sentences, sentences], steps=1, warmup=1, top=3, cpu_bf16=True)
    from tinybert_lib.runtime import native_cpu_bf16

    assert bf16["precision"] == ("bf16" if native_cpu_bf16() else "float32")
    assert bf16["precision"] in profile_table(bf16)


def test_cpu_bf16_autocasts_only_where_the_cpu_computes_bf16_natively(monkeypatch, caplog):
    import tinybert_lib.training as training

    cpu = torch.device("cpu")
    assert training._mixed_precision_for(cpu) == "no"  # float32 unless a profile asks
    monkeypatch.setattr(training, "native_cpu_bf16", lambda: True)
    assert training._mixed_precision_for(cpu, cpu_bf16=True) == "bf16"
    monkeypatch.setattr(training, "native_cpu_bf16", lambda: False)
    with caplog.at_level("WARNING"):
        assert training._mixed_precision_for(cpu, cpu_bf16=True) == "no"  # emulated bf16 would be slower
    assert "no native bf16" in caplog.text


def test_cpu_bf16_comes_from_the_profile_and_is_recorded_only_when_on():
    from tinybert_lib.pipeline import _fit_fields
    from tinybert_lib.profiles import get_profile
    from tinybert_lib.training import FitConfig

    fp32, bf16 = get_profile("smoke"), get_profile("smoke", cpu_bf16=True)
    assert not FitConfig.for_stage(fp32, "intermediate").cpu_bf16
    assert FitConfig.for_stage(bf16, "intermediate").cpu_bf16
    assert "cpu_bf16" not in _fit_fields(fp32, "general")  # float32 runs keep the records they always had
    assert _fit_fields(bf16, "general")["cpu_bf16"] is True  # a bf16 artifact is never reused as a float32 one


def test_a_bf16_step_tracks_the_float32_step_and_keeps_float32_weights():
    """Under cpu_bf16 the step's loss stays within bf16 rounding of the float32 step's, and the weights,
    the gradients and the optimiser stay float32. (On a CPU without native bf16 the run is float32.)"""
    from tinybert_lib.runtime import native_cpu_bf16

    losses = {}
    for cpu_bf16 in (False, True):
        teacher, student = _tiny_pair()
        accelerator, step, optimizer, scheduler, params = _prepared_step(
            teacher, student, layer_map(2, 4), make_projections(8, 16, 2), lr=1e-3, cpu_bf16=cpu_bf16)
        g = torch.Generator().manual_seed(5)
        batch = {"input_ids": torch.randint(1, 60, (3, 9), generator=g), "attention_mask": _mask(3, 9, [9, 4, 6]),
                 "token_type_ids": torch.zeros(3, 9, dtype=torch.long)}
        out = training_step(accelerator, step, batch, optimizer, scheduler, params, max_grad_norm=1.0)
        losses[cpu_bf16] = float(out["total"].detach())
        assert out["total"].dtype == torch.float32
        assert all(p.dtype == torch.float32 for p in params)
        assert accelerator.mixed_precision == ("bf16" if cpu_bf16 and native_cpu_bf16() else "no")
    # bf16 keeps 8 bits of mantissa: a few parts in a thousand on each product, far less on the mean
    assert abs(losses[True] - losses[False]) / losses[False] < 3e-2

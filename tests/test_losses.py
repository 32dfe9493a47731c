"""Tests for tinybert_lib.losses: every loss against an independent, explicit computation."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tinybert_lib.losses import (
    Projection,
    attention_loss,
    embedding_loss,
    hidden_loss,
    layer_map,
    make_projections,
    prediction_loss,
    transformer_loss,
)

B, T, HEADS = 2, 4, 3
D_S, D_T = 3, 5

# Second sequence has two padding tokens at the end; a non-prefix mask is also exercised.
MASK = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
MASK_HOLES = torch.tensor([[1, 0, 1, 1], [0, 1, 1, 0]])


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def manual_project(x: torch.Tensor, proj: Projection) -> torch.Tensor:
    """y[b, t, j] = sum_i x[b, t, i] W[j, i] + bias[j], by explicit loops."""
    w, bias = proj.linear.weight.detach(), proj.linear.bias.detach()
    out = torch.zeros(x.shape[0], x.shape[1], w.shape[0], dtype=x.dtype)
    for b in range(x.shape[0]):
        for t in range(x.shape[1]):
            for j in range(w.shape[0]):
                out[b, t, j] = sum(x[b, t, i] * w[j, i] for i in range(x.shape[2])) + bias[j]
    return out


def manual_mse_tokens(s: torch.Tensor, t: torch.Tensor, mask: torch.Tensor | None) -> float:
    """Mean squared error over (real position, hidden unit), explicit loops."""
    total, count = 0.0, 0
    for b in range(s.shape[0]):
        for pos in range(s.shape[1]):
            if mask is not None and mask[b, pos] == 0:
                continue
            for h in range(s.shape[2]):
                total += float(s[b, pos, h] - t[b, pos, h]) ** 2
                count += 1
    return total / count


def manual_attention_mse(s: torch.Tensor, t: torch.Tensor, mask: torch.Tensor | None) -> float:
    """Paper: (1/h) sum_i MSE(A_i^S, A_i^T), each head's MSE over its real (query, key) pairs."""
    per_head = []
    for i in range(s.shape[1]):
        total, count = 0.0, 0
        for b in range(s.shape[0]):
            for q in range(s.shape[2]):
                for k in range(s.shape[3]):
                    if mask is not None and (mask[b, q] == 0 or mask[b, k] == 0):
                        continue
                    total += float(s[b, i, q, k] - t[b, i, q, k]) ** 2
                    count += 1
        per_head.append(total / count)
    return sum(per_head) / len(per_head)


def manual_attention_kl_parts(s, t, mask):
    """Mean over (b, head, real query) of cross-entropy and teacher entropy, over real keys."""
    ce, ent, count = 0.0, 0.0, 0
    for b in range(s.shape[0]):
        keys = [k for k in range(s.shape[3]) if mask is None or mask[b, k] == 1]
        for i in range(s.shape[1]):
            for q in range(s.shape[2]):
                if mask is not None and mask[b, q] == 0:
                    continue
                zt = [math.exp(float(t[b, i, q, k])) for k in keys]
                zs = [math.exp(float(s[b, i, q, k])) for k in keys]
                p = [v / sum(zt) for v in zt]
                qd = [v / sum(zs) for v in zs]
                ce += -sum(pk * math.log(qk) for pk, qk in zip(p, qd))
                ent += -sum(pk * math.log(pk) for pk in p)
                count += 1
    return ce / count, ent / count


def original_attention_mse(s, t, mask):
    """The authors' code: additive -10000 mask, zero everything <= -100, nn.MSELoss over all."""
    additive = (1.0 - mask[:, None, None, :].float()) * -10000.0
    s = s + additive
    t = t + additive
    s = torch.where(s <= -100, torch.zeros_like(s), s)
    t = torch.where(t <= -100, torch.zeros_like(t), t)
    return nn.MSELoss()(s, t)


# --------------------------------------------------------------------------------------
# embedding / hidden
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("loss_fn", [embedding_loss, hidden_loss])
@pytest.mark.parametrize("mask", [None, MASK, MASK_HOLES])
def test_width_losses_match_manual(loss_fn, mask):
    s = torch.randn(B, T, D_S, dtype=torch.float64)
    t = torch.randn(B, T, D_T, dtype=torch.float64)
    proj = Projection(D_S, D_T).double()
    got = loss_fn(s, t, proj, attention_mask=mask)
    expected = manual_mse_tokens(manual_project(s, proj), t, mask)
    assert got.shape == ()
    assert got.item() == pytest.approx(expected, rel=1e-10)


def test_width_loss_without_mask_is_plain_mse_and_identity_allowed_for_equal_widths():
    s, t = torch.randn(B, T, D_T), torch.randn(B, T, D_T)
    assert torch.allclose(hidden_loss(s, t, None), ((s - t) ** 2).sum() / s.numel())
    assert torch.allclose(embedding_loss(s, t, nn.Identity()), F.mse_loss(s, t))


def test_masked_width_loss_ignores_garbage_at_padding():
    s, t = torch.randn(B, T, D_T), torch.randn(B, T, D_T)
    s.requires_grad_(True)
    t_bad = t.clone()
    t_bad[1, 2:] = float("nan")  # padded positions of sequence 1
    clean = hidden_loss(s, t, None, attention_mask=MASK)
    dirty = hidden_loss(s, t_bad, None, attention_mask=MASK)
    assert torch.isfinite(dirty) and torch.allclose(clean, dirty)
    dirty.backward()
    assert torch.isfinite(s.grad).all()
    assert torch.all(s.grad[1, 2:] == 0)


def test_width_loss_needs_projection_for_different_widths():
    s, t = torch.randn(B, T, D_S), torch.randn(B, T, D_T)
    with pytest.raises(ValueError, match=r"projection is needed.*Projection\(3, 5\)"):
        embedding_loss(s, t, None)
    with pytest.raises(ValueError, match=r"\(2, 4, 4\).*\(2, 4, 5\)"):
        hidden_loss(s, t, Projection(D_S, 4))


def test_gradient_reaches_projection_and_student_but_not_detached_teacher():
    s = torch.randn(B, T, D_S, requires_grad=True)
    teacher = torch.randn(B, T, D_T, requires_grad=True)
    proj = Projection(D_S, D_T)
    loss = hidden_loss(s, teacher.detach(), proj, attention_mask=MASK)
    loss.backward()
    assert proj.linear.weight.grad is not None and proj.linear.weight.grad.abs().sum() > 0
    assert proj.linear.bias.grad is not None and proj.linear.bias.grad.abs().sum() > 0
    assert s.grad is not None and s.grad.abs().sum() > 0
    assert teacher.grad is None


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_inputs_give_float32_losses(dtype):
    s32, t32 = torch.randn(B, T, D_T) * 300, torch.randn(B, T, D_T) * 300
    s, t = s32.to(dtype), t32.to(dtype)
    got = hidden_loss(s, t, None, attention_mask=MASK)
    assert got.dtype == torch.float32
    # fp16 would overflow (squares ~ 1e5 summed); the upcast result is exact on the cast inputs.
    assert got.item() == pytest.approx(manual_mse_tokens(s.float(), t.float(), MASK), rel=1e-5)
    a_s, a_t = torch.randn(B, HEADS, T, T).to(dtype), torch.randn(B, HEADS, T, T).to(dtype)
    for kind in ("mse", "kl", "mse_original"):
        assert attention_loss(a_s, a_t, MASK, kind=kind).dtype == torch.float32
    assert prediction_loss(torch.randn(B, 3).to(dtype), torch.randn(B, 3).to(dtype)).dtype == torch.float32


def test_half_precision_activation_with_float32_projection():
    s, t = torch.randn(B, T, D_S).to(torch.bfloat16), torch.randn(B, T, D_T)
    proj = Projection(D_S, D_T)
    got = embedding_loss(s, t, proj)
    assert got.dtype == torch.float32
    assert torch.allclose(got, F.mse_loss(proj(s.float()), t))


# --------------------------------------------------------------------------------------
# attention
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("mask", [None, MASK, MASK_HOLES])
def test_attention_mse_matches_per_head_average(mask):
    s = torch.randn(B, HEADS, T, T, dtype=torch.float64)
    t = torch.randn(B, HEADS, T, T, dtype=torch.float64)
    got = attention_loss(s, t, attention_mask=mask)
    assert got.item() == pytest.approx(manual_attention_mse(s, t, mask), rel=1e-10)


def test_attention_mse_is_robust_to_masked_scores_at_padding():
    s = torch.randn(B, HEADS, T, T, requires_grad=True)
    t = torch.randn(B, HEADS, T, T)
    t_masked = t.clone()
    t_masked[1, :, :, 2:] = float("-inf")  # scores taken after an additive -inf mask
    clean = attention_loss(s, t, MASK)
    dirty = attention_loss(s, t_masked, MASK)
    assert torch.isfinite(dirty) and torch.allclose(clean, dirty)
    dirty.backward()
    assert torch.isfinite(s.grad).all()


@pytest.mark.parametrize("mask", [MASK, MASK_HOLES])
def test_attention_mse_original_matches_reimplementation(mask):
    s = torch.randn(B, HEADS, T, T) * 3
    t = torch.randn(B, HEADS, T, T) * 3
    s[0, 0, 0, 0] = -150.0  # a genuine score <= -100: the original zeroes it too
    got = attention_loss(s, t, mask, kind="mse_original")
    assert torch.allclose(got, original_attention_mse(s, t, mask))
    # Equivalently: squared error over real keys (after the <= -100 cut), divided by ALL elements.
    s_cut = torch.where(s <= -100, torch.zeros_like(s), s)
    total = 0.0
    for b in range(B):
        for k in range(T):
            if mask[b, k] == 1:
                total += float(((s_cut[b, :, :, k] - t[b, :, :, k]) ** 2).sum())
    assert got.item() == pytest.approx(total / s.numel(), rel=1e-5)
    # ...which is smaller than the course's masked mean because padding counts in the denominator.
    assert got < attention_loss(s, t, mask, kind="mse")


def test_attention_mse_original_without_mask_equals_mse():
    s, t = torch.randn(B, HEADS, T, T), torch.randn(B, HEADS, T, T)
    assert torch.equal(attention_loss(s, t, kind="mse_original"), attention_loss(s, t, kind="mse"))
    assert torch.allclose(attention_loss(s, t), F.mse_loss(s, t))


@pytest.mark.parametrize("mask", [None, MASK, MASK_HOLES])
def test_attention_kl_is_cross_entropy_minus_teacher_entropy(mask):
    s = torch.randn(B, HEADS, T, T, dtype=torch.float64)
    t = torch.randn(B, HEADS, T, T, dtype=torch.float64)
    got = attention_loss(s, t, mask, kind="kl")
    ce, ent = manual_attention_kl_parts(s, t, mask)
    assert got.item() == pytest.approx(ce - ent, rel=1e-9)
    assert got.item() > 0
    same = attention_loss(t, t, mask, kind="kl")
    assert abs(same.item()) < 1e-12


def test_attention_kl_has_the_cross_entropy_gradient():
    s = torch.randn(B, HEADS, T, T, dtype=torch.float64, requires_grad=True)
    t = torch.randn(B, HEADS, T, T, dtype=torch.float64)
    attention_loss(s, t, MASK, kind="kl").backward()
    grad_kl = s.grad.clone()
    s.grad = None
    # Cross-entropy over real keys, mean over (b, head, real query), written with plain sums.
    keys = MASK[:, None, None, :].bool()
    log_q = torch.log_softmax(s.masked_fill(~keys, -1e30), dim=-1)
    p = torch.softmax(t.masked_fill(~keys, -1e30), dim=-1)
    per_query = -(p * log_q.masked_fill(~keys, 0)).sum(-1)
    queries = MASK[:, None, :].bool().expand_as(per_query)
    (per_query[queries].sum() / queries.sum()).backward()
    assert torch.allclose(grad_kl, s.grad)
    assert torch.all(grad_kl[1, :, :, 2:] == 0)  # padded keys and padded queries get nothing
    assert torch.all(grad_kl[1, :, 2:, :] == 0)


def test_attention_kl_is_nonnegative_on_random_inputs():
    for _ in range(5):
        s, t = torch.randn(B, HEADS, T, T) * 4, torch.randn(B, HEADS, T, T) * 4
        assert attention_loss(s, t, MASK, kind="kl") >= 0
        assert attention_loss(s, t, kind="kl") >= 0


@pytest.mark.parametrize("kind", ["mse", "kl", "mse_original"])
def test_fully_padded_sequence_gives_finite_loss_and_gradients(kind):
    mask = torch.tensor([[1, 1, 1, 0], [0, 0, 0, 0]])
    s = torch.randn(B, HEADS, T, T, requires_grad=True)
    t = torch.randn(B, HEADS, T, T)
    loss = attention_loss(s, t, mask, kind=kind)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(s.grad).all()
    if kind != "mse_original":  # the empty sequence contributes nothing to the masked mean
        alone = attention_loss(s[:1].detach(), t[:1], mask[:1], kind=kind)
        assert torch.allclose(loss, alone)
        assert torch.all(s.grad[1] == 0)
    h = torch.randn(B, T, D_T)
    assert hidden_loss(h, h + 1, None, mask).item() == pytest.approx(1.0)


def test_attention_unknown_kind():
    s = torch.randn(B, HEADS, T, T)
    with pytest.raises(ValueError, match=r"unknown attention loss kind 'softmax_mse'.*mse"):
        attention_loss(s, s, kind="softmax_mse")


# --------------------------------------------------------------------------------------
# prediction
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("temperature", [1.0, 2.5])
def test_prediction_loss_matches_manual_formula(temperature):
    zs = torch.randn(3, 4, dtype=torch.float64)
    zt = torch.randn(3, 4, dtype=torch.float64)
    total = 0.0
    for b in range(3):
        et = [math.exp(float(v) / temperature) for v in zt[b]]
        es = [math.exp(float(v) / temperature) for v in zs[b]]
        total += -sum((et[c] / sum(et)) * math.log(es[c] / sum(es)) for c in range(4))
    got = prediction_loss(zs, zt, temperature=temperature)
    assert got.item() == pytest.approx(total / 3, rel=1e-10)
    # Not divided by the class count, unlike the original's .mean() (issue #176).
    original = (-F.softmax(zt / temperature, -1) * F.log_softmax(zs / temperature, -1)).mean()
    assert got.item() == pytest.approx(4 * original.item(), rel=1e-10)


def test_prediction_loss_with_one_hot_teacher_is_cross_entropy():
    zs = torch.randn(5, 3)
    labels = torch.tensor([0, 2, 1, 1, 0])
    zt = F.one_hot(labels, 3).float() * 1000.0  # softmax is one-hot to float precision
    assert torch.allclose(prediction_loss(zs, zt), F.cross_entropy(zs, labels), atol=1e-6)


def test_prediction_loss_regression_is_mse_to_teacher():
    zs = torch.randn(6, 1, requires_grad=True)
    zt = torch.randn(6, 1)
    got = prediction_loss(zs, zt, temperature=3.0)  # temperature ignored for regression
    expected = sum(float(zs[i, 0].detach() - zt[i, 0]) ** 2 for i in range(6)) / 6
    assert got.item() == pytest.approx(expected, rel=1e-6)
    got.backward()
    assert zs.grad.abs().sum() > 0


def test_prediction_loss_errors():
    with pytest.raises(ValueError, match=r"\(4, 3\).*\(4, 2\)"):
        prediction_loss(torch.randn(4, 3), torch.randn(4, 2))
    with pytest.raises(ValueError, match="temperature must be > 0"):
        prediction_loss(torch.randn(4, 3), torch.randn(4, 3), temperature=0)
    with pytest.raises(ValueError, match=r"shape \(4,\).*regression \(batch, 1\)"):
        prediction_loss(torch.randn(4), torch.randn(4))


# --------------------------------------------------------------------------------------
# layer mapping and projections
# --------------------------------------------------------------------------------------


def test_layer_map_strategies():
    assert layer_map(3, 6) == [2, 4, 6]
    assert layer_map(4, 12) == [3, 6, 9, 12]
    assert layer_map(4, 12, "top") == [9, 10, 11, 12]
    assert layer_map(4, 12, "bottom") == [1, 2, 3, 4]
    assert layer_map(6, 6) == [1, 2, 3, 4, 5, 6]
    assert layer_map(4, 6, "top") == [3, 4, 5, 6]


def test_layer_map_errors():
    with pytest.raises(ValueError, match=r"divides 6: 1, 2, 3 or 6, or strategy='top'"):
        layer_map(4, 6)
    with pytest.raises(ValueError, match=r"7 layers.*teacher with 6.*at most 6"):
        layer_map(7, 6)
    with pytest.raises(ValueError, match=r"at least 1 layer"):
        layer_map(0, 6)
    with pytest.raises(ValueError, match=r"unknown strategy 'middle'.*uniform"):
        layer_map(3, 6, "middle")


def test_projection_is_a_biased_linear_layer():
    proj = Projection(D_S, D_T)
    assert isinstance(proj.linear, nn.Linear) and proj.linear.bias is not None
    x = torch.randn(2, D_S)
    assert torch.allclose(proj(x), x @ proj.linear.weight.T + proj.linear.bias)


def test_make_projections_shared_and_separate():
    layers = 4
    per_proj = D_S * D_T + D_T
    separate = make_projections(D_S, D_T, layers)
    shared = make_projections(D_S, D_T, layers, shared=True)
    assert len(separate) == len(shared) == layers + 1
    assert sum(p.numel() for p in separate.parameters()) == (layers + 1) * per_proj
    assert sum(p.numel() for p in shared.parameters()) == per_proj
    assert all(p is shared[0] for p in shared)
    assert len({id(p) for p in separate}) == layers + 1


# --------------------------------------------------------------------------------------
# transformer_loss
# --------------------------------------------------------------------------------------


def fake_outputs(n_layers: int, width: int, heads: int = HEADS, seq: int = T):
    return SimpleNamespace(
        hidden_states=tuple(torch.randn(B, seq, width) for _ in range(n_layers + 1)),
        attention_scores=tuple(torch.randn(B, heads, seq, seq) for _ in range(n_layers)),
    )


@pytest.mark.parametrize("mask", [None, MASK])
@pytest.mark.parametrize("kind", ["mse", "kl"])
def test_transformer_loss_equals_manual_sum(mask, kind):
    student, teacher = fake_outputs(2, D_S), fake_outputs(6, D_T)
    mapping = layer_map(2, 6)  # [3, 6]
    projs = make_projections(D_S, D_T, 2)
    weights = (0.5, 2.0, 3.0)
    out = transformer_loss(student, teacher, mapping, projs, mask, weights, attention_kind=kind)

    emb = embedding_loss(student.hidden_states[0], teacher.hidden_states[0], projs[0], mask)
    hid = hidden_loss(student.hidden_states[1], teacher.hidden_states[3], projs[1], mask) + hidden_loss(
        student.hidden_states[2], teacher.hidden_states[6], projs[2], mask
    )
    att = attention_loss(student.attention_scores[0], teacher.attention_scores[2], mask, kind) + attention_loss(
        student.attention_scores[1], teacher.attention_scores[5], mask, kind
    )
    assert set(out) == {"emb", "hid", "att", "total"}
    assert torch.allclose(out["emb"], emb)
    assert torch.allclose(out["hid"], hid)
    assert torch.allclose(out["att"], att)
    assert torch.allclose(out["total"], 0.5 * emb + 2.0 * hid + 3.0 * att)
    out["total"].backward()
    assert all(p.grad is not None for p in projs.parameters())


class CountingProjection(nn.Module):
    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner, self.calls = inner, 0

    def forward(self, x):
        self.calls += 1
        return self.inner(x)


def test_transformer_loss_zero_weights_skip_terms():
    student, teacher = fake_outputs(2, D_S), fake_outputs(4, D_T)
    projs = nn.ModuleList(CountingProjection(Projection(D_S, D_T)) for _ in range(3))
    teacher.attention_scores = None  # would fail if the attention term were computed
    out = transformer_loss(student, teacher, layer_map(2, 4), projs, weights=(0, 1, 0))
    assert projs[0].calls == 0 and projs[1].calls == 1 and projs[2].calls == 1
    assert out["emb"].item() == 0 and out["att"].item() == 0 and out["hid"].item() > 0
    assert torch.equal(out["total"], out["hid"])

    student2, teacher2 = fake_outputs(2, D_S), fake_outputs(4, D_T)
    projs2 = nn.ModuleList(CountingProjection(Projection(D_S, D_T)) for _ in range(3))
    out2 = transformer_loss(student2, teacher2, [2, 4], projs2, weights=(0, 0, 1))
    assert all(p.calls == 0 for p in projs2)
    assert out2["hid"].item() == 0 and out2["att"].item() > 0


def test_transformer_loss_with_shared_projection_and_equal_widths():
    student, teacher = fake_outputs(3, D_T), fake_outputs(6, D_T)
    shared = make_projections(D_S, D_T, 3, shared=True)
    out_none = transformer_loss(student, teacher, [2, 4, 6], None)
    expected = F.mse_loss(student.hidden_states[0], teacher.hidden_states[0])
    assert torch.allclose(out_none["emb"], expected)
    s_narrow = fake_outputs(3, D_S)
    out = transformer_loss(s_narrow, teacher, [2, 4, 6], shared)
    out["total"].backward()
    assert shared[0].linear.weight.grad.abs().sum() > 0


def test_transformer_loss_errors():
    student, teacher = fake_outputs(2, D_S), fake_outputs(4, D_T)
    projs = make_projections(D_S, D_T, 2)
    with pytest.raises(ValueError, match=r"mapping has 3 entries but the student has 2 layers"):
        transformer_loss(student, teacher, [1, 2, 3], projs)
    with pytest.raises(ValueError, match=r"teacher layers \[6\].*only 4 layers"):
        transformer_loss(student, teacher, [3, 6], projs)
    with pytest.raises(ValueError, match=r"got 2 projections.*expected 3"):
        transformer_loss(student, teacher, [2, 4], projs[:2])
    with pytest.raises(ValueError, match=r"no attention_scores"):
        transformer_loss(student, SimpleNamespace(hidden_states=teacher.hidden_states), [2, 4], projs)
    with pytest.raises(ValueError, match=r"weights must be"):
        transformer_loss(student, teacher, [2, 4], projs, weights=(1, 1))
    few_heads = fake_outputs(2, D_S, heads=HEADS + 1)
    with pytest.raises(ValueError, match=r"attention \(student layer 1 vs teacher layer 2\).*4 heads, teacher has 3"):
        transformer_loss(few_heads, teacher, [2, 4], projs)


# --------------------------------------------------------------------------------------
# shape / mask errors name both shapes
# --------------------------------------------------------------------------------------


def test_attention_shape_errors_name_both_shapes():
    t = torch.randn(B, 12, T, T)
    with pytest.raises(ValueError, match=r"\(2, 4, 4, 4\).*\(2, 12, 4, 4\).*4 heads, teacher has 12.*head count"):
        attention_loss(torch.randn(B, 4, T, T), t)
    with pytest.raises(ValueError, match=r"\(2, 12, 5, 5\).*\(2, 12, 4, 4\).*sequence lengths"):
        attention_loss(torch.randn(B, 12, 5, 5), t)
    with pytest.raises(ValueError, match=r"\(3, 12, 4, 4\).*\(2, 12, 4, 4\).*batch sizes"):
        attention_loss(torch.randn(3, 12, T, T), t)
    with pytest.raises(ValueError, match=r"shape \(2, 12, 4\); expected 4 dimensions"):
        attention_loss(torch.randn(B, 12, T), t)


def test_hidden_shape_errors_name_both_shapes():
    t = torch.randn(B, T, D_T)
    with pytest.raises(ValueError, match=r"\(2, 6, 5\).*\(2, 4, 5\).*sequence lengths"):
        hidden_loss(torch.randn(B, 6, D_T), t, None)
    with pytest.raises(ValueError, match=r"\(1, 4, 5\).*\(2, 4, 5\).*batch sizes"):
        hidden_loss(torch.randn(1, T, D_T), t, None)
    with pytest.raises(ValueError, match=r"dtype torch.int64"):
        hidden_loss(torch.ones(B, T, D_T, dtype=torch.long), t, None)


def test_mask_shape_errors():
    s = torch.randn(B, HEADS, T, T)
    with pytest.raises(ValueError, match=r"attention_mask has shape \(2, 5\).*\(2, 4\)"):
        attention_loss(s, s, torch.ones(B, 5))
    with pytest.raises(ValueError, match=r"\(2, 1, 1, 4\).*2-D mask"):
        attention_loss(s, s, torch.ones(B, 1, 1, T))
    h = torch.randn(B, T, D_T)
    with pytest.raises(ValueError, match=r"attention_mask has shape \(3, 4\).*\(2, 4\)"):
        hidden_loss(h, h, None, attention_mask=torch.ones(3, T))

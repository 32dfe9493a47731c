"""The TinyBERT losses (Jiao et al., "TinyBERT: Distilling BERT for Natural Language
Understanding", Findings of EMNLP 2020, arXiv 1909.10351).

Lessons: 02-06, 09-11 (02-05 build one loss each; the others use them).

In the order of lessons 02-05:

    embedding_loss   L_emb  = MSE(E^S W_e, E^T)                         layer 0
    hidden_loss      L_hid  = MSE(H^S_m W_h^(m), H^T_g(m))              layers m = 1..M
    attention_loss   L_att  = (1/h) sum_i MSE(A_i^S, A_i^T)             layers m = 1..M
    prediction_loss  L_pred = -softmax(z^T / t) . log softmax(z^S / t)  layer M + 1

then the glue: ``layer_map`` (the teacher layer g(m) that student layer m learns from),
``Projection`` / ``make_projections`` (the learnable W_e, W_h^(m)) and ``transformer_loss`` (the
sum over layers that general distillation and step 1 of task distillation minimise).

Notation as in the README's "Notation" section (lesson 00): superscripts S / T = student /
teacher, d^S / d^T their widths, h heads indexed by i, ℓ the sequence length (the paper's l;
``T`` in the error messages), t the temperature.

Conventions. Tensors are batch-first: hidden states (batch, ℓ, d), attention scores
(batch, h, ℓ, ℓ), logits (batch, classes). ``attention_mask`` is the tokenizer's (batch, ℓ)
mask, 1 = token, 0 = padding. Without it every MSE is ``F.mse_loss``; with it the mean runs
over real tokens only, and the difference is zeroed (not multiplied by 0) at padding, so
whatever a model leaves there (-inf scores, pad activations) never reaches the loss or its
gradient. Losses are computed in at least float32: half-precision sums of squares overflow.
Nothing here detaches the teacher: run it under ``torch.no_grad()``.

The authors' code (huawei-noah/Pretrained-Language-Model) differs in three places: it averages
the attention MSE over padding too (``attention_loss(kind="mse_original")``, in the "Variants"
section with ``kind="kl"``), it shares one projection across layers
(``make_projections(shared=True)``), and it divides the soft cross-entropy by the number of
classes (their issue #176; ours does not).
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "embedding_loss", "hidden_loss", "attention_loss", "prediction_loss",
    "layer_map", "Projection", "make_projections", "transformer_loss",
    "ATTENTION_KINDS", "LAYER_MAP_STRATEGIES",
]

ATTENTION_KINDS = ("mse", "kl", "mse_original")
LAYER_MAP_STRATEGIES = ("uniform", "top", "bottom")

ProjectionFn = Callable[[Tensor], Tensor]


# --- The four losses -----------------------------------------------------------------


def _width_loss(student: Tensor, teacher: Tensor, proj: Optional[ProjectionFn],
                attention_mask: Optional[Tensor], what: str) -> Tensor:
    """MSE(X^S W, X^T): the one loss behind ``embedding_loss`` and ``hidden_loss``."""
    mask = _check_pair(student, teacher, what, ("batch", "T", "hidden"), attention_mask)
    projected = _project(proj, student)
    _check_projected(student, projected, teacher, proj, what)
    projected, teacher = _upcast(projected, teacher)
    if mask is None:
        return F.mse_loss(projected, teacher)
    return _masked_mse(projected, teacher, mask[:, :, None])  # real positions x hidden units


def embedding_loss(student_emb: Tensor, teacher_emb: Tensor, proj: Optional[ProjectionFn],
                   attention_mask: Optional[Tensor] = None) -> Tensor:
    """L_emb = MSE(E^S W_e, E^T), on the embedding outputs ``hidden_states[0]`` (layer m = 0).

    student_emb (batch, ℓ, d^S), teacher_emb (batch, ℓ, d^T); proj is W_e, e.g.
    ``Projection(d^S, d^T)`` (``None`` only when d^S == d^T); attention_mask (batch, ℓ) or None.
    """
    return _width_loss(student_emb, teacher_emb, proj, attention_mask, "embeddings")


def hidden_loss(student_hidden: Tensor, teacher_hidden: Tensor, proj: Optional[ProjectionFn],
                attention_mask: Optional[Tensor] = None) -> Tensor:
    """L_hid = MSE(H^S_m W_h^(m), H^T_g(m)), student layer m against teacher layer g(m).

    Arguments as for ``embedding_loss``, with proj = W_h^(m).
    """
    return _width_loss(student_hidden, teacher_hidden, proj, attention_mask, "hidden states")


def attention_loss(student_scores: Tensor, teacher_scores: Tensor,
                   attention_mask: Optional[Tensor] = None, kind: str = "mse") -> Tensor:
    """L_att = (1/h) sum_i MSE(A_i^S, A_i^T), student layer m against teacher layer g(m).

    Scores are raw, A_i = Q_i K_i^⊤ / sqrt(d_k) before mask and softmax, (batch, h, ℓ, ℓ),
    matched head by head (head i of the student against head i of the teacher). With a mask the mean runs over (batch, head, real query, real key).
    kind: "mse" (the paper), or the variants "kl" and "mse_original" (see below).
    """
    if kind not in ATTENTION_KINDS:
        raise ValueError(f"unknown attention loss kind {kind!r}; choose one of {ATTENTION_KINDS}")
    mask = _check_pair(student_scores, teacher_scores, "attention scores", ("batch", "heads", "T", "T"),
                       attention_mask)
    student, teacher = _upcast(student_scores, teacher_scores)
    if kind == "kl":
        return _attention_kl(student, teacher, mask)
    if mask is None:  # every head has ℓ x ℓ entries, so the mean of the head means is the mean
        return F.mse_loss(student, teacher)
    if kind == "mse_original":
        return _attention_mse_original(student, teacher, mask)
    pairs = mask[:, None, :, None] & mask[:, None, None, :]  # (batch, 1, query, key)
    return _masked_mse(student, teacher, pairs)


def prediction_loss(student_logits: Tensor, teacher_logits: Tensor, temperature: float = 1.0) -> Tensor:
    """L_pred = -(1/B) sum_b softmax(z^T_b / t) . log softmax(z^S_b / t) (layer M + 1).

    Averaged over the batch only, with no t^2 factor (the paper uses t = 1). Logits are
    (batch, classes); one class means regression (STS-B): MSE to the teacher, t ignored.
    """
    if not float(temperature) > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    _check_pair(student_logits, teacher_logits, "logits", ("batch", "classes"), note="; for regression (batch, 1)")
    student, teacher = _upcast(student_logits, teacher_logits)
    if student.shape[1] == 1:  # the original code regresses onto the gold labels here (their issue #128)
        return F.mse_loss(student, teacher)
    teacher_probs = F.softmax(teacher / temperature, dim=-1)
    student_log_probs = F.log_softmax(student / temperature, dim=-1)
    return -(teacher_probs * student_log_probs).sum(dim=-1).mean()


# --- Variants measured in lesson 04: KL on probabilities, the original code's masking ----


def _attention_kl(student: Tensor, teacher: Tensor, mask: Optional[Tensor]) -> Tensor:
    """mean over (batch, head, real query) of KL(softmax(A^T) || softmax(A^S)) over real keys.

    = cross-entropy minus the teacher's entropy: the cross-entropy's gradient, but 0 at a match.
    """
    if mask is None:
        log_p = F.log_softmax(teacher, dim=-1)
        log_q = F.log_softmax(student, dim=-1)
        return (log_p.exp() * (log_p - log_q)).sum(-1).mean()
    keys = mask[:, None, None, :]  # (batch, 1, 1, key)
    # A finite fill (not -inf) gives padded keys probability 0 and keeps an all-padding row finite.
    fill = torch.finfo(teacher.dtype).min
    log_p = F.log_softmax(teacher.masked_fill(~keys, fill), dim=-1)
    log_q = F.log_softmax(student.masked_fill(~keys, fill), dim=-1)
    p = log_p.exp()  # exactly 0 at padded keys
    log_ratio = (log_p - log_q).masked_fill(~keys, 0.0)  # keeps 0 * (huge - huge) out of the sum
    per_query = (p * log_ratio).sum(-1)  # (batch, heads, query)
    queries = mask[:, None, :].expand_as(per_query)
    return per_query.masked_fill(~queries, 0.0).sum() / queries.sum().clamp_min(1)


def _attention_mse_original(student: Tensor, teacher: Tensor, mask: Tensor) -> Tensor:
    """The authors' code: A += -10000 at padded keys, then A[A <= -100] = 0, then a plain MSE.

    Padded entries count in the denominator, so the loss shrinks as padding grows; a genuine
    score <= -100 is zeroed too.
    """
    additive = (~mask).to(student.dtype)[:, None, None, :] * -10000.0

    def cut(scores: Tensor) -> Tensor:
        scores = scores + additive
        return torch.where(scores <= -100.0, torch.zeros_like(scores), scores)

    return F.mse_loss(cut(student), cut(teacher))


# --- Layer mapping, projections, and the sum over layers -----------------------------


def layer_map(n_student: int, n_teacher: int, strategy: str = "uniform") -> list[int]:
    """g(1..M): the teacher layer each student layer m = 1..M learns from (paper, Section 4.5).

        uniform: g(m) = m * N / M  (M must divide N; TinyBERT's choice)
        top:     g(m) = N - M + m  (the last M teacher layers)
        bottom:  g(m) = m          (the first M teacher layers)

    g(0) = 0 (embeddings) and g(M + 1) = N + 1 (prediction) are implied. ``layer_map(3, 6) == [2, 4, 6]``.
    """
    m, n = _check_layer_counts(n_student, n_teacher, strategy)
    if strategy == "uniform":
        return [k * (n // m) for k in range(1, m + 1)]
    if strategy == "top":
        return [n - m + k for k in range(1, m + 1)]
    return list(range(1, m + 1))


class Projection(nn.Module):
    """W_e / W_h^(m) (the paper's W_e / W_h): x -> x W + b from the student width d^S to the teacher's d^T.

    Biased like the original ``fit_dense``; used only while distilling, not part of the student.
    """

    def __init__(self, student_width: int, teacher_width: int) -> None:
        super().__init__()
        self.student_width = _check_count(student_width, "student_width")
        self.teacher_width = _check_count(teacher_width, "teacher_width")
        if self.student_width < 1 or self.teacher_width < 1:
            raise ValueError(f"widths must be positive, got {student_width} -> {teacher_width}")
        self.linear = nn.Linear(self.student_width, self.teacher_width, bias=True)

    def forward(self, x: Tensor) -> Tensor:
        """(..., student_width) -> (..., teacher_width)."""
        return self.linear(x)


def make_projections(student_width: int, teacher_width: int, num_student_layers: int,
                     shared: bool = False) -> nn.ModuleList:
    """M + 1 projections for ``transformer_loss``: index 0 is W_e, index m is W_h^(m) of layer m.

    shared=False (the course): one matrix per layer, (M + 1)(d^S d^T + d^T) parameters.
    shared=True (the original code): one module at every index, d^S d^T + d^T parameters that
    receive the summed gradient of all layers. Give their parameters to the optimiser too.
    """
    layers = _check_count(num_student_layers, "num_student_layers")
    if layers < 1:
        raise ValueError(f"num_student_layers must be >= 1, got {layers}")
    if shared:
        return nn.ModuleList([Projection(student_width, teacher_width)] * (layers + 1))
    return nn.ModuleList(Projection(student_width, teacher_width) for _ in range(layers + 1))


def transformer_loss(student_out: object, teacher_out: object, mapping: Sequence[int],
                     projections: Optional[Sequence[ProjectionFn]], attention_mask: Optional[Tensor] = None,
                     weights: Sequence[float] = (1, 1, 1), attention_kind: str = "mse") -> dict[str, Tensor]:
    """Paper, Eq. 11 without the prediction layer, with g = ``mapping``:

        emb   = L_emb(S.hidden_states[0], T.hidden_states[0], W_e)
        hid   = sum_{m=1..M} L_hid(S.hidden_states[m], T.hidden_states[g(m)], W_h^(m))
        att   = sum_{m=1..M} L_att(S.attention_scores[m-1], T.attention_scores[g(m)-1])
        total = w_emb * emb + w_hid * hid + w_att * att

    Summed over layers, not averaged, as in the paper. S and T are the student's and the teacher's
    outputs. The outputs need ``hidden_states`` (L + 1 tensors for L layers, embeddings first) and, unless w_att = 0, ``attention_scores`` (L raw
    maps). projections: from ``make_projections``, or None for equal widths. A zero weight
    skips its term (returned as 0). Returns {"emb", "hid", "att"} unweighted and "total".
    """
    s_hidden, s_scores, t_hidden, t_scores, projections = _check_layers(
        student_out, teacher_out, mapping, projections, weights, attention_kind)
    w_emb, w_hid, w_att = (float(w) for w in weights)
    pairs = list(enumerate((int(g) for g in mapping), start=1))  # (m, g(m))
    zero = torch.zeros((), device=s_hidden[0].device, dtype=torch.float32)
    emb = hid = att = zero
    if w_emb != 0:
        emb = _at_layer("embeddings (student 0 vs teacher 0)", embedding_loss,
                        s_hidden[0], t_hidden[0], projections[0], attention_mask)
    if w_hid != 0:
        hid = sum((_at_layer(f"hidden states (student layer {m} vs teacher layer {g})", hidden_loss,
                             s_hidden[m], t_hidden[g], projections[m], attention_mask) for m, g in pairs), start=zero)
    if w_att != 0:
        att = sum((_at_layer(f"attention (student layer {m} vs teacher layer {g})", attention_loss,
                             s_scores[m - 1], t_scores[g - 1], attention_mask, kind=attention_kind)
                   for m, g in pairs), start=zero)
    total = w_emb * emb + w_hid * hid + w_att * att
    return {"emb": emb, "hid": hid, "att": att, "total": total}


# --- Precision, projection and the masked mean ---------------------------------------


def _upcast(student: Tensor, teacher: Tensor) -> tuple[Tensor, Tensor]:
    """Both tensors in their common dtype, at least float32 (fp16 sums overflow, bf16 ones round badly)."""
    dtype = torch.promote_types(torch.promote_types(student.dtype, teacher.dtype), torch.float32)
    return student.to(dtype), teacher.to(dtype)


def _project(proj: Optional[ProjectionFn], x: Tensor) -> Tensor:
    if proj is None:
        return x
    if isinstance(proj, nn.Module):
        param = next(proj.parameters(), None)
        # A half-precision activation would fail in a float32 Linear outside autocast.
        if param is not None and param.is_floating_point() and param.dtype != x.dtype:
            x = x.to(param.dtype)
    return proj(x)


def _masked_mse(student: Tensor, teacher: Tensor, keep: Tensor) -> Tensor:
    """Mean squared error over the entries where ``keep`` (a broadcastable bool) is True."""
    # Each kept entry of keep stands for student.numel() / keep.numel() entries; clamp: 0, not 0/0.
    count = (keep.sum() * (student.numel() // keep.numel())).clamp_min(1).to(student.dtype)
    # No padding, nothing to drop; checked on the CPU only, where it costs no device sync.
    drop = None if keep.device.type == "cpu" and bool(keep.all()) else ~keep
    return _MaskedSquaredError.apply(student, teacher, drop, count)


# Hand-written backward: a few passes over the large attention maps instead of the dozen that masked
# copies, a subtraction and a square would take under autograd (tests/test_fast_step.py compares them).
class _MaskedSquaredError(torch.autograd.Function):
    """sum of (student - teacher)^2 over the kept entries / count; gradient 2 (S - T) / count, 0 where dropped."""

    @staticmethod
    def forward(ctx, student: Tensor, teacher: Tensor, drop: Optional[Tensor], count: Tensor) -> Tensor:
        diff = student - teacher
        if drop is not None:
            diff.masked_fill_(drop, 0.0)  # zeroing, not multiplying: an inf at padding stays out
        ctx.save_for_backward(diff, count)
        return diff.pow(2).sum() / count

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Optional[Tensor], Optional[Tensor], None, None]:
        diff, count = ctx.saved_tensors
        g = diff * (2 * grad / count)
        return (g if ctx.needs_input_grad[0] else None, -g if ctx.needs_input_grad[1] else None, None, None)


# --- Checks: every mistake gets a ValueError that says what to do --------------------

_MISMATCH = {  # student and teacher differ along this dimension -> the fix
    "batch": "batch sizes {s} and {t} differ; feed the same batch to both models",
    "heads": ("student has {s} heads, teacher has {t}: attention maps are matched head by head; "
              "build the student with the teacher's head count"),
    "T": ("sequence lengths {s} and {t} differ; feed the same input_ids (same tokenizer, "
          "same padding / max_length) to both models"),
    "classes": "student has {s} classes, teacher has {t}: build the student head with the teacher's number of labels",
}


def _check_pair(student: object, teacher: object, what: str, dims: tuple[str, ...],
                attention_mask: Optional[Tensor] = None, note: str = "") -> Optional[Tensor]:
    """Check that student and teacher ``what`` match along ``dims``; return the mask as bool, or None."""
    layout = f"({', '.join(dims)}){note}"
    for who, x in (("student", student), ("teacher", teacher)):
        if not isinstance(x, Tensor):
            raise ValueError(f"{who} {what} must be a torch.Tensor of shape {layout}, got {type(x).__name__}")
        if not x.is_floating_point():
            raise ValueError(f"{who} {what} has dtype {x.dtype}; losses need floating-point activations "
                             f"(did you pass token ids or a mask instead of model outputs?)")
        if x.dim() != len(dims):
            raise ValueError(f"{who} {what} has shape {tuple(x.shape)}; expected {len(dims)} dimensions {layout}")
    if student.device != teacher.device:
        raise ValueError(f"student {what} are on {student.device}, teacher {what} on {teacher.device}: "
                         f"move the teacher and the student to the same device")
    s, t = tuple(student.shape), tuple(teacher.shape)
    if "heads" in dims:
        for who, shape in (("student", s), ("teacher", t)):
            if shape[2] != shape[3]:
                raise ValueError(f"{who} {what} have shape {shape}; expected square (batch, heads, T, T) "
                                 f"self-attention maps")
    for i, dim in enumerate(dims):
        if dim in _MISMATCH and s[i] != t[i]:
            fix = _MISMATCH[dim].format(s=s[i], t=t[i])
            raise ValueError(f"student {what} have shape {s}, teacher {what} {t}: {fix}")
    if attention_mask is None:
        return None
    return _check_mask(attention_mask, t[0], t[dims.index("T")], teacher.device)


def _check_mask(mask: object, batch: int, seq_len: int, device: torch.device) -> Tensor:
    if not isinstance(mask, Tensor) or tuple(mask.shape) != (batch, seq_len):
        got = f"shape {tuple(mask.shape)}" if isinstance(mask, Tensor) else f"type {type(mask).__name__}"
        raise ValueError(f"attention_mask has {got} but the activations need (batch, T) = ({batch}, {seq_len}): "
                         f"pass the 2-D mask from the tokenizer (1 = token, 0 = padding) of the batch these "
                         f"activations came from, not the extended additive mask built inside the model")
    return mask.to(device=device).bool()


def _check_projected(student: Tensor, projected: Tensor, teacher: Tensor, proj: Optional[ProjectionFn],
                     what: str) -> None:
    s, p, t = tuple(student.shape), tuple(projected.shape), tuple(teacher.shape)
    if p == t:
        return
    if proj is None:
        raise ValueError(f"student {what} have shape {s}, teacher {what} {t}: widths {s[2]} and {t[2]} differ, "
                         f"so a projection is needed; pass proj=Projection({s[2]}, {t[2]}) (see make_projections)")
    raise ValueError(f"the projection maps student {what} of shape {s} to {p}, but the teacher {what} have "
                     f"shape {t}: build it as Projection({s[2]}, {t[2]})")


def _check_count(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an int, got {value!r}")
    return value


def _check_layer_counts(n_student: object, n_teacher: object, strategy: str) -> tuple[int, int]:
    m, n = _check_count(n_student, "n_student"), _check_count(n_teacher, "n_teacher")
    if strategy not in LAYER_MAP_STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; choose one of {LAYER_MAP_STRATEGIES}")
    if n < 1:
        raise ValueError(f"the teacher needs at least 1 layer, got n_teacher={n}")
    if m < 1:
        raise ValueError(f"the student needs at least 1 layer, got n_student={m}")
    if m > n:
        raise ValueError(f"a student with {m} layers cannot learn from a teacher with {n}: each student "
                         f"layer needs its own teacher layer; use at most {n} student layers")
    if strategy == "uniform" and n % m:
        divisors = [str(d) for d in range(1, n + 1) if n % d == 0]
        listed = divisors[0] if len(divisors) == 1 else ", ".join(divisors[:-1]) + " or " + divisors[-1]
        raise ValueError(f"uniform mapping needs the teacher's layer count {n} to be divisible by the "
                         f"student's {m}; use a student with a layer count that divides {n}: {listed}, "
                         f"or strategy='top' / 'bottom'")
    return m, n


def _check_layers(student_out: object, teacher_out: object, mapping: Sequence[int],
                  projections: Optional[Sequence[ProjectionFn]], weights: Sequence[float], attention_kind: str):
    """transformer_loss's arguments, checked: (s_hidden, s_scores, t_hidden, t_scores, projections)."""
    if len(weights) != 3:
        raise ValueError(f"weights must be (w_emb, w_hid, w_att), got {tuple(weights)}")
    if attention_kind not in ATTENTION_KINDS:
        raise ValueError(f"unknown attention_kind {attention_kind!r}; choose one of {ATTENTION_KINDS}")
    found = []
    for name, out in (("student_out", student_out), ("teacher_out", teacher_out)):
        hidden, scores = getattr(out, "hidden_states", None), getattr(out, "attention_scores", None)
        if hidden is None:
            raise ValueError(f"{name} has no hidden_states: pass the model outputs with hidden_states, a tuple of "
                             f"L + 1 tensors (batch, T, H), embedding output first")
        if len(hidden) < 2:
            raise ValueError(f"{name}.hidden_states has {len(hidden)} entries; expected L + 1 >= 2 "
                             f"(embeddings, then each layer)")
        if float(weights[2]) != 0 and scores is None:
            raise ValueError(f"{name} has no attention_scores: the attention loss needs the raw scores "
                             f"(before mask and softmax) of every layer, a tuple of L tensors "
                             f"(batch, heads, T, T); or set the attention weight to 0")
        if float(weights[2]) != 0 and len(scores) != len(hidden) - 1:
            raise ValueError(f"{name} has {len(hidden)} hidden_states but {len(scores)} attention_scores; "
                             f"expected L + 1 and L (the embedding output has no attention map)")
        found += [hidden, scores]
    s_hidden, s_scores, t_hidden, t_scores = found
    n_student, n_teacher = len(s_hidden) - 1, len(t_hidden) - 1
    mapping = [int(g) for g in mapping]
    if len(mapping) != n_student:
        raise ValueError(f"mapping has {len(mapping)} entries but the student has {n_student} layers: "
                         f"build it with layer_map({n_student}, {n_teacher})")
    bad = [g for g in mapping if not 1 <= g <= n_teacher]
    if bad:
        raise ValueError(f"mapping {mapping} refers to teacher layers {bad}, but the teacher has only "
                         f"{n_teacher} layers (valid: 1..{n_teacher}; 0 is the embedding layer and is "
                         f"matched separately): build it with layer_map({n_student}, {n_teacher})")
    if projections is None:
        projections = [None] * (n_student + 1)
    elif len(projections) != n_student + 1:
        raise ValueError(f"got {len(projections)} projections for a student with {n_student} layers; "
                         f"expected {n_student + 1} (index 0 for the embeddings, then one per layer): "
                         f"use make_projections(student_width, teacher_width, {n_student})")
    return s_hidden, s_scores, t_hidden, t_scores, projections


def _at_layer(where: str, fn: Callable[..., Tensor], *args, **kwargs) -> Tensor:
    """fn(*args, **kwargs), with ``where`` (which student and teacher layer) added to any ValueError."""
    try:
        return fn(*args, **kwargs)
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from err

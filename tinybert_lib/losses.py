"""TinyBERT distillation losses, layer mapping and width projections.

This module implements the objective of TinyBERT (Jiao et al., "TinyBERT: Distilling BERT
for Natural Language Understanding", Findings of EMNLP 2020, arXiv 1909.10351):

* ``embedding_loss``  L_emb  = MSE(E^S W_e, E^T)                       (layer m = 0)
* ``hidden_loss``     L_hid  = MSE(H^S W_h, H^T)                       (layers 1..M)
* ``attention_loss``  L_att  = (1/h) sum_i MSE(A_i^S, A_i^T)           (layers 1..M)
* ``prediction_loss`` L_pred = -softmax(z^T / t) . log softmax(z^S / t) (layer M + 1)

and the glue around them:

* ``layer_map``         which teacher layer g(m) each student layer m learns from;
* ``Projection`` / ``make_projections``  the learnable W_e / W_h that lift the student width
  to the teacher width;
* ``transformer_loss``  sum_m [L_hid + L_att](S_m, T_g(m)) + L_emb(S_0, T_0), the
  "Transformer-layer" part used by general distillation and by step 1 of task distillation.

Conventions shared by every loss
--------------------------------
Tensors are batch-first: hidden states (batch, T, H), attention scores
(batch, heads, T, T), logits (batch, classes).

Masking. ``attention_mask`` is the 2-D tokenizer mask of shape (batch, T): 1 = real token,
0 = padding. With ``attention_mask=None`` every MSE is the plain mean over all elements, i.e.
exactly ``torch.nn.functional.mse_loss``. With a mask the mean runs over real tokens only:
real positions x hidden units for hidden states / embeddings, and
(batch, head, real query, real key) for attention scores. The difference is zeroed at padded
entries (``masked_fill``, not a multiplication), so whatever a model leaves there (an additive
-10000 or -inf mask, activations of pad tokens) cannot reach the loss or produce NaN gradients.

Precision. Losses are computed in (at least) float32 even when the inputs are float16 /
bfloat16, because squared errors and sums over thousands of elements overflow or lose
precision in half precision under AMP. float64 inputs stay float64.

Gradients. Nothing here detaches the teacher: run the teacher under ``torch.no_grad()``
(or pass detached tensors) so that no graph is kept for it.

Where the original implementation differs (see the course's reference sheet)
--------------------------------------------------------------------------
* It averages the attention MSE over *all* batch x head x query x key elements, padding
  included, after zeroing padded keys -> ``attention_loss(..., kind="mse_original")``.
* It uses one shared ``fit_dense`` for all layers -> ``make_projections(..., shared=True)``.
* Its soft cross-entropy is divided by the number of classes (issue #176); ours is not.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "embedding_loss",
    "hidden_loss",
    "attention_loss",
    "prediction_loss",
    "layer_map",
    "Projection",
    "make_projections",
    "transformer_loss",
    "ATTENTION_KINDS",
    "LAYER_MAP_STRATEGIES",
]

ATTENTION_KINDS = ("mse", "kl", "mse_original")
LAYER_MAP_STRATEGIES = ("uniform", "top", "bottom")

# The original code adds this to the scores of padded keys, then zeroes everything at or
# below _ORIGINAL_CUTOFF in both tensors.
_ORIGINAL_MASK_VALUE = -10000.0
_ORIGINAL_CUTOFF = -100.0

ProjectionFn = Callable[[Tensor], Tensor]


# --------------------------------------------------------------------------------------
# Internal helpers: validation, precision, masking
# --------------------------------------------------------------------------------------


def _shape(x: Tensor) -> tuple:
    return tuple(x.shape)


def _check_tensor(x: object, name: str, ndim: int, layout: str) -> Tensor:
    if not isinstance(x, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of shape {layout}, got {type(x).__name__}")
    if not x.is_floating_point():
        raise ValueError(
            f"{name} has dtype {x.dtype}; losses need floating-point activations "
            f"(did you pass token ids or a mask instead of model outputs?)"
        )
    if x.dim() != ndim:
        raise ValueError(f"{name} has shape {_shape(x)}; expected {ndim} dimensions {layout}")
    return x


def _check_same_device(student: Tensor, teacher: Tensor, what: str) -> None:
    if student.device != teacher.device:
        raise ValueError(
            f"student {what} are on {student.device}, teacher {what} on {teacher.device}: "
            f"move the teacher and the student to the same device"
        )


def _compute_dtype(*tensors: Tensor) -> torch.dtype:
    dtype = tensors[0].dtype
    for t in tensors[1:]:
        dtype = torch.promote_types(dtype, t.dtype)
    # Half-precision sums of squared errors overflow (fp16) or round badly (bf16).
    return torch.promote_types(dtype, torch.float32)


def _check_mask(mask: object, batch: int, seq_len: int, device: torch.device) -> Tensor:
    """Return the mask as a bool tensor (batch, T) on ``device``, or raise a clear error."""
    if not isinstance(mask, Tensor):
        raise ValueError(f"attention_mask must be a torch.Tensor of shape (batch, T), got {type(mask).__name__}")
    if mask.dim() != 2:
        raise ValueError(
            f"attention_mask has shape {_shape(mask)}; expected (batch, T) = ({batch}, {seq_len}). "
            f"Pass the 2-D mask from the tokenizer (1 = token, 0 = padding), not the "
            f"extended additive mask built inside the model"
        )
    if _shape(mask) != (batch, seq_len):
        raise ValueError(
            f"attention_mask has shape {_shape(mask)} but the activations need (batch, T) = "
            f"({batch}, {seq_len}): use the mask of the batch these activations came from"
        )
    return mask.to(device=device).bool()


class _MaskedSquaredError(torch.autograd.Function):
    """sum over kept entries of (student - teacher)^2, divided by ``count``.

    The difference is computed once and zeroed at the dropped entries in place; the backward is
    written by hand (2 (S - T) / count, exactly 0 at dropped entries), so the large attention
    maps are walked a few times instead of the dozen times masked copies, a subtraction, a
    square and their autograd backward would take.
    """

    @staticmethod
    def forward(ctx, student: Tensor, teacher: Tensor, drop: Optional[Tensor], count: Tensor) -> Tensor:
        diff = student - teacher
        if drop is not None:
            # Zeroing the difference (not multiplying by a 0/1 mask) means an inf/NaN sitting at
            # a padded position cannot reach the loss, nor, through diff, the gradient.
            diff.masked_fill_(drop, 0.0)
        ctx.save_for_backward(diff, count)
        return diff.pow(2).sum() / count

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Optional[Tensor], Optional[Tensor], None, None]:
        diff, count = ctx.saved_tensors
        g = diff * (2 * grad / count)
        return (g if ctx.needs_input_grad[0] else None, -g if ctx.needs_input_grad[1] else None, None, None)


def _masked_mse(student: Tensor, teacher: Tensor, keep: Tensor) -> Tensor:
    """Mean squared error over the entries where ``keep`` (broadcastable bool) is True."""
    # keep broadcasts over some dimensions (heads, hidden units): each kept entry stands for
    # student.numel() / keep.numel() entries. clamp: an all-padding batch gives 0, not 0/0.
    count = (keep.sum() * (student.numel() // keep.numel())).clamp_min(1).to(student.dtype)
    # A batch without padding (general distillation's full blocks) needs no masking at all;
    # checked on the CPU only, where it saves a pass and the check costs no device sync.
    drop = None if keep.device.type == "cpu" and bool(keep.all()) else ~keep
    return _MaskedSquaredError.apply(student, teacher, drop, count)


def _apply_projection(proj: Optional[ProjectionFn], x: Tensor) -> Tensor:
    if proj is None:
        return x
    if isinstance(proj, nn.Module):
        param = next(proj.parameters(), None)
        # A half-precision activation fed to a float32 Linear outside autocast would fail
        # with a dtype error; under autocast this cast is harmless.
        if param is not None and param.is_floating_point() and param.dtype != x.dtype:
            x = x.to(param.dtype)
    return proj(x)


def _width_loss(
    student: Tensor,
    teacher: Tensor,
    proj: Optional[ProjectionFn],
    attention_mask: Optional[Tensor],
    what: str,
) -> Tensor:
    """Shared body of ``embedding_loss`` and ``hidden_loss``."""
    _check_tensor(student, f"student {what}", 3, "(batch, T, hidden)")
    _check_tensor(teacher, f"teacher {what}", 3, "(batch, T, hidden)")
    _check_same_device(student, teacher, what)
    s_shape, t_shape = _shape(student), _shape(teacher)
    if s_shape[0] != t_shape[0]:
        raise ValueError(
            f"student {what} have shape {s_shape}, teacher {what} {t_shape}: batch sizes "
            f"{s_shape[0]} and {t_shape[0]} differ; feed the same batch to both models"
        )
    if s_shape[1] != t_shape[1]:
        raise ValueError(
            f"student {what} have shape {s_shape}, teacher {what} {t_shape}: sequence lengths "
            f"{s_shape[1]} and {t_shape[1]} differ; feed the same input_ids (same tokenizer, "
            f"same padding / max_length) to both models"
        )
    if proj is None and s_shape[2] != t_shape[2]:
        raise ValueError(
            f"student {what} have shape {s_shape}, teacher {what} {t_shape}: widths "
            f"{s_shape[2]} and {t_shape[2]} differ, so a projection is needed; pass "
            f"proj=Projection({s_shape[2]}, {t_shape[2]}) (see make_projections)"
        )

    projected = _apply_projection(proj, student)
    if _shape(projected) != t_shape:
        raise ValueError(
            f"the projection maps student {what} of shape {s_shape} to {_shape(projected)}, "
            f"but the teacher {what} have shape {t_shape}: build it as "
            f"Projection({s_shape[2]}, {t_shape[2]})"
        )

    dtype = _compute_dtype(projected, teacher)
    projected, teacher = projected.to(dtype), teacher.to(dtype)
    if attention_mask is None:
        return F.mse_loss(projected, teacher)
    mask = _check_mask(attention_mask, t_shape[0], t_shape[1], teacher.device)
    return _masked_mse(projected, teacher, mask[:, :, None])


# --------------------------------------------------------------------------------------
# Per-layer losses
# --------------------------------------------------------------------------------------


def embedding_loss(
    student_emb: Tensor,
    teacher_emb: Tensor,
    proj: Optional[ProjectionFn],
    attention_mask: Optional[Tensor] = None,
) -> Tensor:
    """Embedding-layer loss (layer m = 0 of the mapping).

    Formula::

        L_emb = MSE(E^S W_e, E^T)

    where E^S (batch, T, d) and E^T (batch, T, d') are the outputs of the student's and the
    teacher's embedding layers (``hidden_states[0]``) and W_e (d x d') is learnable.

    Args:
        student_emb: student embedding output, (batch, T, d).
        teacher_emb: teacher embedding output, (batch, T, d').
        proj: callable / ``nn.Module`` mapping width d to d' (W_e, e.g. ``Projection(d, d')``).
            ``None`` means identity and is only allowed when d == d'.
        attention_mask: optional (batch, T) mask, 1 = token, 0 = padding.

    Masking: with ``attention_mask=None`` the mean runs over all batch x T x d' elements
    (``F.mse_loss``); with a mask it runs over real positions x d' hidden units only.

    Returns:
        A scalar tensor, float32 (or float64 if an input is float64).

    Raises:
        ValueError: mismatched batch size or sequence length, different widths without a
            projection, a projection with the wrong output width, or a bad mask shape.
    """
    return _width_loss(student_emb, teacher_emb, proj, attention_mask, "embeddings")


def hidden_loss(
    student_hidden: Tensor,
    teacher_hidden: Tensor,
    proj: Optional[ProjectionFn],
    attention_mask: Optional[Tensor] = None,
) -> Tensor:
    """Hidden-state loss between student layer m and teacher layer g(m).

    Formula::

        L_hid = MSE(H^S W_h, H^T)

    where H^S (batch, T, d) is the output of student layer m, H^T (batch, T, d') the output
    of teacher layer g(m), and W_h (d x d') is learnable.

    Args:
        student_hidden: student layer output, (batch, T, d).
        teacher_hidden: teacher layer output, (batch, T, d').
        proj: callable / ``nn.Module`` mapping width d to d' (W_h). ``None`` means identity
            and is only allowed when d == d'.
        attention_mask: optional (batch, T) mask, 1 = token, 0 = padding.

    Masking: with ``attention_mask=None`` the mean runs over all batch x T x d' elements
    (``F.mse_loss``); with a mask it runs over real positions x d' hidden units only.

    Returns:
        A scalar tensor, float32 (or float64 if an input is float64).

    Raises:
        ValueError: as for ``embedding_loss``.
    """
    return _width_loss(student_hidden, teacher_hidden, proj, attention_mask, "hidden states")


def attention_loss(
    student_scores: Tensor,
    teacher_scores: Tensor,
    attention_mask: Optional[Tensor] = None,
    kind: str = "mse",
) -> Tensor:
    """Attention-based loss between student layer m and teacher layer g(m).

    Inputs are *raw* attention scores A = Q K^T / sqrt(d_head) of shape
    (batch, heads, T, T), taken before the padding mask is added and before the softmax.
    The student must have the teacher's head count: maps are matched head by head.

    ``kind="mse"`` (the paper)::

        L_att = (1/h) sum_{i=1..h} MSE(A_i^S, A_i^T)

        No mask: mean over all batch x head x query x key elements (= F.mse_loss).
        Mask:    mean over (batch, head, real query, real key) only.

    ``kind="kl"`` (distribution matching, an alternative to the paper)::

        P = softmax_k(A^T),  Q = softmax_k(A^S)   (softmax over keys)
        L = mean_{b, i, q} sum_k P_k (log P_k - log Q_k)
          = cross-entropy(P, Q) - entropy(P)

        The teacher's entropy does not depend on the student, so this has the same gradient
        as the cross-entropy but is 0 when the maps agree.
        No mask: mean over all (batch, head, query).
        Mask:    the softmax runs over real keys only, the mean over (batch, head, real query).

    ``kind="mse_original"`` (what the authors' code computes)::

        A <- A + (1 - mask_key) * (-10000);  A[A <= -100] <- 0   (both tensors)
        L = mean over ALL batch x head x query x key elements of (A^S - A^T)^2

        Padded keys contribute zero error but still count in the denominator, and padded
        query rows are not excluded, so the loss shrinks as padding grows. Note that any
        genuine score <= -100 is zeroed too. With ``attention_mask=None`` it equals "mse".

    Args:
        student_scores: (batch, heads, T, T) raw student scores.
        teacher_scores: (batch, heads, T, T) raw teacher scores.
        attention_mask: optional (batch, T) mask, 1 = token, 0 = padding.
        kind: "mse", "kl" or "mse_original".

    Returns:
        A scalar tensor, float32 (or float64 if an input is float64).

    Raises:
        ValueError: unknown ``kind``, different batch / head / length, non-square maps,
            or a bad mask shape.
    """
    if kind not in ATTENTION_KINDS:
        raise ValueError(f"unknown attention loss kind {kind!r}; choose one of {ATTENTION_KINDS}")
    _check_tensor(student_scores, "student attention scores", 4, "(batch, heads, T, T)")
    _check_tensor(teacher_scores, "teacher attention scores", 4, "(batch, heads, T, T)")
    _check_same_device(student_scores, teacher_scores, "attention scores")
    s_shape, t_shape = _shape(student_scores), _shape(teacher_scores)
    for name, shape in (("student", s_shape), ("teacher", t_shape)):
        if shape[2] != shape[3]:
            raise ValueError(
                f"{name} attention scores have shape {shape}; expected square "
                f"(batch, heads, T, T) self-attention maps"
            )
    if s_shape[0] != t_shape[0]:
        raise ValueError(
            f"student attention scores have shape {s_shape}, teacher {t_shape}: batch sizes "
            f"{s_shape[0]} and {t_shape[0]} differ; feed the same batch to both models"
        )
    if s_shape[1] != t_shape[1]:
        raise ValueError(
            f"student attention scores have shape {s_shape}, teacher {t_shape}: student has "
            f"{s_shape[1]} heads, teacher has {t_shape[1]}: attention maps are matched head "
            f"by head; build the student with the teacher's head count"
        )
    if s_shape[2] != t_shape[2]:
        raise ValueError(
            f"student attention scores have shape {s_shape}, teacher {t_shape}: sequence "
            f"lengths {s_shape[2]} and {t_shape[2]} differ; feed the same input_ids (same "
            f"tokenizer, same padding / max_length) to both models"
        )

    dtype = _compute_dtype(student_scores, teacher_scores)
    student, teacher = student_scores.to(dtype), teacher_scores.to(dtype)
    batch, _, seq_len, _ = t_shape
    mask = None
    if attention_mask is not None:
        mask = _check_mask(attention_mask, batch, seq_len, teacher.device)

    if kind == "kl":
        return _attention_kl(student, teacher, mask)
    if mask is None:
        return F.mse_loss(student, teacher)
    if kind == "mse_original":
        return _attention_mse_original(student, teacher, mask)
    pairs = mask[:, None, :, None] & mask[:, None, None, :]  # (batch, 1, query, key)
    return _masked_mse(student, teacher, pairs)


def _attention_kl(student: Tensor, teacher: Tensor, mask: Optional[Tensor]) -> Tensor:
    if mask is None:
        log_p = F.log_softmax(teacher, dim=-1)
        log_q = F.log_softmax(student, dim=-1)
        return (log_p.exp() * (log_p - log_q)).sum(-1).mean()

    keys = mask[:, None, None, :]  # (batch, 1, 1, key)
    # A finite fill (not -inf) gives padded keys exactly zero probability while keeping a
    # fully padded row finite (uniform) instead of NaN; such rows are dropped below anyway.
    fill = torch.finfo(teacher.dtype).min
    log_p = F.log_softmax(teacher.masked_fill(~keys, fill), dim=-1)
    log_q = F.log_softmax(student.masked_fill(~keys, fill), dim=-1)
    p = log_p.exp()  # exactly 0 at padded keys
    # Zeroing the padded keys' huge negative log-probabilities keeps 0 * (huge - huge) out
    # of the sum (and of the gradient) without changing the KL.
    log_ratio = (log_p - log_q).masked_fill(~keys, 0.0)
    per_query = (p * log_ratio).sum(-1)  # (batch, heads, query)
    queries = mask[:, None, :].expand_as(per_query)
    return per_query.masked_fill(~queries, 0.0).sum() / queries.sum().clamp_min(1)


def _attention_mse_original(student: Tensor, teacher: Tensor, mask: Tensor) -> Tensor:
    additive = (~mask).to(student.dtype)[:, None, None, :] * _ORIGINAL_MASK_VALUE

    def cut(scores: Tensor) -> Tensor:
        scores = scores + additive
        return torch.where(scores <= _ORIGINAL_CUTOFF, torch.zeros_like(scores), scores)

    return F.mse_loss(cut(student), cut(teacher))


def prediction_loss(
    student_logits: Tensor,
    teacher_logits: Tensor,
    temperature: float = 1.0,
) -> Tensor:
    """Prediction-layer loss (layer M + 1): soft cross-entropy with the teacher.

    Classification (``classes >= 2``)::

        L_pred = -(1/B) sum_b sum_c softmax(z^T_b / t)_c * log softmax(z^S_b / t)_c

    averaged over the batch only. The original implementation takes ``.mean()`` over batch
    *and* classes, i.e. divides this by the number of classes C (a known bug, issue #176 of
    huawei-noah/Pretrained-Language-Model), which silently shrinks the loss and its gradient
    by 1/C. No t^2 factor is applied (unlike Hinton et al.); the paper uses t = 1.

    Regression (``classes == 1``, e.g. STS-B)::

        L_pred = MSE(z^S, z^T)   (mean over the batch; ``temperature`` is ignored)

    i.e. the student regresses onto the teacher's outputs. (The original code uses the gold
    labels here instead of the teacher, issue #128.)

    Masking: none; there is one prediction per example.

    Args:
        student_logits: (batch, classes).
        teacher_logits: (batch, classes); not detached here, compute it under no_grad.
        temperature: t > 0; both logit vectors are divided by it.

    Returns:
        A scalar tensor, float32 (or float64 if an input is float64).

    Raises:
        ValueError: non-positive temperature, or logits whose shapes differ / are not 2-D.
    """
    if not float(temperature) > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    _check_tensor(student_logits, "student logits", 2, "(batch, classes); for regression (batch, 1)")
    _check_tensor(teacher_logits, "teacher logits", 2, "(batch, classes); for regression (batch, 1)")
    _check_same_device(student_logits, teacher_logits, "logits")
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(
            f"student logits have shape {_shape(student_logits)}, teacher logits "
            f"{_shape(teacher_logits)}: build the student head with the teacher's number of "
            f"labels and feed the same batch to both"
        )
    dtype = _compute_dtype(student_logits, teacher_logits)
    student, teacher = student_logits.to(dtype), teacher_logits.to(dtype)
    if student.shape[1] == 1:
        return F.mse_loss(student, teacher)
    teacher_probs = F.softmax(teacher / temperature, dim=-1)
    student_log_probs = F.log_softmax(student / temperature, dim=-1)
    return -(teacher_probs * student_log_probs).sum(dim=-1).mean()


# --------------------------------------------------------------------------------------
# Layer mapping and projections
# --------------------------------------------------------------------------------------


def _check_count(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an int, got {value!r}")
    return value


def layer_map(n_student: int, n_teacher: int, strategy: str = "uniform") -> list[int]:
    """Teacher layer g(m) for each student layer m = 1..M.

    Layers are numbered from 1; 0 is the embedding layer (g(0) = 0 always, not returned)
    and the prediction layer is g(M + 1) = N + 1. Strategies (paper, Section 4.5)::

        uniform: g(m) = m * N / M     (requires M to divide N; TinyBERT's choice)
        top:     g(m) = N - M + m     (the last M teacher layers)
        bottom:  g(m) = m             (the first M teacher layers)

    Examples: ``layer_map(3, 6) == [2, 4, 6]``; ``layer_map(4, 12) == [3, 6, 9, 12]``.

    Args:
        n_student: M, number of student Transformer layers (1 <= M <= N).
        n_teacher: N, number of teacher Transformer layers.
        strategy: "uniform", "top" or "bottom".

    Returns:
        A list of M teacher layer numbers in 1..N; element m - 1 is g(m).

    Raises:
        ValueError: M < 1, M > N, N not divisible by M for "uniform", unknown strategy.
    """
    m, n = _check_count(n_student, "n_student"), _check_count(n_teacher, "n_teacher")
    if strategy not in LAYER_MAP_STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; choose one of {LAYER_MAP_STRATEGIES}")
    if n < 1:
        raise ValueError(f"the teacher needs at least 1 layer, got n_teacher={n}")
    if m < 1:
        raise ValueError(f"the student needs at least 1 layer, got n_student={m}")
    if m > n:
        raise ValueError(
            f"a student with {m} layers cannot learn from a teacher with {n}: each student "
            f"layer needs its own teacher layer; use at most {n} student layers"
        )
    if strategy == "uniform":
        if n % m:
            divisors = [str(d) for d in range(1, n + 1) if n % d == 0]
            listed = divisors[0] if len(divisors) == 1 else ", ".join(divisors[:-1]) + " or " + divisors[-1]
            raise ValueError(
                f"uniform mapping needs the teacher's layer count {n} to be divisible by the "
                f"student's {m}; use a student with a layer count that divides {n}: {listed}, "
                f"or strategy='top' / 'bottom'"
            )
        step = n // m
        return [k * step for k in range(1, m + 1)]
    if strategy == "top":
        return [n - m + k for k in range(1, m + 1)]
    return list(range(1, m + 1))


class Projection(nn.Module):
    """Learnable map from the student width to the teacher width: x -> x W + b.

    The W_e / W_h of the paper, with a bias as in the original ``fit_dense``. Applied to
    student activations only, and used only during distillation: it is not part of the
    final student model.
    """

    def __init__(self, student_width: int, teacher_width: int) -> None:
        super().__init__()
        self.student_width = _check_count(student_width, "student_width")
        self.teacher_width = _check_count(teacher_width, "teacher_width")
        if self.student_width < 1 or self.teacher_width < 1:
            raise ValueError(f"widths must be positive, got {student_width} -> {teacher_width}")
        self.linear = nn.Linear(self.student_width, self.teacher_width, bias=True)

    def forward(self, x: Tensor) -> Tensor:
        """Map (..., student_width) to (..., teacher_width)."""
        return self.linear(x)


def make_projections(
    student_width: int,
    teacher_width: int,
    num_student_layers: int,
    shared: bool = False,
) -> nn.ModuleList:
    """The projections used by ``transformer_loss``, one per mapped student layer.

    Index 0 maps the student's embedding output (W_e); index m (1..M) maps the output of
    student layer m (W_h), giving ``num_student_layers + 1`` entries.

    * ``shared=False`` (default, the course's choice): every index holds its own
      ``Projection``. The paper writes separate W_e and W_h; giving each mapped layer its
      own matrix is the natural per-layer reading and costs (M + 1)(d d' + d') parameters.
    * ``shared=True`` (the original code): a single ``fit_dense`` shared by all layers,
      embedding output included. The same module object sits at every index, so its
      parameters appear once in ``.parameters()`` (d d' + d in total) and receive the
      summed gradient of all layers.

    Add the projections' parameters to the optimiser alongside the student's.
    """
    layers = _check_count(num_student_layers, "num_student_layers")
    if layers < 1:
        raise ValueError(f"num_student_layers must be >= 1, got {layers}")
    if shared:
        one = Projection(student_width, teacher_width)
        return nn.ModuleList([one] * (layers + 1))
    return nn.ModuleList(Projection(student_width, teacher_width) for _ in range(layers + 1))


# --------------------------------------------------------------------------------------
# Across layers
# --------------------------------------------------------------------------------------


def _outputs(out: object, name: str, need_attention: bool) -> tuple[Sequence[Tensor], Optional[Sequence[Tensor]]]:
    hidden = getattr(out, "hidden_states", None)
    if hidden is None:
        raise ValueError(
            f"{name} has no hidden_states: pass the model outputs with hidden_states, a tuple of "
            f"L + 1 tensors (batch, T, H), embedding output first"
        )
    if len(hidden) < 2:
        raise ValueError(f"{name}.hidden_states has {len(hidden)} entries; expected L + 1 >= 2 (embeddings, then each layer)")
    scores = getattr(out, "attention_scores", None)
    if need_attention:
        if scores is None:
            raise ValueError(
                f"{name} has no attention_scores: the attention loss needs the raw scores "
                f"(before mask and softmax) of every layer, a tuple of L tensors "
                f"(batch, heads, T, T); or set the attention weight to 0"
            )
        if len(scores) != len(hidden) - 1:
            raise ValueError(
                f"{name} has {len(hidden)} hidden_states but {len(scores)} attention_scores; "
                f"expected L + 1 and L (the embedding output has no attention map)"
            )
    return hidden, scores


def _at_layer(fn: Callable[..., Tensor], where: str, *args, **kwargs) -> Tensor:
    try:
        return fn(*args, **kwargs)
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from err


def transformer_loss(
    student_out: object,
    teacher_out: object,
    mapping: Sequence[int],
    projections: Optional[Sequence[ProjectionFn]],
    attention_mask: Optional[Tensor] = None,
    weights: Sequence[float] = (1, 1, 1),
    attention_kind: str = "mse",
) -> dict[str, Tensor]:
    """Transformer-layer distillation loss: embeddings, hidden states and attention.

    Formula (paper, Eq. 11 without the prediction layer), with g = ``mapping``::

        emb   = L_emb(S.hidden_states[0], T.hidden_states[0], W_0)
        hid   = sum_{m=1..M} L_hid(S.hidden_states[m], T.hidden_states[g(m)], W_m)
        att   = sum_{m=1..M} L_att(S.attention_scores[m-1], T.attention_scores[g(m)-1])
        total = w_emb * emb + w_hid * hid + w_att * att

    The per-layer losses are summed over layers (not averaged), as in the paper and the
    original code, so their scale grows with M.

    Args:
        student_out, teacher_out: any objects with ``hidden_states`` (tuple of L + 1 tensors
            (batch, T, H): embedding output first, then each layer) and ``attention_scores``
            (tuple of L tensors (batch, heads, T, T): raw scores before mask and softmax;
            only needed when the attention weight is non-zero).
        mapping: g(1..M) from ``layer_map``; must have one entry per student layer.
        projections: M + 1 projections from ``make_projections`` (index 0 = W_e,
            index m = W_h for student layer m), or ``None`` when the widths are equal.
        attention_mask: optional (batch, T) mask, 1 = token, 0 = padding; the masking
            convention is that of ``hidden_loss`` / ``attention_loss``.
        weights: (w_emb, w_hid, w_att). A weight of 0 skips that term entirely (it is not
            computed and is returned as a zero tensor), which makes ablations cheap.
        attention_kind: "mse" (paper), "kl" or "mse_original"; see ``attention_loss``.

    Returns:
        ``{"emb", "hid", "att", "total"}``; the three components are unweighted (for
        logging), ``total`` is the weighted sum to back-propagate.

    Raises:
        ValueError: wrong mapping length, a teacher with too few layers, wrong number of
            projections, missing outputs, or any per-layer mismatch (the message says which
            student / teacher layer).
    """
    if len(weights) != 3:
        raise ValueError(f"weights must be (w_emb, w_hid, w_att), got {tuple(weights)}")
    w_emb, w_hid, w_att = (float(w) for w in weights)
    if attention_kind not in ATTENTION_KINDS:
        raise ValueError(f"unknown attention_kind {attention_kind!r}; choose one of {ATTENTION_KINDS}")

    s_hidden, s_scores = _outputs(student_out, "student_out", w_att != 0)
    t_hidden, t_scores = _outputs(teacher_out, "teacher_out", w_att != 0)
    n_student, n_teacher = len(s_hidden) - 1, len(t_hidden) - 1
    mapping = [int(g) for g in mapping]
    if len(mapping) != n_student:
        raise ValueError(
            f"mapping has {len(mapping)} entries but the student has {n_student} layers: "
            f"build it with layer_map({n_student}, {n_teacher})"
        )
    bad = [g for g in mapping if not 1 <= g <= n_teacher]
    if bad:
        raise ValueError(
            f"mapping {mapping} refers to teacher layers {bad}, but the teacher has only "
            f"{n_teacher} layers (valid: 1..{n_teacher}; 0 is the embedding layer and is "
            f"matched separately): build it with layer_map({n_student}, {n_teacher})"
        )
    if projections is None:
        projections = [None] * (n_student + 1)
    elif len(projections) != n_student + 1:
        raise ValueError(
            f"got {len(projections)} projections for a student with {n_student} layers; "
            f"expected {n_student + 1} (index 0 for the embeddings, then one per layer): "
            f"use make_projections(student_width, teacher_width, {n_student})"
        )

    device = s_hidden[0].device
    zero = torch.zeros((), device=device, dtype=torch.float32)
    emb = hid = att = zero

    if w_emb != 0:
        emb = _at_layer(
            embedding_loss, "embeddings (student 0 vs teacher 0)",
            s_hidden[0], t_hidden[0], projections[0], attention_mask,
        )
    if w_hid != 0:
        hid = sum(
            (
                _at_layer(
                    hidden_loss, f"hidden states (student layer {m} vs teacher layer {g})",
                    s_hidden[m], t_hidden[g], projections[m], attention_mask,
                )
                for m, g in enumerate(mapping, start=1)
            ),
            start=zero,
        )
    if w_att != 0:
        att = sum(
            (
                _at_layer(
                    attention_loss, f"attention (student layer {m} vs teacher layer {g})",
                    s_scores[m - 1], t_scores[g - 1], attention_mask, kind=attention_kind,
                )
                for m, g in enumerate(mapping, start=1)
            ),
            start=zero,
        )

    total = w_emb * emb + w_hid * hid + w_att * att
    return {"emb": emb, "hid": hid, "att": att, "total": total}

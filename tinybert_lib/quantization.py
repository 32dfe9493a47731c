"""Int8 quantization by hand: what ``quantize_dynamic`` does to a weight matrix and an input (lesson 12).

Lessons: 12.

A float tensor ``x`` is stored as 8-bit integers ``q`` with one ``scale`` and one ``zero_point``:

    q = clamp(round(x / scale) + zero_point, q_min, q_max)        x ≈ (q - zero_point) * scale

*Weights* are quantized once, **symmetrically** (zero point 0, signed int8): the scale maps the
largest |w| to the edge of [-128, 127]. *Activations* of a dynamically quantized layer are
quantized anew for every batch, **asymmetrically** (unsigned, with a zero point), because
they need not be centred on 0. The layer then multiplies integers and rescales once:

    y = scale_x * scale_w * (q_x - zero_point_x) @ q_w^T + b

These functions follow PyTorch's x86 kernels, so that ``int8_linear`` reproduces
``torch.ao.nn.quantized.dynamic.Linear`` up to float rounding.
"""

from __future__ import annotations

import torch

INT8_MIN, INT8_MAX = -128, 127
# x86 kernels keep activations to 7 bits (0..127, "reduce_range") so that a sum of two int8 x uint8
# products cannot overflow the 16-bit intermediate that the fast instructions use.
ACTIVATION_MAX = 127


def _inverse(scale: float) -> torch.Tensor:
    # The kernels multiply by a float32 1/scale rather than divide by scale: at a value halfway between two
    # integers the two can round differently, so the course does as they do.
    return 1.0 / torch.tensor(scale, dtype=torch.float32)


def _weight_scale(w: torch.Tensor) -> float:
    """Symmetric per-tensor scale of a weight: the largest |w| maps to half the int8 range (float32, as stored)."""
    scale = w.detach().abs().max().float() / ((INT8_MAX - INT8_MIN) / 2)
    return max(scale.item(), torch.finfo(torch.float32).eps)


def quantize_weight(w: torch.Tensor) -> tuple[torch.Tensor, float]:
    """(int8 values, scale) of a weight, with zero point 0."""
    scale = _weight_scale(w)
    return torch.clamp(torch.round(w.detach().float() * _inverse(scale)), INT8_MIN, INT8_MAX).to(torch.int8), scale


def _activation_qparams(x: torch.Tensor, q_max: int = ACTIVATION_MAX) -> tuple[float, int]:
    """(scale, zero point) that map [min(x, 0), max(x, 0)] onto 0..q_max: the real 0 is an exact integer."""
    lo, hi = min(x.min().item(), 0.0), max(x.max().item(), 0.0)
    scale = (hi - lo) / q_max if hi > lo else 0.1
    # the zero point from whichever end of the range loses less precision, rounded half to even
    from_lo, from_hi = -lo / scale, q_max - hi / scale
    zero_point = from_lo if abs(lo / scale) < q_max + abs(hi / scale) else from_hi
    return float(torch.tensor(scale, dtype=torch.float32)), int(min(max(round(zero_point), 0), q_max))


def quantize_activation(x: torch.Tensor, q_max: int = ACTIVATION_MAX) -> tuple[torch.Tensor, float, int]:
    """(unsigned values, scale, zero point) of one batch of inputs."""
    scale, zero_point = _activation_qparams(x, q_max)
    q = torch.clamp(torch.round(x.detach().float() * _inverse(scale) + zero_point), 0, q_max)
    return q.to(torch.uint8), scale, zero_point


def dequantize(q: torch.Tensor, scale: float, zero_point: int = 0) -> torch.Tensor:
    """The float values that int8 ``q`` stands for."""
    return (q.float() - zero_point) * scale


def int8_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """A dynamically quantized ``nn.Linear``: int8 weight, per-batch uint8 input, integer products."""
    q_w, s_w = quantize_weight(weight)
    q_x, s_x, z_x = quantize_activation(x)
    # The kernels accumulate integers exactly in int32; float64 holds the same integers exactly.
    acc = (q_x.double() - z_x) @ q_w.double().T
    y = (acc * (s_x * s_w)).float()
    return y if bias is None else y + bias.detach()

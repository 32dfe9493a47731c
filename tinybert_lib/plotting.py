"""Small matplotlib helpers the lessons use to look at models and losses.

Lessons: 00-01, 04, 06-07.
"""

from __future__ import annotations

from typing import Optional, Sequence

import matplotlib.pyplot as plt
import torch


def plot_attention(
    maps: torch.Tensor,
    tokens: Sequence[str],
    titles: Optional[Sequence[str]] = None,
    suptitle: str = "",
    cmap: str = "viridis",
    vmin: Optional[float] = None,
    vmax: Optional[float] = None,
):
    """Heat maps of one or more (T, T) attention matrices side by side (rows: queries, cols: keys).

    Give ``vmin``/``vmax`` (e.g. 0 and 1 for probabilities) to put every panel on one colour
    scale, so a nearly uniform map does not look as structured as a peaked one.
    """
    maps = maps.detach().float().cpu()
    if maps.dim() == 2:
        maps = maps[None]
    n = maps.shape[0]
    fig, axes = plt.subplots(1, n, figsize=(3.6 * n + 0.6, 3.8), squeeze=False)
    for i, ax in enumerate(axes[0]):
        im = ax.imshow(maps[i], cmap=cmap, vmin=vmin, vmax=vmax)
        ax.set_xticks(range(len(tokens)), tokens, rotation=90, fontsize=7)
        ax.set_yticks(range(len(tokens)), tokens, fontsize=7)
        ax.set_xlabel("key")
        ax.set_ylabel("query")
        if titles is not None:
            ax.set_title(titles[i], fontsize=9)
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def plot_curves(curves: dict[str, Sequence[float]], xlabel: str = "step", ylabel: str = "loss", title: str = "",
                logy: bool = False, x: Optional[Sequence[float]] = None):
    """Line plot of named series (e.g. loss components per logged step; ``x``: the step numbers)."""
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for name, ys in curves.items():
        ys = list(ys)
        ax.plot(list(x) if x is not None else range(len(ys)), ys, label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if logy:
        ax.set_yscale("log")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    return fig


def plot_parameter_breakdown(models: dict[str, torch.nn.Module], title: str = "Where the parameters are"):
    """Stacked bars: embedding tables vs Transformer layers vs head, for each named course model."""
    names = list(models)
    parts = {"embeddings": [], "Transformer layers": [], "pooler + classifier": []}
    for m in models.values():
        emb = sum(p.numel() for p in m.bert.embeddings.parameters())
        enc = sum(p.numel() for p in m.bert.encoder.parameters())
        parts["embeddings"].append(emb / 1e6)
        parts["Transformer layers"].append(enc / 1e6)
        parts["pooler + classifier"].append((m.num_parameters() - emb - enc) / 1e6)
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    bottom = [0.0] * len(names)
    for label, values in parts.items():
        ax.bar(names, values, bottom=bottom, label=label)
        bottom = [b + v for b, v in zip(bottom, values)]
    ax.set_ylabel("parameters (millions)")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    return fig

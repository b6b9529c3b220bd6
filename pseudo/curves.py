"""Spans from a relevance curve (one value per feature step), by VTG-GPT's rule (Xu et al. 2024,
released ``infer_qvhighlights.py``): min-max normalise the curve; threshold it at the lower edge of
the highest of ``num_bins`` histogram bins over [0, 1] with at least ``top_k`` steps at or above it;
merge the steps strictly above it whose gaps are at most ``gap`` steps; score a span by half its share
of the kept steps plus half its mean normalised value; remove near-duplicates with NMS.

The curve may be a text-caption similarity (VTG-GPT, :mod:`pseudo.baselines.vtggpt`) or a trained
localizer's per-step saliency (:class:`trainers.localizer.Localizer` with ``decode.windows_from``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from pseudo.metrics.iou import iou_cross

Span = tuple[int, int, float]  # first clip, last clip (inclusive), score


@dataclass(frozen=True)
class SpanSettings:
    num_bins: int = 10
    top_k: int = 8
    gap: int = 6
    nms_threshold: float = 0.95


def normalise(scores: NDArray[np.float64]) -> NDArray[np.float64]:
    """Min-max to [0, 1]; a flat curve (every clip alike) becomes all zeros."""
    lo, hi = float(scores.min()), float(scores.max())
    if hi - lo <= 0:
        return np.zeros_like(scores)
    out: NDArray[np.float64] = (scores - lo) / (hi - lo)
    return out


def spans(scores: NDArray[np.float64], cfg: SpanSettings | None = None) -> list[Span]:
    """Spans of one normalised curve, best first."""
    cfg = cfg or SpanSettings()
    counts, edges = np.histogram(scores, bins=cfg.num_bins, range=(0, 1))
    threshold = 0.0
    for i in range(len(counts) - 1, -1, -1):
        if counts[i:].sum() >= cfg.top_k:
            threshold = float(edges[i])
            break
    kept = np.flatnonzero(scores > threshold)
    if kept.size == 0:
        return []
    groups: list[list[int]] = [[int(kept[0])]]
    for c in kept[1:]:
        if c - groups[-1][-1] <= cfg.gap:
            groups[-1].append(int(c))
        else:
            groups.append([int(c)])
    total = sum(len(g) for g in groups)
    out = [(min(g), max(g), 0.5 * len(g) / total + 0.5 * float(np.mean(scores[g]))) for g in groups]
    return sorted(out, key=lambda s: -s[2])


def nms(found: Sequence[Span], threshold: float) -> list[Span]:
    """Greedy NMS on clip spans: a span goes when its IoU with a kept, better one reaches ``threshold``."""
    rest = sorted(found, key=lambda s: -s[2])
    keep: list[Span] = []
    while rest:
        best = rest.pop(0)
        keep.append(best)
        if rest:
            a = np.array([[best[0], best[1]]], dtype=np.float64)
            b = np.array([[s[0], s[1]] for s in rest], dtype=np.float64)
            ious = iou_cross(b, a)[:, 0]
            rest = [s for s, v in zip(rest, ious, strict=True) if v < threshold]
    return keep

"""From per-point predictions to ranked moments: score, clip, soft-NMS (Bodla et al. 2017)."""

from __future__ import annotations

import numpy as np
import torch
from numpy.typing import NDArray

from pseudo.metrics.iou import iou_cross
from trainers.model import LocalizerOutput


def soft_nms(
    windows: NDArray[np.floating], sigma: float = 0.5, iou_threshold_linear: float | None = None
) -> NDArray[np.float64]:
    """Soft-NMS over ``(start, end, score)`` rows (K, 3); returns them rescored, best first.

    Each round keeps the best remaining window and decays the others' scores by
    ``exp(-iou**2 / sigma)`` (Gaussian), or, with ``iou_threshold_linear``, by ``1 - iou`` where
    the IoU exceeds that threshold (linear soft-NMS).
    """
    rest = np.asarray(windows, dtype=np.float64).reshape(-1, 3).copy()
    kept: list[NDArray[np.float64]] = []
    while len(rest):
        best = int(np.argmax(rest[:, 2]))
        top = rest[best]
        kept.append(top)
        rest = np.delete(rest, best, axis=0)
        if not len(rest):
            break
        iou = iou_cross(rest[:, :2], top[None, :2])[:, 0]
        if iou_threshold_linear is None:
            decay = np.exp(-(iou**2) / sigma)
        else:
            decay = np.where(iou > iou_threshold_linear, 1 - iou, 1.0)
        rest[:, 2] *= decay
    return np.stack(kept) if kept else np.zeros((0, 3))


def _first_of_each(s: NDArray[np.float64], e: NDArray[np.float64], scores: NDArray[np.float64]) -> NDArray[np.float64]:
    """``(start, end, score)`` rows in the given order, keeping only the first row of each window."""
    _, first = np.unique(np.stack([s, e], axis=1), axis=0, return_index=True)
    keep = np.sort(first)
    return np.stack([s[keep], e[keep], scores[keep]], axis=1)


def snap_to_steps(cand: NDArray[np.float64], length: float) -> NDArray[np.float64]:
    """Round ``(start, end, score)`` rows (in input steps) to whole steps, at least one step long and
    inside ``[0, length]``; rows that become the same window keep their best score (best first)."""
    if not len(cand):
        return cand
    cand = cand[np.argsort(-cand[:, 2], kind="stable")]
    s = np.clip(np.round(cand[:, 0]), 0.0, max(length - 1.0, 0.0))
    e = np.clip(np.maximum(np.round(cand[:, 1]), s + 1.0), 0.0, length)
    return _first_of_each(s, e, cand[:, 2])


def snap_to_events(
    windows: NDArray[np.float64], boundaries: NDArray[np.float64], tolerance: float
) -> NDArray[np.float64]:
    """Move each boundary of ``(start, end, score)`` rows to the nearest event boundary (seconds)
    when one lies within ``tolerance``; a window that would become empty keeps its own boundaries.
    Rows that become the same window keep the first (best-ranked) one; the order is kept."""
    if not len(windows) or not len(boundaries) or tolerance <= 0:
        return windows
    b = np.asarray(boundaries, dtype=np.float64)

    def nearest(x: NDArray[np.float64]) -> NDArray[np.float64]:
        near = b[np.abs(x[:, None] - b[None, :]).argmin(axis=1)]  # ties go to the earlier boundary
        out: NDArray[np.float64] = np.where(np.abs(near - x) <= tolerance, near, x)
        return out

    s, e = nearest(windows[:, 0]), nearest(windows[:, 1])
    ok = e > s
    return _first_of_each(np.where(ok, s, windows[:, 0]), np.where(ok, e, windows[:, 1]), windows[:, 2])


def decode(
    out: LocalizerOutput,
    top_k: int = 10,
    pre_nms: int = 200,
    sigma: float = 0.5,
    iou_threshold_linear: float | None = None,
    snap: bool = False,
) -> list[list[tuple[float, float, float]]]:
    """Per video, up to ``top_k`` moments ``(start, end, score)`` in input steps, best first.

    Scores are ``sigmoid(logit)``; each valid point's window ``(point - left, point + right)`` is
    clipped to ``[0, valid length]``; with ``snap`` its boundaries are rounded to whole steps (for
    benchmarks annotated on the feature grid, such as QVHighlights' 2 s clips); the ``pre_nms`` best
    non-empty windows go through soft-NMS.
    """
    with torch.no_grad():
        scores = torch.sigmoid(out.logits.float()).cpu().numpy()
        starts = (out.points[None] - out.offsets[..., 0].float()).cpu().numpy()
        ends = (out.points[None] + out.offsets[..., 1].float()).cpu().numpy()
        masks = out.mask.bool().cpu().numpy()
        lengths = out.lengths.float().cpu().numpy()
    results: list[list[tuple[float, float, float]]] = []
    for b in range(scores.shape[0]):
        s = np.clip(starts[b], 0.0, lengths[b])
        e = np.clip(ends[b], 0.0, lengths[b])
        keep = masks[b] & (e > s)
        cand = np.stack([s[keep], e[keep], scores[b][keep]], axis=1).astype(np.float64)
        if snap:
            cand = snap_to_steps(cand, float(lengths[b]))
        cand = cand[np.argsort(-cand[:, 2], kind="stable")[:pre_nms]]
        ranked = soft_nms(cand, sigma, iou_threshold_linear)[:top_k]
        results.append([(float(a), float(z), float(c)) for a, z, c in ranked])
    return results

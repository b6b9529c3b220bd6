"""Temporal IoU in the exact floating-point forms the official evaluators use.

Two spellings of the same quantity round differently, and ``iou >= 0.7`` flips on the last bit:

* the QVHighlights evaluator (:func:`iou_cross`, :func:`iou_paired`): ``union = a1 + a2 - inter``;
* the Charades-STA / ActivityNet / TACoS evaluators (2D-TAN, TFVTG ``calc_iou``; :func:`iou_paired_hull`):
  ``union = max(end) - min(start)``. For ``[0, 13]`` against ``[0, 9.1]`` this gives exactly 0.7 (a hit
  at IoU 0.7), where the other form gives 0.6999999999999998 (a miss).

The operation order of each is kept identical to its reference code.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]


def iou_cross(spans1: FloatArray, spans2: FloatArray) -> FloatArray:
    """IoU of every span in ``spans1`` (N, 2) with every span in ``spans2`` (M, 2): (N, M).

    Degenerate pairs (both spans empty and disjoint) get IoU 0 instead of NaN.
    """
    s1 = np.asarray(spans1, dtype=np.float64)
    s2 = np.asarray(spans2, dtype=np.float64)
    areas1 = s1[:, 1] - s1[:, 0]
    areas2 = s2[:, 1] - s2[:, 0]
    left = np.maximum(s1[:, None, 0], s2[None, :, 0])
    right = np.minimum(s1[:, None, 1], s2[None, :, 1])
    inter = np.clip(right - left, 0, None)
    union = areas1[:, None] + areas2[None, :] - inter
    return _safe_div(inter, union)


def iou_paired(spans1: FloatArray, spans2: FloatArray) -> FloatArray:
    """IoU of ``spans1[i]`` with ``spans2[i]``; both (..., 2), broadcast against each other."""
    s1 = np.asarray(spans1, dtype=np.float64)
    s2 = np.asarray(spans2, dtype=np.float64)
    areas1 = s1[..., 1] - s1[..., 0]
    areas2 = s2[..., 1] - s2[..., 0]
    left = np.maximum(s1[..., 0], s2[..., 0])
    right = np.minimum(s1[..., 1], s2[..., 1])
    inter = np.clip(right - left, 0, None)
    union = areas1 + areas2 - inter
    return _safe_div(inter, union)


def iou_paired_hull(spans1: FloatArray, spans2: FloatArray) -> FloatArray:
    """IoU as 2D-TAN and TFVTG compute it: ``inter / (max(end) - min(start))``; broadcast like
    :func:`iou_paired`. Disjoint spans score 0 (their hull is not their union, but inter is 0)."""
    s1 = np.asarray(spans1, dtype=np.float64)
    s2 = np.asarray(spans2, dtype=np.float64)
    inter = np.clip(np.minimum(s1[..., 1], s2[..., 1]) - np.maximum(s1[..., 0], s2[..., 0]), 0, None)
    union = np.maximum(s1[..., 1], s2[..., 1]) - np.minimum(s1[..., 0], s2[..., 0])
    return _safe_div(inter, union)


def _safe_div(inter: FloatArray, union: FloatArray) -> FloatArray:
    out = np.zeros(np.broadcast(inter, union).shape, dtype=np.float64)
    np.divide(inter, union, out=out, where=union > 0)
    return out

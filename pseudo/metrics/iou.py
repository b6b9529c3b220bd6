"""Temporal IoU in the exact floating-point form of the official QVHighlights evaluator.

The operation order (``union = a1 + a2 - inter``) is kept identical to the reference code so that
threshold comparisons such as ``iou >= 0.7`` flip on exactly the same windows.
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


def _safe_div(inter: FloatArray, union: FloatArray) -> FloatArray:
    out = np.zeros(np.broadcast(inter, union).shape, dtype=np.float64)
    np.divide(inter, union, out=out, where=union > 0)
    return out

"""R@k at IoU thresholds and mIoU, as reported on Charades-STA, ActivityNet Captions and TACoS.

A query counts as recalled at (k, m) when one of its top-k predicted windows has IoU >= m with
one of its ground-truth windows. mIoU is the mean IoU of the top-1 window with its best GT window.
All values are percentages, as papers print them. IoU is computed as those benchmarks' evaluators do
(``inter / (max(end) - min(start))``), which decides exact ties such as IoU 0.7 the way they do.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from pseudo.metrics.iou import iou_paired_hull

DEFAULT_KS: tuple[int, ...] = (1, 5)
DEFAULT_IOUS: tuple[float, ...] = (0.3, 0.5, 0.7)


def best_gt_iou(
    pred: NDArray[np.float64],
    pred_mask: NDArray[np.bool_],
    gt: NDArray[np.float64],
    gt_mask: NDArray[np.bool_],
) -> NDArray[np.float64]:
    """IoU of every predicted window with its best GT window: ``(Q, K)``; padding scores -1."""
    ious = iou_paired_hull(pred[:, :, None, :2], gt[:, None, :, :2])  # (Q, K, G), the field's arithmetic
    ious = np.where(gt_mask[:, None, :], ious, -1.0)
    best = ious.max(axis=-1)
    return np.where(pred_mask, best, -1.0)


def recall_at_k(
    pred: NDArray[np.float64],
    pred_mask: NDArray[np.bool_],
    gt: NDArray[np.float64],
    gt_mask: NDArray[np.bool_],
    ks: Sequence[int] = DEFAULT_KS,
    ious: Sequence[float] = DEFAULT_IOUS,
) -> dict[str, float]:
    """``{"R1@0.3": .., "R5@0.7": .., "mIoU": ..}`` in percent over Q queries.

    ``pred`` is ``(Q, K, >=2)`` with windows already sorted best first; ``gt`` is ``(Q, G, 2)``.
    """
    if pred.shape[0] == 0:
        raise ValueError("no queries to score")
    best = best_gt_iou(pred, pred_mask, gt, gt_mask)
    out: dict[str, float] = {}
    for k in ks:
        top = best[:, :k].max(axis=1)
        for m in ious:
            out[f"R{k}@{m:g}"] = float(100.0 * np.mean(top >= m))
    out["mIoU"] = float(100.0 * np.mean(np.clip(best[:, 0], 0.0, None)))
    return out

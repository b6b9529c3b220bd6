"""Slow per-query transcriptions of the evaluators' algorithms: the oracle that tests the
vectorised metrics on random inputs, and the baseline that bench/metrics.py times them against."""

from __future__ import annotations

import numpy as np


def iou(a: tuple[float, float], b: tuple[float, float]) -> float:
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    union = (a[1] - a[0]) + (b[1] - b[0]) - inter
    return inter / union if union > 0 else 0.0


def ap_one_query(gts: list[tuple[float, float]], preds: list[tuple[float, float, float]], thr: float) -> float:
    if not preds:
        return 0.0
    ranked = sorted(preds[:10], key=lambda w: -w[2])
    taken = [False] * len(gts)
    tp: list[float] = []
    for p in ranked:
        ious = [iou((p[0], p[1]), g) for g in gts]
        order = list(np.argsort(ious, kind="stable"))[::-1]
        hit = 0.0
        for j in order:
            if ious[j] < thr:
                break
            if taken[j]:
                continue
            taken[j] = True
            hit = 1.0
            break
        tp.append(hit)
    tpc = np.cumsum(tp)
    fpc = np.cumsum([1.0 - t for t in tp])
    rec = [0.0, *list(tpc / len(gts)), 1.0]
    prec = [0.0, *list(tpc / (tpc + fpc)), 0.0]
    for i in range(len(prec) - 2, -1, -1):
        prec[i] = max(prec[i], prec[i + 1])
    return float(sum((rec[i] - rec[i - 1]) * prec[i] for i in range(1, len(rec)) if rec[i] != rec[i - 1]))


def recall_one_query(
    gts: list[tuple[float, float]], preds: list[tuple[float, float, float]], k: int, thr: float
) -> bool:
    return any(iou((p[0], p[1]), g) >= thr for p in preds[:k] for g in gts)

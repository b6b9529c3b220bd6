"""Scoring protocols by name: how a benchmark turns aligned predictions into reported numbers."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pseudo.metrics.qvhighlights import qvhighlights_metrics
from pseudo.metrics.recall import recall_at_k
from pseudo.metrics.windows import pad_windows
from pseudo.records import Prediction, Query
from pseudo.registry import Registry


@dataclass
class MetricReport:
    """``headline``: the flat numbers papers print (percent); ``details``: everything computed."""

    headline: dict[str, float]
    details: dict[str, Any] = field(default_factory=dict)


Protocol = Callable[[Sequence[Query], Sequence[Prediction]], MetricReport]
PROTOCOLS: Registry[Protocol] = Registry("metric protocol")


@PROTOCOLS.register("recall")
def recall_protocol(gts: Sequence[Query], preds: Sequence[Prediction]) -> MetricReport:
    """R1/R5 at IoU 0.3/0.5/0.7 and mIoU (Charades-STA, ActivityNet Captions, TACoS, DiDeMo)."""
    keep = [i for i, q in enumerate(gts) if q.windows]
    if not keep:
        raise ValueError("none of the ground-truth queries has a window to score against")
    pred, pred_mask = pad_windows([preds[i].windows for i in keep], 2, max_len=5)
    gt, gt_mask = pad_windows([gts[i].windows for i in keep], 2)
    head = recall_at_k(pred, pred_mask, gt, gt_mask)
    return MetricReport(head, {"n_scored": len(keep), "n_without_gt": len(gts) - len(keep)})


@PROTOCOLS.register("qvhighlights")
def qvhighlights_protocol(gts: Sequence[Query], preds: Sequence[Prediction]) -> MetricReport:
    """The official QVHighlights evaluator's numbers (MR R1 and mAP, plus HL when saliency exists)."""
    keep = [i for i, q in enumerate(gts) if q.windows]
    if not keep:
        raise ValueError("none of the ground-truth queries has a window (is this the test split without GT?)")
    full = qvhighlights_metrics([gts[i] for i in keep], [preds[i] for i in keep])
    brief = full["brief"]
    assert isinstance(brief, dict)
    head = {
        "R1@0.5": brief["MR-full-R1@0.5"],
        "R1@0.7": brief["MR-full-R1@0.7"],
        "mAP@0.5": brief["MR-full-mAP@0.5"],
        "mAP@0.75": brief["MR-full-mAP@0.75"],
        "mAP": brief["MR-full-mAP"],
        "R1@0.3": brief["MR-full-R1@0.3"],
        "mIoU": brief["MR-full-mIoU"],
    }
    return MetricReport(head, full)

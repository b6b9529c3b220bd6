from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pseudo.data import load_dataset
from pseudo.data.predictions import load_predictions
from pseudo.evaluate import evaluate
from pseudo.metrics.iou import iou_cross, iou_paired
from pseudo.metrics.qvhighlights import MAP_IOUS, average_precision, qvhighlights_metrics
from pseudo.metrics.recall import recall_at_k
from pseudo.metrics.reference import ap_one_query, iou, recall_one_query
from pseudo.metrics.windows import pad_windows
from pseudo.records import Prediction, Query

REFERENCES = [
    ("momentdetr_sample_val_preds.jsonl", "momentdetr_sample_val_preds_metrics_raw.json"),
    ("vtggpt_infer_val.jsonl", "vtggpt_infer_val_metrics.json"),
]


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, float]:
    out: dict[str, float] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}/"))
        else:
            out[f"{prefix}{k}"] = v
    return out


@pytest.mark.parametrize(("preds_file", "metrics_file"), REFERENCES)
def test_reproduces_official_metric_files(data_root: Path, preds_file: str, metrics_file: str) -> None:
    ref_dir = data_root / "qvhighlights" / "reference_preds"
    result = evaluate(ref_dir / preds_file, "qvhighlights", "val", data_root=data_root)
    expected = _flatten(json.loads((ref_dir / metrics_file).read_text()))
    ours = _flatten(result.details)
    assert len(expected) > 100
    mismatched = {k: (v, ours.get(k)) for k, v in expected.items() if ours.get(k) != v}
    assert not mismatched
    assert result.metrics["R1@0.5"] == expected["brief/MR-full-R1@0.5"]


def test_iou_forms_agree() -> None:
    rng = np.random.default_rng(0)
    a = np.sort(rng.uniform(0, 10, (50, 2)), axis=1)
    b = np.sort(rng.uniform(0, 10, (40, 2)), axis=1)
    cross = iou_cross(a, b)
    assert cross.shape == (50, 40)
    assert np.allclose(cross, iou_paired(a[:, None], b[None]))
    assert cross[3, 7] == pytest.approx(iou(tuple(a[3]), tuple(b[7])))
    assert iou_cross(np.array([[1.0, 1.0]]), np.array([[2.0, 2.0]]))[0, 0] == 0.0  # no NaN


def _random_case(
    rng: np.random.Generator, n: int
) -> tuple[list[list[tuple[float, float]]], list[list[tuple[float, float, float]]]]:
    gts, preds = [], []
    for _ in range(n):
        g = [tuple(sorted(rng.integers(0, 20, 2) * 2.0)) for _ in range(rng.integers(1, 4))]
        g = [(s, e + 2.0) for s, e in g]
        p = [(*sorted(rng.integers(0, 20, 2) * 2.0), float(rng.integers(0, 4))) for _ in range(rng.integers(0, 13))]
        gts.append(g)
        preds.append(p)
    return gts, preds


def test_vectorised_ap_matches_loop_reference() -> None:
    rng = np.random.default_rng(1)
    gts, preds = _random_case(rng, 400)  # integer grids and tied scores exercise every tie path
    ranked = [sorted(p[:10], key=lambda w: -w[2]) for p in preds]
    pred, pred_mask = pad_windows(ranked, 3)
    gt, gt_mask = pad_windows(gts, 2)
    ap = average_precision(pred, pred_mask, gt, gt_mask)
    for t_idx, thr in enumerate(MAP_IOUS):
        expected = [ap_one_query(g, p, thr) for g, p in zip(gts, preds, strict=True)]
        assert ap[:, t_idx] == pytest.approx(expected, abs=1e-12)


def test_recall_matches_loop_reference() -> None:
    rng = np.random.default_rng(2)
    gts, preds = _random_case(rng, 300)
    pred, pred_mask = pad_windows(preds, 2, max_len=5)
    gt, gt_mask = pad_windows(gts, 2)
    got = recall_at_k(pred, pred_mask, gt, gt_mask)
    for k in (1, 5):
        for thr in (0.3, 0.5, 0.7):
            expected = 100 * np.mean([recall_one_query(g, p, k, thr) for g, p in zip(gts, preds, strict=True)])
            assert got[f"R{k}@{thr:g}"] == pytest.approx(expected)


def test_recall_by_hand() -> None:
    # q0: top-1 [0,10] vs GT [0,5] -> IoU 0.5; top-2 exact. q1: no prediction at all.
    pred, pm = pad_windows([[(0, 10, 0.9), (0, 5, 0.8)], []], 2)
    gt, gm = pad_windows([[(0, 5)], [(2, 4)]], 2)
    m = recall_at_k(pred, pm, gt, gm)
    assert m["R1@0.3"] == 50.0 and m["R1@0.5"] == 50.0 and m["R1@0.7"] == 0.0
    assert m["R5@0.7"] == 50.0
    assert m["mIoU"] == 25.0


def test_ap_by_hand() -> None:
    # two GT windows; ranked preds: miss, hit GT0, duplicate of GT0 (fp), hit GT1
    # precision at hits: 1/2 and 2/4 -> AP = 0.5*0.5 + 0.5*0.5 = 0.5
    pred, pm = pad_windows([[(20, 30, 0.9), (0, 10, 0.8), (0, 10, 0.7), (40, 50, 0.6)]], 3)
    gt, gm = pad_windows([[(0, 10), (40, 50)]], 2)
    assert average_precision(pred, pm, gt, gm)[0, 0] == pytest.approx(0.5)


def test_qvh_buckets_by_gt_length() -> None:
    gts = [Query(1, "v", 150.0, "q", ((0.0, 8.0), (20.0, 60.0))), Query(2, "v", 150.0, "q", ((10.0, 30.0),))]
    preds = [Prediction(1, "v", ((0.0, 8.0, 1.0),)), Prediction(2, "v", ((10.0, 30.0, 1.0),))]
    m: dict[str, Any] = qvhighlights_metrics(gts, preds)
    assert m["short"]["MR-R1"]["0.5"] == 100.0
    assert m["middle"]["MR-R1"]["0.5"] == 100.0
    assert m["long"]["MR-R1"]["0.5"] == 0.0
    assert m["full"]["MR-mAP"]["0.5"] == 75.0  # q1: AP 0.5 over its two GT windows; q2: AP 1


def test_loaded_reference_predictions_have_scores(data_root: Path) -> None:
    preds = load_predictions(data_root / "qvhighlights/reference_preds/momentdetr_sample_val_preds.jsonl")
    assert len(preds) == 1550 and all(len(p.windows) == 10 for p in preds)
    gts = load_dataset("qvhighlights", "val", data_root=data_root)
    assert {q.qid for q in gts} == {p.qid for p in preds}

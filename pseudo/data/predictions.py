"""Reading prediction files (QVHighlights JSONL) and checking them against the ground truth."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pseudo.errors import DataFormatError, PseudoError
from pseudo.io import atomic_write_jsonl, iter_jsonl
from pseudo.records import Prediction, Query, QueryId

#: windows may poke out of the video by this much (seconds) before a warning: rounding in files
OUTSIDE_TOLERANCE = 1e-3


class PredictionError(PseudoError, ValueError):
    """Predictions that cannot be scored; the message lists every problem with counts."""


def load_predictions(path: str | Path) -> list[Prediction]:
    """Parse ``qid``, ``vid``, ``query``, ``pred_relevant_windows`` (and ``pred_saliency_scores``).

    Structural problems raise :class:`DataFormatError` naming the file and line; NaN scores and
    windows that end before they start are collected and raised together, with counts.
    """
    p = Path(path)
    if not p.is_file():
        raise PredictionError(f"prediction file {p} does not exist")
    out: list[Prediction] = []
    nan_lines: list[int] = []
    reversed_lines: list[int] = []
    for lineno, rec in iter_jsonl(p):
        if "qid" not in rec:
            raise DataFormatError(p, "missing 'qid'", lineno)
        raw = rec.get("pred_relevant_windows")
        if not isinstance(raw, list):
            raise DataFormatError(p, "missing 'pred_relevant_windows' (a list of [start, end, score])", lineno)
        windows: list[tuple[float, float, float]] = []
        for w in raw:
            if not isinstance(w, list | tuple) or len(w) not in (2, 3) or not all(_is_number(x) for x in w):
                raise DataFormatError(p, f"each predicted window must be [start, end, score], got {w!r}", lineno)
            s, e = float(w[0]), float(w[1])
            score = float(w[2]) if len(w) == 3 else 1.0 - len(windows) * 1e-6
            if not all(math.isfinite(x) for x in (s, e, score)):
                nan_lines.append(lineno)
            elif e < s:
                reversed_lines.append(lineno)
            windows.append((s, e, score))
        sal = rec.get("pred_saliency_scores")
        saliency = tuple(float(x) for x in sal) if isinstance(sal, list) and sal else None
        out.append(Prediction(rec["qid"], str(rec.get("vid", "")), tuple(windows), str(rec.get("query", "")), saliency))
    problems = []
    if nan_lines:
        problems.append(f"{len(nan_lines)} line(s) have NaN or infinite values ({_lines(nan_lines)})")
    if reversed_lines:
        problems.append(
            f"{len(reversed_lines)} line(s) have a window that ends before it starts ({_lines(reversed_lines)})"
        )
    if problems:
        raise PredictionError(f"{p}: " + "; ".join(problems))
    return out


def save_predictions(path: str | Path, preds: Sequence[Prediction]) -> Path:
    return atomic_write_jsonl(path, (p.to_json() for p in preds))


@dataclass
class AlignedPredictions:
    """Predictions in ground-truth order, plus what was wrong with them."""

    gts: list[Query]
    preds: list[Prediction]
    warnings: list[str] = field(default_factory=list)


def align_predictions(
    gts: Sequence[Query], preds: Sequence[Prediction], source: str = "predictions", allow_missing: bool = False
) -> AlignedPredictions:
    """Match predictions to GT queries by qid (``1`` and ``"1"`` are the same qid).

    Missing qids are an error unless ``allow_missing`` (then they score zero); extra qids are
    dropped with a warning; windows outside ``[0, duration]`` and unsorted scores are warned about.
    """
    by_qid: dict[str, Prediction] = {}
    dups: list[QueryId] = []
    for p in preds:
        key = str(p.qid)
        if key in by_qid:
            dups.append(p.qid)
        by_qid[key] = p
    if dups:
        raise PredictionError(f"{source}: {len(dups)} duplicate qid(s), e.g. {dups[:5]}")
    gt_keys = {str(q.qid) for q in gts}
    missing = [q.qid for q in gts if str(q.qid) not in by_qid]
    extra = [p.qid for p in preds if str(p.qid) not in gt_keys]
    warnings: list[str] = []
    if missing and not allow_missing:
        raise PredictionError(
            f"{source}: {len(missing)} of {len(gts)} ground-truth qids have no prediction, e.g. {missing[:5]}; "
            "predict every query, or pass --allow-missing to score them as misses"
        )
    if missing:
        warnings.append(f"{len(missing)} of {len(gts)} queries have no prediction and score zero")
    if extra:
        warnings.append(f"{len(extra)} predicted qid(s) are not in the ground truth and were ignored, e.g. {extra[:5]}")
    aligned: list[Prediction] = []
    outside = unsorted = empty = vid_mismatch = 0
    for q in gts:
        p = by_qid.get(str(q.qid)) or Prediction(q.qid, q.vid, (), q.query)
        if not p.windows:
            empty += 1
        if any(s < -OUTSIDE_TOLERANCE or e > q.duration + OUTSIDE_TOLERANCE for s, e, _ in p.windows):
            outside += 1
        if any(a[2] < b[2] for a, b in zip(p.windows, p.windows[1:], strict=False)):
            unsorted += 1
        if p.vid and p.vid != q.vid:
            vid_mismatch += 1
        aligned.append(p)
    if vid_mismatch:
        raise PredictionError(f"{source}: {vid_mismatch} prediction(s) name a different video than their qid's GT")
    if empty and not missing:
        warnings.append(f"{empty} queries have an empty window list and score zero")
    if outside:
        warnings.append(f"{outside} queries have windows outside [0, duration]; scored as given")
    if unsorted:
        warnings.append(
            f"{unsorted} queries list windows out of score order; R@k uses the listed order (as the official evaluator)"
        )
    return AlignedPredictions(list(gts), aligned, warnings)


def _is_number(x: object) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def _lines(lines: list[int], shown: int = 5) -> str:
    head = ", ".join(f"line {n}" for n in lines[:shown])
    return head + (", ..." if len(lines) > shown else "")

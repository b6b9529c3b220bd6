"""``pseudo eval``: score a prediction file on a benchmark split."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pseudo.data import get_dataset, load_dataset
from pseudo.data.predictions import align_predictions, load_predictions
from pseudo.metrics.protocols import PROTOCOLS, MetricReport
from pseudo.records import Prediction, Query

#: the protocol each dataset reports with unless told otherwise
DEFAULT_PROTOCOL: dict[str, str] = {"qvhighlights": "qvhighlights"}


@dataclass
class EvalResult:
    dataset: str
    split: str
    protocol: str
    n_queries: int
    metrics: dict[str, float]
    details: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def score(
    gts: Sequence[Query],
    preds: Sequence[Prediction],
    protocol: str = "recall",
    allow_missing: bool = False,
    source: str = "predictions",
) -> tuple[MetricReport, list[str]]:
    """Align ``preds`` to ``gts`` by qid and score them with a named protocol."""
    aligned = align_predictions(gts, preds, source=source, allow_missing=allow_missing)
    report = PROTOCOLS.get(protocol)(aligned.gts, aligned.preds)
    return report, aligned.warnings


def evaluate(
    predictions: str | Path | Sequence[Prediction],
    dataset: str,
    split: str,
    gt_files: Sequence[str | Path] | None = None,
    data_root: str | Path | None = None,
    protocol: str | None = None,
    allow_missing: bool = False,
) -> EvalResult:
    """Score predictions (a JSONL path or records) on ``dataset``/``split``.

    ``gt_files`` replaces the dataset's default annotation files (e.g. your own copy, or any
    QVHighlights-style JSONL with ``dataset="jsonl"``).
    """
    t0 = time.perf_counter()
    spec = get_dataset(dataset)
    split_name = split if spec.name == "jsonl" else spec.resolve_split(split)
    gts = load_dataset(dataset, split_name, files=gt_files, data_root=data_root)
    if isinstance(predictions, str | Path):
        source = str(predictions)
        preds = load_predictions(predictions)
    else:
        source, preds = "predictions", list(predictions)
    proto = protocol or DEFAULT_PROTOCOL.get(spec.name, "recall")
    report, warnings = score(gts, preds, proto, allow_missing=allow_missing, source=source)
    return EvalResult(
        dataset=spec.name,
        split=split_name,
        protocol=proto,
        n_queries=len(gts),
        metrics=report.headline,
        details=report.details,
        warnings=warnings,
        seconds=time.perf_counter() - t0,
    )

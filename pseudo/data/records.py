"""The one query record that every benchmark loader and the pseudo-label generator produce."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

QueryId = int | str
Source = Literal["gt", "pseudo", "weak"]


@dataclass(frozen=True)
class Query:
    """A sentence about one video and the windows (seconds) where it happens.

    ``windows`` may be empty (a test split without ground truth). ``meta`` holds what a dataset
    carries beyond the common fields (QVHighlights saliency, DiDeMo raw segment indices, ...).
    """

    qid: QueryId
    vid: str
    duration: float
    query: str
    windows: tuple[tuple[float, float], ...]
    source: Source = "gt"
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def to_json(self) -> dict[str, Any]:
        """QVHighlights-style JSON (``relevant_windows``), the schema lighthouse and Moment-DETR read."""
        out: dict[str, Any] = {
            "qid": self.qid,
            "query": self.query,
            "duration": self.duration,
            "vid": self.vid,
            "relevant_windows": [list(w) for w in self.windows],
        }
        if self.source != "gt":
            out["source"] = self.source
        for key, value in self.meta.items():
            out.setdefault(key, value)
        return out


@dataclass(frozen=True)
class Prediction:
    """Ranked windows ``(start, end, score)`` for one query, best first."""

    qid: QueryId
    vid: str
    windows: tuple[tuple[float, float, float], ...]
    query: str = ""
    saliency: tuple[float, ...] | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "qid": self.qid,
            "query": self.query,
            "vid": self.vid,
            "pred_relevant_windows": [list(w) for w in self.windows],
        }
        if self.saliency is not None:
            out["pred_saliency_scores"] = list(self.saliency)
        return out

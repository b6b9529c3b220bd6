"""The typed records that pass between stages: queries (real or pseudo), predictions, proposals."""

from __future__ import annotations

from collections.abc import Mapping
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

    @classmethod
    def from_json(cls, rec: Mapping[str, Any]) -> Prediction:
        """The inverse of :meth:`to_json`, for files pseudo wrote itself (user files go through
        :func:`pseudo.data.predictions.load_predictions`, which checks every field)."""
        sal = rec.get("pred_saliency_scores")
        return cls(
            rec["qid"],
            str(rec["vid"]),
            tuple((float(a), float(b), float(c)) for a, b, c in rec["pred_relevant_windows"]),
            str(rec.get("query", "")),
            None if sal is None else tuple(float(x) for x in sal),
        )


@dataclass(frozen=True)
class Proposal:
    """A candidate moment of one video: consecutive atomic events ``atoms`` spanning ``[start, end)`` s.

    The proposal generator fills the geometry; the proposal stage adds the video, its duration, and the
    hashes of the settings and of the features it came from, so later stages can check their inputs.
    """

    start: float
    end: float
    score: float
    atoms: tuple[int, ...]
    method: str
    vid: str = ""
    duration: float = 0.0
    settings_hash: str = ""
    features_hash: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "video": self.vid,
            "duration": float(self.duration),
            "start": float(self.start),
            "end": float(self.end),
            "score": float(self.score),
            "method": self.method,
            "atoms": list(self.atoms),
            "settings_hash": self.settings_hash,
            "features_hash": self.features_hash,
        }

    @classmethod
    def from_json(cls, rec: Mapping[str, Any]) -> Proposal:
        """A record as :meth:`to_json` writes it (``KeyError``/``ValueError`` on a malformed one)."""
        return cls(
            start=float(rec["start"]),
            end=float(rec["end"]),
            score=float(rec.get("score", 0.0)),
            atoms=tuple(int(a) for a in rec.get("atoms", ())),
            method=str(rec.get("method", "")),
            vid=str(rec["video"]),
            duration=float(rec.get("duration", 0.0)),
            settings_hash=str(rec.get("settings_hash", "")),
            features_hash=str(rec.get("features_hash", "")),
        )

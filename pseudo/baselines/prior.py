"""Prior-only baselines: the floor every trained model must beat.

* :func:`whole_video` predicts ``[0, duration]`` for every query.
* :class:`LengthPositionPrior` learns where moments sit and how long they are from a train split,
  in duration-normalised coordinates, and predicts the same ranked windows for every video (scaled
  to its duration). Candidates are windows on a grid; the first maximises the train-split
  probability of IoU >= 0.3/0.5/0.7 (averaged), and each next one adds the most to the chance that
  one of the chosen windows does, so the list also serves R@5 and mAP.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from pseudo.metrics.iou import iou_cross
from pseudo.records import Prediction, Query

TARGET_IOUS: tuple[float, ...] = (0.3, 0.5, 0.7)


def whole_video(queries: Sequence[Query]) -> list[Prediction]:
    return [Prediction(q.qid, q.vid, ((0.0, q.duration, 1.0),), q.query) for q in queries]


@dataclass
class LengthPositionPrior:
    """A data-independent ranked list of normalised windows, fitted on train GT only."""

    grid: int = 25
    top_k: int = 10
    max_samples: int = 20000
    seed: int = 0
    windows: NDArray[np.float64] = field(default_factory=lambda: np.zeros((0, 3)))

    def fit(self, train: Sequence[Query]) -> LengthPositionPrior:
        norm = np.array([(s / q.duration, e / q.duration) for q in train for s, e in q.windows if e > s])
        if len(norm) == 0:
            raise ValueError("the train split has no non-empty windows to learn a prior from")
        rng = np.random.default_rng(self.seed)
        if len(norm) > self.max_samples:
            norm = norm[rng.choice(len(norm), self.max_samples, replace=False)]
        ticks = np.linspace(0.0, 1.0, self.grid + 1)
        cand = np.array([(a, b) for i, a in enumerate(ticks) for b in ticks[i + 1 :]])
        ious = iou_cross(cand, norm)  # (C, N)
        hits = np.stack([ious >= m for m in TARGET_IOUS])  # (M, C, N)
        covered = np.zeros(hits.shape[::2], dtype=bool)  # (M, N)
        chosen: list[tuple[float, float, float]] = []
        for _ in range(min(self.top_k, len(cand))):
            gain = (hits & ~covered[:, None, :]).mean(axis=2).mean(axis=0)  # (C,)
            best = int(np.argmax(gain))
            chosen.append((float(cand[best, 0]), float(cand[best, 1]), float(hits[:, best].mean())))
            covered |= hits[:, best]
        self.windows = np.array(chosen)
        return self

    def predict(self, queries: Sequence[Query]) -> list[Prediction]:
        if len(self.windows) == 0:
            raise RuntimeError("fit the prior before predicting")
        out = []
        for q in queries:
            ws = tuple((float(s * q.duration), float(e * q.duration), float(sc)) for s, e, sc in self.windows)
            out.append(Prediction(q.qid, q.vid, ws, q.query))
        return out

"""Atomic events: maximal runs of equal cluster labels, with too-short runs merged away."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

#: (start_step, end_step exclusive, cluster)
Run = tuple[int, int, int]


@dataclass(frozen=True)
class AtomicEvent:
    """A contiguous span of steps with one cluster label; seconds come from the step grid."""

    start: float
    end: float
    start_step: int
    end_step: int  # exclusive
    cluster: int

    @property
    def num_steps(self) -> int:
        return self.end_step - self.start_step


def label_runs(labels: npt.ArrayLike) -> list[Run]:
    """Maximal runs of equal labels, in time order."""
    lab = np.asarray(labels).reshape(-1)
    if lab.shape[0] == 0:
        return []
    cuts = np.flatnonzero(lab[1:] != lab[:-1]) + 1
    starts = [0, *cuts.tolist()]
    ends = [*cuts.tolist(), int(lab.shape[0])]
    return [(s, e, int(lab[s])) for s, e in zip(starts, ends, strict=True)]


def _coalesce(runs: list[Run], i: int) -> int:
    """Join run i with equal-label neighbours; returns the joined run's index."""
    if i + 1 < len(runs) and runs[i + 1][2] == runs[i][2]:
        runs[i : i + 2] = [(runs[i][0], runs[i + 1][1], runs[i][2])]
    if i > 0 and runs[i - 1][2] == runs[i][2]:
        runs[i - 1 : i + 1] = [(runs[i - 1][0], runs[i][1], runs[i][2])]
        i -= 1
    return i


def merge_short_runs(runs: list[Run], features: npt.ArrayLike, min_steps: int) -> list[Run]:
    """Merge runs shorter than ``min_steps`` into a neighbour until none is short or one is left.

    The shortest run (earliest on ties) goes first; it joins the neighbour whose mean feature has
    the higher cosine similarity to its own (the left one on ties) and takes that neighbour's
    label. Neighbours that end up with equal labels are joined, so runs stay maximal.
    """
    x = np.asarray(features, dtype=np.float64)
    cums = np.vstack([np.zeros((1, x.shape[1])), np.cumsum(x, axis=0)])

    def unit_mean(run: Run) -> FloatArray:
        m: FloatArray = (cums[run[1]] - cums[run[0]]) / (run[1] - run[0])
        norm = float(np.linalg.norm(m))
        return m / norm if norm > 0 else m

    out = list(runs)
    while len(out) > 1:
        lengths = [e - s for s, e, _ in out]
        short = [i for i, n in enumerate(lengths) if n < min_steps]
        if not short:
            break
        i = min(short, key=lambda j: (lengths[j], j))
        neighbours = [j for j in (i - 1, i + 1) if 0 <= j < len(out)]
        mine = unit_mean(out[i])
        sims = [float(mine @ unit_mean(out[j])) for j in neighbours]
        j = neighbours[int(np.argmax(sims))]
        lo, hi = min(i, j), max(i, j)
        out[lo : hi + 1] = [(out[lo][0], out[hi][1], out[j][2])]
        _coalesce(out, lo)
    return out


def atomic_events(
    labels: npt.ArrayLike, features: npt.ArrayLike, boundaries: npt.ArrayLike, min_steps: int = 1
) -> list[AtomicEvent]:
    """Atomic events from per-step labels; ``boundaries`` is the (T + 1,) step grid in seconds."""
    grid = np.asarray(boundaries, dtype=np.float64)
    runs = label_runs(labels)
    if grid.shape[0] != (runs[-1][1] if runs else 0) + 1:
        raise ValueError(f"boundaries must have T + 1 entries, got {grid.shape[0]}")
    if min_steps > 1:
        runs = merge_short_runs(runs, features, min_steps)
    return [AtomicEvent(float(grid[s]), float(grid[e]), s, e, c) for s, e, c in runs]

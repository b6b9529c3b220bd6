"""The step grid of a feature sequence: where, in seconds, each row's span starts and ends.

Rows carry their own times (the frames' timestamps), and those times are the truth: a file cut
short keeps only the rows it has, and a sampling window (``start: 5, end: 15``) gives rows inside
that window only. Nothing here stretches rows over ``[0, duration]``.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


def step_boundaries(timestamps: npt.ArrayLike, duration: float) -> FloatArray:
    """``(T + 1,)`` boundaries in seconds for rows centred at ``timestamps`` (sorted, seconds).

    Inner boundaries are the midpoints between neighbouring times. The outer ones extend the first
    and last step by half their neighbour gap (so a 1 fps video gives 0, 1, 2, ...), clipped to
    ``[0, duration]``; a single row spans symmetrically around its time, as far as the video allows.
    """
    t = np.asarray(timestamps, dtype=np.float64).reshape(-1)
    if t.shape[0] == 0:
        raise ValueError("no timestamps: a feature sequence needs at least one row")
    if not np.isfinite(t).all():
        raise ValueError("timestamps contain NaN or infinite values")
    if np.any(np.diff(t) < 0):
        raise ValueError("timestamps must be sorted in time")
    end = float(duration)
    if t.shape[0] == 1:
        half = min(t[0], end - t[0])
        if half <= 0:
            half = end / 2 if end > 0 else 0.5
        return np.array([max(0.0, t[0] - half), min(end, t[0] + half) if end > 0 else t[0] + half])
    inner = (t[1:] + t[:-1]) / 2
    first = max(0.0, t[0] - (t[1] - t[0]) / 2)
    last = t[-1] + (t[-1] - t[-2]) / 2
    if end > 0:
        last = min(end, last)
    last = max(last, inner[-1] if inner.size else t[-1])
    return np.concatenate([[first], inner, [last]])


def uniform_boundaries(steps: int, duration: float) -> FloatArray:
    """Boundaries of ``steps`` equal steps over ``[0, duration]`` (rows without timestamps)."""
    out: FloatArray = np.linspace(0.0, float(duration), steps + 1)
    return out

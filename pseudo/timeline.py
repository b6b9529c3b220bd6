"""Feature rows in time: where, in seconds, each row's step starts and ends, and resampling rows
to another number of equal steps.

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


def resample_linear(features: npt.ArrayLike, steps: int) -> FloatArray:
    """Linearly interpolate the rows of a (T, D) array to (steps, D).

    Row i is taken to describe the centre of step i of T equal steps; output row j is the
    interpolated value at the centre of step j of ``steps`` equal steps over the same span.
    Positions beyond the first or last centre take the nearest row.
    """
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"features must be a 2-D (T, D) array, got shape {x.shape}")
    if x.shape[0] == 0:
        raise ValueError("features have no rows (T == 0)")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    t = x.shape[0]
    if t == steps:
        return x.copy()
    pos = np.clip((np.arange(steps, dtype=np.float64) + 0.5) * (t / steps) - 0.5, 0.0, t - 1)
    lo = np.floor(pos).astype(np.intp)
    hi = np.minimum(lo + 1, t - 1)
    w = (pos - lo)[:, None]
    # x[lo] + w * (x[hi] - x[lo]) keeps equal neighbours bit-identical
    out: FloatArray = x[lo] + w * (x[hi] - x[lo])
    return out

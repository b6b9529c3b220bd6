"""Resampling a feature sequence to a fixed number of uniformly spaced steps."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


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

"""Padding ragged lists of windows into dense arrays, so that metrics run vectorised."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray


def pad_windows(
    windows: Sequence[Sequence[Sequence[float]]], width: int, max_len: int | None = None
) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    """Stack per-query window lists into ``(Q, L, width)`` plus a validity mask ``(Q, L)``.

    Only the first ``width`` values of each window are kept (``[start, end]`` or
    ``[start, end, score]``); ``max_len`` truncates each list, as evaluators do with top-k.
    """
    lengths = np.array([len(w) if max_len is None else min(len(w), max_len) for w in windows], dtype=np.int64)
    longest = int(lengths.max(initial=0))
    out = np.zeros((len(windows), max(longest, 1), width), dtype=np.float64)
    mask = np.arange(max(longest, 1))[None, :] < lengths[:, None]
    flat = [w[:width] for ws, n in zip(windows, lengths, strict=True) for w in ws[:n]]
    if flat:
        values = np.asarray(flat, dtype=np.float64)
        if values.ndim != 2 or values.shape[1] != width:
            raise ValueError(f"every window needs {width} values")
        out[mask] = values
    return out, mask

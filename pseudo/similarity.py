"""How well a text matches a window of a video: the one implementation of inside-minus-outside.

Zero-shot proposal ranking, pseudo-query caption selection and weak-label assignment all score
windows with it, so they rank on the same scale.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from pseudo.data.store import VideoFeatures


def step_similarity(text_emb: NDArray[np.floating], feats: VideoFeatures | NDArray[np.floating]) -> NDArray[np.float64]:
    """Cosine of every text row with every feature row (of a video's features, or of an array): ``(C, T)``."""
    f = (feats.features if isinstance(feats, VideoFeatures) else np.asarray(feats)).astype(np.float64)
    f = f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)
    t = np.asarray(text_emb, dtype=np.float64)
    t = t / np.maximum(np.linalg.norm(t, axis=1, keepdims=True), 1e-12)
    out: NDArray[np.float64] = t @ f.T
    return out


def window_contrast(
    sims: NDArray[np.float64],
    timestamps: NDArray[np.float64],
    windows: Sequence[tuple[float, float]] | NDArray[np.float64],
    outside_weight: float,
) -> NDArray[np.float64]:
    """``mean(sims inside) - w * mean(sims outside)`` for each text row and window: ``(C, W)``.

    ``sims`` is ``(C, T)`` (see :func:`step_similarity`); a step is inside ``[start, end)`` when its
    timestamp is. Every window is scored on this one scale: one with no step outside it (the whole
    video) is compared with itself, so its contrast is ``(1 - w)`` times its mean (0 for ``w = 1``),
    which a window that really stands out beats. A window shorter than a step is stood for by the
    step nearest its centre.
    """
    ts = np.asarray(timestamps, dtype=np.float64)
    t = sims.shape[1]
    win = np.asarray(windows, dtype=np.float64).reshape(-1, 2)
    inside = (ts[None, :] >= win[:, :1]) & (ts[None, :] < win[:, 1:])  # (W, T)
    empty = ~inside.any(axis=1)
    if empty.any():
        centre = win[empty].mean(axis=1)
        inside[np.flatnonzero(empty), np.abs(ts[None, :] - centre[:, None]).argmin(axis=1)] = True
    n_in = inside.sum(axis=1)  # (W,)
    n_out = t - n_in
    total = sims.sum(axis=1, keepdims=True)  # (C, 1)
    sum_in = sims @ inside.T.astype(np.float64)  # (C, W)
    mean_in = sum_in / n_in[None, :]
    mean_out = np.where(n_out[None, :] > 0, (total - sum_in) / np.maximum(n_out, 1)[None, :], mean_in)
    out: NDArray[np.float64] = mean_in - outside_weight * mean_out
    return out


def contrast_scores(
    text_emb: NDArray[np.floating], feats: VideoFeatures, windows: Sequence[tuple[float, float]], outside_weight: float
) -> NDArray[np.float64]:
    """:func:`window_contrast` of ``text_emb`` (C, D) against ``feats`` for each window: ``(C, W)``."""
    return window_contrast(step_similarity(text_emb, feats), feats.timestamps, windows, outside_weight)

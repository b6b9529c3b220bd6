"""TF-IDF caption matching, for videos known through clip captions: each query against each clip's
caption with TF-IDF cosine, smoothed over time, thresholded into windows."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from pseudo.data.captions import ExternalCaptions
from pseudo.records import Prediction, Query


def _runs(mask: NDArray[np.bool_]) -> list[tuple[int, int]]:
    """Maximal runs of True as (start, end) step indices, end exclusive."""
    padded = np.r_[False, mask, False].astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def windows_from_curve(
    curve: NDArray[np.float64],
    clip_seconds: float,
    duration: float,
    fractions: Sequence[float] = (0.9, 0.75, 0.6, 0.45, 0.15),
) -> list[tuple[float, float, float]]:
    """Windows where the (smoothed) relevance curve is above fractions of its range (multi-threshold
    grouping, as in TAG-style detectors), scored by mean relevance inside minus outside, best first."""
    lo, hi = float(curve.min()), float(curve.max())
    found: dict[tuple[int, int], float] = {}
    for f in fractions:
        for a, b in _runs(curve >= lo + f * (hi - lo)):
            outside = np.r_[curve[:a], curve[b:]]
            found.setdefault((a, b), float(curve[a:b].mean() - (outside.mean() if len(outside) else 0.0)))
    out = [(a * clip_seconds, min(b * clip_seconds, duration), s) for (a, b), s in found.items()]
    return sorted(out, key=lambda w: -w[2])


def smooth(x: NDArray[np.float64], width: int) -> NDArray[np.float64]:
    if width <= 1:
        return x
    kernel = np.ones(width) / width
    out: NDArray[np.float64] = np.convolve(np.pad(x, width // 2, mode="edge"), kernel, mode="valid")[: len(x)]
    return out


def tfidf_caption_windows(
    queries: Sequence[Query], track: ExternalCaptions, smooth_width: int = 9, top_k: int = 10
) -> list[Prediction]:
    """Smoothing over 9 clips (18 s) was the best of 3/5/9 on QVHighlights val: a tuned baseline."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    vids = sorted({q.vid for q in queries})
    caps = {v: track.captions(v) for v in vids}
    corpus = [c.text for v in vids for c in caps[v]]
    vec = TfidfVectorizer(stop_words="english", sublinear_tf=True).fit(corpus + [q.query for q in queries])
    mats = {v: vec.transform([c.text for c in caps[v]]) for v in vids}
    out = []
    for q in queries:
        sims = (mats[q.vid] @ vec.transform([q.query]).T).toarray().ravel()
        curve = smooth(sims.astype(np.float64), smooth_width)
        wins = windows_from_curve(curve, track.clip_seconds, q.duration)[:top_k] if curve.max() > 0 else []
        out.append(Prediction(q.qid, q.vid, tuple(wins) or ((0.0, q.duration, 0.0),), q.query))
    return out

"""Baselines that need no training, for videos known through clip captions.

* :func:`tfidf_caption_windows`: each query against each clip's caption with TF-IDF cosine,
  smoothed over time, thresholded into windows;
* :func:`score_proposals`: zero-shot ranking of a video's proposals by text-feature similarity
  (inside minus outside), with the same encoder that made the features.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from pseudo.backbones import Backbone
from pseudo.captions.external import ExternalCaptions
from pseudo.captions.queries import contrast_scores
from pseudo.data.records import Prediction, Query
from pseudo.features import FeatureSource


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


def score_proposals(
    queries: Sequence[Query],
    proposals: dict[str, list[dict[str, Any]]],
    features: FeatureSource,
    encoder: Backbone,
    outside_weight: float = 1.0,
    top_k: int = 10,
) -> list[Prediction]:
    """Zero-shot: each query ranks its video's proposals by contrastive text-feature similarity."""
    emb = encoder.encode_texts([q.query for q in queries])
    out = []
    by_vid: dict[str, list[int]] = {}
    for i, q in enumerate(queries):
        by_vid.setdefault(q.vid, []).append(i)
    results: dict[int, Prediction] = {}
    for vid, idx in by_vid.items():
        feats = features.get(vid)
        props = proposals.get(vid, [])
        if not props:
            for i in idx:
                results[i] = Prediction(queries[i].qid, vid, ((0.0, queries[i].duration, 0.0),), queries[i].query)
            continue
        scores = np.stack(
            [contrast_scores(emb[idx], feats, float(p["start"]), float(p["end"]), outside_weight) for p in props],
            axis=1,
        )  # (Q_vid, P)
        for row, i in zip(scores, idx, strict=True):
            order = np.argsort(-row, kind="stable")[:top_k]
            wins = tuple((float(props[j]["start"]), float(props[j]["end"]), float(row[j])) for j in order)
            results[i] = Prediction(queries[i].qid, vid, wins, queries[i].query)
    out = [results[i] for i in range(len(queries))]
    return out

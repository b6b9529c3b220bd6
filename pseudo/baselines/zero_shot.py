"""Zero-shot moment retrieval: each query ranks its video's proposals by how much better its text
matches inside a proposal than outside it (:func:`pseudo.similarity.window_contrast`), with the
encoder that made the features. The one implementation behind ``pseudo localize`` without a run
and the benchmark's zero-shot row."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from pseudo.backbones import Backbone
from pseudo.data.store import FeatureSource
from pseudo.data.variants import phrasings
from pseudo.records import Prediction, Proposal, Query
from pseudo.similarity import contrast_scores


def rank_proposals(
    queries: Sequence[Query],
    proposals: Mapping[str, Sequence[Proposal]],
    features: FeatureSource,
    encoder: Backbone,
    outside_weight: float = 1.0,
    top_k: int = 10,
    variants: Mapping[str, Sequence[str]] | None = None,
) -> list[Prediction]:
    """Up to ``top_k`` of each query's video's proposals, best first; a video without proposals gets
    the whole video at score 0. With ``variants`` (other phrasings per qid) a proposal's score is its
    mean score over the query and its variants."""
    variants = variants or {}
    texts = [phrasings(q, variants) for q in queries]
    flat = encoder.encode_texts([t for ts in texts for t in ts])
    owner = np.repeat(np.arange(len(queries)), [len(ts) for ts in texts])
    by_vid: dict[str, list[int]] = {}
    for i, q in enumerate(queries):
        by_vid.setdefault(q.vid, []).append(i)
    results: dict[int, Prediction] = {}
    for vid, idx in by_vid.items():
        props = proposals.get(vid, [])
        if not props:
            for i in idx:
                results[i] = Prediction(queries[i].qid, vid, ((0.0, queries[i].duration, 0.0),), queries[i].query)
            continue
        rows = np.flatnonzero(np.isin(owner, idx))
        per_text = contrast_scores(flat[rows], features.get(vid), [(p.start, p.end) for p in props], outside_weight)
        scores = np.stack([per_text[owner[rows] == i].mean(axis=0) for i in idx])
        for row, i in zip(scores, idx, strict=True):
            order = np.argsort(-row, kind="stable")[:top_k]
            wins = tuple((props[j].start, props[j].end, float(row[j])) for j in order)
            results[i] = Prediction(queries[i].qid, vid, wins, queries[i].query)
    return [results[i] for i in range(len(queries))]

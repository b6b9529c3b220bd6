"""Zero-shot moment retrieval: each query ranks its video's proposals by how much better its text
matches inside a proposal than outside it (:func:`pseudo.similarity.window_contrast`), with the
encoder that made the features. The one implementation behind ``pseudo localize`` without a run
and the benchmark's zero-shot row."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from pseudo.backbones import Backbone
from pseudo.data.store import FeatureSource
from pseudo.records import Prediction, Proposal, Query
from pseudo.similarity import contrast_scores


def rank_proposals(
    queries: Sequence[Query],
    proposals: Mapping[str, Sequence[Proposal]],
    features: FeatureSource,
    encoder: Backbone,
    outside_weight: float = 1.0,
    top_k: int = 10,
) -> list[Prediction]:
    """Up to ``top_k`` of each query's video's proposals, best first; a video without proposals gets
    the whole video at score 0."""
    emb = encoder.encode_texts([q.query for q in queries])
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
        scores = contrast_scores(emb[idx], features.get(vid), [(p.start, p.end) for p in props], outside_weight)
        for row, i in zip(scores, idx, strict=True):
            order = np.argsort(-row, kind="stable")[:top_k]
            wins = tuple((props[j].start, props[j].end, float(row[j])) for j in order)
            results[i] = Prediction(queries[i].qid, vid, wins, queries[i].query)
    return [results[i] for i in range(len(queries))]

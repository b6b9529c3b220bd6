"""VTG-GPT's span algorithm (Xu et al. 2024, released code ``infer_qvhighlights.py``) on our encoder,
so a comparison can separate the algorithm from its text encoder (VTG-GPT's paraphrase-distilroberta
cannot be fetched here; the features are the caption embeddings of whichever encoder made them).

For one query on one video known through its clip captions:

1. the cosine similarity of the query with each clip's caption;
2. min-max normalised over the video;
3. a threshold at the lower edge of the highest of ``num_bins`` histogram bins over [0, 1] that has at
   least ``top_k`` clips at or above it; the clips strictly above it are kept;
4. kept clips whose gap is at most ``gap`` clips are merged into one span;
5. a span scores half its share of the kept clips plus half its mean normalised similarity;
6. the spans of the query and of each of its variants (VTG-GPT's five LLM rephrasings) are pooled,
   ranked by score, and near-duplicates removed with NMS (IoU 0.95).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from pseudo.backbones import Backbone
from pseudo.data.store import FeatureSource
from pseudo.metrics.iou import iou_cross
from pseudo.records import Prediction, Query
from pseudo.similarity import step_similarity

Span = tuple[int, int, float]  # first clip, last clip (inclusive), score


@dataclass(frozen=True)
class SpanSettings:
    num_bins: int = 10
    top_k: int = 8
    gap: int = 6
    nms_threshold: float = 0.95


def normalise(scores: NDArray[np.float64]) -> NDArray[np.float64]:
    """Min-max to [0, 1]; a flat curve (every clip alike) becomes all zeros."""
    lo, hi = float(scores.min()), float(scores.max())
    if hi - lo <= 0:
        return np.zeros_like(scores)
    out: NDArray[np.float64] = (scores - lo) / (hi - lo)
    return out


def spans(scores: NDArray[np.float64], cfg: SpanSettings = SpanSettings()) -> list[Span]:
    """Steps 3-5 on one normalised curve, best first."""
    counts, edges = np.histogram(scores, bins=cfg.num_bins, range=(0, 1))
    threshold = 0.0
    for i in range(len(counts) - 1, -1, -1):
        if counts[i:].sum() >= cfg.top_k:
            threshold = float(edges[i])
            break
    kept = np.flatnonzero(scores > threshold)
    if kept.size == 0:
        return []
    groups: list[list[int]] = [[int(kept[0])]]
    for c in kept[1:]:
        if c - groups[-1][-1] <= cfg.gap:
            groups[-1].append(int(c))
        else:
            groups.append([int(c)])
    total = sum(len(g) for g in groups)
    out = [(min(g), max(g), 0.5 * len(g) / total + 0.5 * float(np.mean(scores[g]))) for g in groups]
    return sorted(out, key=lambda s: -s[2])


def nms(found: Sequence[Span], threshold: float) -> list[Span]:
    """Greedy NMS on clip spans: a span goes when its IoU with a kept, better one reaches ``threshold``."""
    rest = sorted(found, key=lambda s: -s[2])
    keep: list[Span] = []
    while rest:
        best = rest.pop(0)
        keep.append(best)
        if rest:
            a = np.array([[best[0], best[1]]], dtype=np.float64)
            b = np.array([[s[0], s[1]] for s in rest], dtype=np.float64)
            ious = iou_cross(b, a)[:, 0]
            rest = [s for s, v in zip(rest, ious, strict=True) if v < threshold]
    return keep


def vtggpt_predictions(
    queries: Sequence[Query],
    features: FeatureSource,
    encoder: Backbone,
    variants: Mapping[str, Sequence[str]] | None = None,
    cfg: SpanSettings = SpanSettings(),
    top_k: int = 10,
) -> list[Prediction]:
    """Ranked windows per query (clip spans in seconds on the features' own step grid)."""
    variants = variants or {}
    texts = [[q.query, *variants.get(str(q.qid), ())] for q in queries]
    flat = [t for ts in texts for t in ts]
    emb = encoder.encode_texts(flat)
    out = []
    lo = 0
    for q, ts in zip(queries, texts, strict=True):
        rows = emb[lo : lo + len(ts)]
        lo += len(ts)
        feats = features.get(q.vid)
        bounds = feats.boundaries()
        sims = step_similarity(rows, feats)
        found = [s for row in sims for s in spans(normalise(row), cfg)]
        if cfg.nms_threshold > 0:
            found = nms(found, cfg.nms_threshold)
        wins = tuple((float(bounds[a]), float(min(bounds[b + 1], q.duration)), float(sc)) for a, b, sc in found[:top_k])
        out.append(Prediction(q.qid, q.vid, wins or ((0.0, q.duration, 0.0),), q.query))
    return out

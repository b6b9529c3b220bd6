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

__all__ = ["SpanSettings", "nms", "normalise", "spans", "vtggpt_predictions"]

from pseudo.backbones import Backbone
from pseudo.curves import SpanSettings, nms, normalise, spans
from pseudo.data.store import FeatureSource
from pseudo.data.variants import phrasings
from pseudo.records import Prediction, Query
from pseudo.similarity import step_similarity


def vtggpt_predictions(
    queries: Sequence[Query],
    features: FeatureSource,
    encoder: Backbone,
    variants: Mapping[str, Sequence[str]] | None = None,
    cfg: SpanSettings | None = None,
    top_k: int = 10,
) -> list[Prediction]:
    """Ranked windows per query (clip spans in seconds on the features' own step grid)."""
    cfg = cfg or SpanSettings()
    variants = variants or {}
    texts = [phrasings(q, variants) for q in queries]
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

"""Turning proposals and captions into pseudo-queries (and real sentences into weak labels).

For each proposal, the captions of a few of its frames are gathered, near-duplicates dropped, and
the caption that fits the proposal best *and its surroundings least* is kept: each caption's text
embedding is compared with the proposal's step features inside and outside the window, so a
caption that describes the whole video is down-weighted. A PSVL-style simplified query (noun and
verb lemmas) is made from it, and long proposals can join their captions in time order.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field

from pseudo.backbones import Backbone
from pseudo.captions.sources import CaptionSource
from pseudo.captions.text import dedup, join_in_time, shorten_many, simplify_many
from pseudo.data.store import VideoFeatures
from pseudo.records import Proposal, Query
from pseudo.similarity import contrast_scores, step_similarity


class QueryConfig(BaseModel):
    """How pseudo-queries are made from a proposal's captions (every step can be switched)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    frames: Literal["centre", "even"] = "even"
    num_frames: Annotated[int, Field(ge=1)] = 3
    dedup: bool = True
    dedup_threshold: Annotated[float, Field(gt=0, le=1)] = 0.8
    selection: Literal["contrastive", "centre"] = "contrastive"
    outside_weight: Annotated[float, Field(ge=0)] = 1.0
    query_type: Literal["natural", "simple"] = "natural"
    #: also record each query's shortened skeleton (``meta.query_short``, :func:`shorten`), one of the
    #: styles training can alternate between (``data.query_styles``)
    short_queries: bool = True
    join_long: bool = False
    join_min_seconds: float = 30.0
    join_max_captions: Annotated[int, Field(ge=2)] = 3
    unique_per_video: bool = True
    max_per_video: Annotated[int | None, Field(ge=1)] = None
    #: also label the other places where the query holds: runs of steps outside the proposal whose
    #: similarity to the query is at least ``repeat_ratio`` times its mean inside the proposal (QVHighlights
    #: queries often hold at several moments); needs the features and a text encoder in their space
    repeat_windows: bool = False
    repeat_ratio: Annotated[float, Field(gt=0)] = 1.0
    repeat_gap_steps: Annotated[int, Field(ge=0)] = 1
    repeat_max: Annotated[int, Field(ge=1)] = 4


def frame_times(start: float, end: float, cfg: QueryConfig) -> list[float]:
    """Times to caption inside ``[start, end)``: its centre, or ``num_frames`` evenly spaced centres."""
    if cfg.frames == "centre" or cfg.num_frames == 1:
        return [(start + end) / 2]
    step = (end - start) / cfg.num_frames
    return [start + (i + 0.5) * step for i in range(cfg.num_frames)]


def repeat_windows(
    text_emb: NDArray[np.float32], feats: VideoFeatures, window: tuple[float, float], cfg: QueryConfig
) -> list[tuple[float, float]]:
    """Other windows where the text holds: maximal runs (gaps of up to ``repeat_gap_steps`` closed) of
    steps outside ``window`` at least ``repeat_ratio`` times as similar to the text as the steps inside
    it are on average; the longest ``repeat_max`` of them, in time order."""
    sims = step_similarity(text_emb[None, :], feats)[0]
    ts = feats.timestamps
    inside = (ts >= window[0]) & (ts < window[1])
    if not inside.any():
        return []
    bounds = feats.boundaries()
    near = (ts >= window[0] - 1e-9) & (ts < window[1] + 1e-9)
    hot = (sims >= cfg.repeat_ratio * sims[inside].mean()) & ~inside
    runs: list[list[int]] = []
    for t in np.flatnonzero(hot):
        if runs and t - runs[-1][-1] <= cfg.repeat_gap_steps + 1:
            runs[-1].append(int(t))
        else:
            runs.append([int(t)])
    # a run that reaches the proposal belongs to it, not to another moment
    edge = {int(np.flatnonzero(near)[0]) - 1, int(np.flatnonzero(near)[-1]) + 1}
    runs = [r for r in runs if not edge & set(range(r[0], r[-1] + 1))]
    runs = sorted(sorted(runs, key=lambda r: -(r[-1] - r[0]))[: cfg.repeat_max])
    return [(float(bounds[r[0]]), float(bounds[r[-1] + 1])) for r in runs]


def build_pseudo_queries(
    vid: str,
    duration: float,
    proposals: Sequence[Proposal],
    source: CaptionSource,
    cfg: QueryConfig,
    feats: VideoFeatures | None = None,
    text_encoder: Backbone | None = None,
    nlp: Any = None,
) -> list[Query]:
    """Pseudo-annotations for one video, in the benchmark record schema (``source="pseudo"``)."""
    if cfg.selection == "contrastive" and (feats is None or text_encoder is None):
        raise ValueError("contrastive caption selection needs the video's features and a text encoder in their space")
    ranked = sorted(enumerate(proposals), key=lambda ip: -ip[1].score)
    times = [frame_times(p.start, p.end, cfg) for _, p in ranked]
    flat = source.captions_at(vid, [t for ts in times for t in ts])
    per_prop: list[list[str]] = []
    k = 0
    for ts in times:
        caps = flat[k : k + len(ts)]
        k += len(ts)
        per_prop.append([caps[i] for i in dedup(caps, cfg.dedup_threshold)] if cfg.dedup else list(caps))
    emb: dict[str, NDArray[np.float32]] = {}
    if cfg.selection == "contrastive":
        assert text_encoder is not None
        uniq = sorted({c for caps in per_prop for c in caps})
        emb = dict(zip(uniq, text_encoder.encode_texts(uniq), strict=True)) if uniq else {}
    chosen: list[tuple[int, Proposal, str, float, list[float]]] = []
    for (pid, prop), caps, ts in zip(ranked, per_prop, times, strict=True):
        if not caps:
            continue
        start, end = prop.start, prop.end
        if cfg.selection == "contrastive":
            assert feats is not None
            scores = contrast_scores(np.stack([emb[c] for c in caps]), feats, [(start, end)], cfg.outside_weight)[:, 0]
            best = int(np.argmax(scores))
            text, score = caps[best], float(scores[best])
        else:
            text, score = caps[len(caps) // 2], prop.score
        if cfg.join_long and end - start >= cfg.join_min_seconds and len(caps) > 1:
            text = join_in_time(caps[: cfg.join_max_captions])
        chosen.append((pid, prop, text, score, ts))
    simple = simplify_many([c[2] for c in chosen], nlp) if chosen else []
    short = shorten_many([c[2] for c in chosen], nlp) if chosen and cfg.short_queries else [""] * len(chosen)
    out: list[Query] = []
    seen: set[str] = set()
    for (pid, prop, text, score, ts), simp, brief in zip(chosen, simple, short, strict=True):
        query = text if cfg.query_type == "natural" else simp.text
        key = query.lower().strip()
        if not key or (cfg.unique_per_video and key in seen):
            continue
        seen.add(key)
        meta = {
            "query_natural": text,
            "query_simple": simp.text,
            **({"query_short": brief} if cfg.short_queries else {}),
            "provenance": {
                "proposal": pid,
                "atoms": list(prop.atoms),
                "frames": [round(t, 3) for t in ts],
                "captioner": source.name,
                "selection_score": round(score, 6),
                "proposal_score": prop.score,
                "proposal_hash": prop.settings_hash,
                "features_hash": prop.features_hash,
            },
        }
        window = (prop.start, prop.end)
        windows = [window]
        if cfg.repeat_windows and feats is not None and text in emb:
            windows += repeat_windows(emb[text], feats, window, cfg)
        out.append(Query(f"{vid}#{pid}", vid, duration, query, tuple(windows), "pseudo", meta))
        if cfg.max_per_video and len(out) >= cfg.max_per_video:
            break
    return out


def assign_weak(
    sentences: Sequence[Query],
    proposals: Sequence[Proposal],
    feats: VideoFeatures,
    text_encoder: Backbone,
    outside_weight: float = 1.0,
    temperature: float = 0.05,
) -> list[Query]:
    """Weak supervision: each real sentence of a video (its span unknown) goes to the proposal
    that matches it best; ``confidence`` is the softmax probability of that choice."""
    if not proposals or not sentences:
        return []
    emb = text_encoder.encode_texts([s.query for s in sentences])
    scores = contrast_scores(emb, feats, [(p.start, p.end) for p in proposals], outside_weight)  # (S, P)
    z = (scores - scores.max(axis=1, keepdims=True)) / temperature
    prob = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    out = []
    for s, row, prow in zip(sentences, scores, prob, strict=True):
        j = int(np.argmax(row))
        p = proposals[j]
        meta = {
            "confidence": round(float(prow[j]), 6),
            "provenance": {
                "proposal": j,
                "selection_score": round(float(row[j]), 6),
                "atoms": list(p.atoms),
                "features_hash": p.features_hash,
            },
        }
        out.append(Query(s.qid, s.vid, s.duration, s.query, ((p.start, p.end),), "weak", meta))
    return out

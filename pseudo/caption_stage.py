"""``pseudo captions``: proposals + captions -> pseudo-annotations in the benchmarks' schema.

The output is QVHighlights-style JSON Lines (``qid, vid, duration, query, relevant_windows``)
with ``source: pseudo`` (or ``weak``) and provenance, loadable by the same loader as real
annotations; ``<out>.config.yaml`` records the settings and code version.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict

from pseudo.backbones import Backbone, build_backbone
from pseudo.captions.external import ExternalCaptions
from pseudo.captions.features import CaptionFeaturesConfig
from pseudo.captions.queries import QueryConfig, assign_weak, build_pseudo_queries
from pseudo.captions.sources import CaptionerConfig, build_caption_source
from pseudo.captions.text import load_nlp
from pseudo.data.records import Query
from pseudo.errors import PseudoError
from pseudo.features import FeatureSource, FeatureStore, RunSummary, VideoFeatures
from pseudo.io import atomic_write_jsonl, atomic_write_text, check_writable
from pseudo.proposal_stage import MismatchError, check_same_features, read_proposals
from pseudo.settings import code_version, dump_yaml


class CaptionsRunConfig(BaseModel):
    """The YAML for ``pseudo captions --config``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    captioner: CaptionerConfig = CaptionerConfig()
    queries: QueryConfig = QueryConfig()


class TextMemo:
    """Remembers text embeddings, so captions already embedded (e.g. as caption-track features)
    are not encoded again; only ``encode_texts`` is provided."""

    def __init__(self, encoder: Backbone) -> None:
        self.encoder = encoder
        self.dim = encoder.dim
        self.known: dict[str, NDArray[np.float32]] = {}

    def seed(self, texts: Sequence[str], embeddings: NDArray[np.float32]) -> None:
        for t, e in zip(texts, embeddings, strict=True):
            self.known.setdefault(t, e.astype(np.float32))

    def encode_texts(self, texts: Sequence[str]) -> NDArray[np.float32]:
        todo = sorted({t for t in texts if t not in self.known})
        if todo:
            self.seed(todo, self.encoder.encode_texts(todo))
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        return np.stack([self.known[t] for t in texts])

    def encode_images(self, frames: NDArray[np.uint8]) -> NDArray[np.float32]:
        return self.encoder.encode_images(frames)

    def clear(self) -> None:
        self.known.clear()


def caption_track_of(features: FeatureSource | None) -> ExternalCaptions | None:
    """The captions a caption-track store was made from (its rows are their embeddings)."""
    if isinstance(features, FeatureStore) and isinstance(features.cfg, CaptionFeaturesConfig):
        return ExternalCaptions(features.cfg.captions, features.cfg.clip_seconds)
    return None


def seed_from_captions(memo: TextMemo, track: ExternalCaptions, feats: VideoFeatures) -> None:
    """Reuse a caption-track store's rows as the embeddings of its captions (same encoder)."""
    caps = track.captions(feats.vid)
    if len(caps) == len(feats.features):
        memo.seed([c.text for c in caps], feats.features)


def text_encoder_for(features: FeatureSource | None) -> Backbone | None:
    """The encoder whose text embeddings share the features' space (CLIP text tower, MiniLM)."""
    if isinstance(features, FeatureStore):
        enc = features.cfg.text_encoder()
        return build_backbone(enc) if enc is not None else None
    return None


def write_queries(out: str | Path, queries: Sequence[Query], meta: dict[str, Any]) -> Path:
    out = Path(out)
    atomic_write_jsonl(out, (q.to_json() for q in queries))
    atomic_write_text(out.with_name(out.name + ".config.yaml"), dump_yaml({"code_version": code_version(), **meta}))
    return out


def run_captions(
    proposals: str | Path,
    out: str | Path,
    cfg: CaptionsRunConfig,
    features: FeatureSource | None = None,
    vids: Sequence[str] | None = None,
    on_start: Callable[[int], None] | None = None,
    on_video: Callable[[str], None] | None = None,
) -> tuple[RunSummary, list[Query]]:
    t0 = time.perf_counter()
    features_dir = getattr(features, "root", None)
    by_video = read_proposals(proposals)
    check_writable(out, "file")
    todo = [v for v in (vids or sorted(by_video)) if v in by_video]
    if not todo:
        raise PseudoError(f"{proposals}: no proposals for the requested videos")
    source = build_caption_source(cfg.captioner)
    base = text_encoder_for(features) if cfg.queries.selection == "contrastive" else None
    encoder = TextMemo(base) if base is not None else None
    track = caption_track_of(features) if encoder is not None else None
    if cfg.queries.selection == "contrastive" and encoder is None:
        raise PseudoError(
            "contrastive caption selection needs --features-dir pointing at a pseudo feature store "
            "(its encoder embeds the captions); or set queries.selection: centre"
        )
    nlp = load_nlp()
    if on_start is not None:
        on_start(len(todo))
    summary = RunSummary()
    queries: list[Query] = []
    for vid in todo:
        props = by_video[vid]
        try:
            feats = features.get(vid) if features is not None else None
            if feats is not None:
                check_same_features(props[0].get("features_hash"), feats, proposals, features_dir, "proposals")
            if encoder is not None and feats is not None:
                encoder.clear()  # memory stays bounded: one video's texts at a time
                if track is not None:
                    seed_from_captions(encoder, track, feats)
            qs = build_pseudo_queries(vid, float(props[0]["duration"]), props, source, cfg.queries, feats, encoder, nlp)
            queries.extend(qs)
            summary.done.append(vid)
        except MismatchError:
            raise
        except PseudoError as exc:
            summary.failed[vid] = str(exc)
        if on_video is not None:
            on_video(vid)
    meta = {"stage": "captions", "proposals": str(proposals), **cfg.model_dump(mode="json")}
    write_queries(out, queries, meta)
    summary.seconds = time.perf_counter() - t0
    return summary, queries


def run_weak(
    sentences: Sequence[Query],
    proposals: str | Path,
    features: FeatureSource,
    out: str | Path,
    outside_weight: float = 1.0,
) -> tuple[RunSummary, list[Query]]:
    """Weak labels: real sentences without timestamps assigned to their best proposal."""
    t0 = time.perf_counter()
    by_video = read_proposals(proposals)
    check_writable(out, "file")
    per_vid: dict[str, list[Query]] = {}
    for s in sentences:
        per_vid.setdefault(s.vid, []).append(s)
    overlap = [v for v in per_vid if v in by_video]
    if not overlap:
        some = ", ".join(list(per_vid)[:3])
        raise PseudoError(
            f"none of the {len(per_vid)} videos of the sentences (e.g. {some}) has proposals in {proposals}; "
            "give the sentences of the videos the proposals were made for"
        )
    encoder = text_encoder_for(features)
    if encoder is None:
        raise PseudoError("weak labels need --features-dir pointing at a pseudo feature store (for its text encoder)")
    summary = RunSummary()
    labels: list[Query] = []
    for vid, sents in per_vid.items():
        if vid not in by_video:
            summary.failed[vid] = "no proposals"
            continue
        feats = features.get(vid)
        check_same_features(
            by_video[vid][0].get("features_hash"), feats, proposals, getattr(features, "root", None), "proposals"
        )
        labels.extend(assign_weak(sents, by_video[vid], feats, encoder, outside_weight))
        summary.done.append(vid)
    write_queries(out, labels, {"stage": "weak", "proposals": str(proposals), "outside_weight": outside_weight})
    summary.seconds = time.perf_counter() - t0
    return summary, labels


def _histogram(values: Sequence[float], edges: Sequence[float]) -> dict[str, float]:
    counts, _ = np.histogram(np.clip(values, edges[0], edges[-1] - 1e-9), bins=np.asarray(edges))
    total = max(1, len(values))
    return {f"{edges[i]:g}-{edges[i + 1]:g}": round(100.0 * c / total, 1) for i, c in enumerate(counts)}


WORD_EDGES = (0, 4, 7, 10, 13, 16, 20, 1000)
LENGTH_EDGES = (0, 5, 10, 20, 30, 60, 90, 1e9)


def label_stats(queries: Sequence[Query], reference: Sequence[Query] | None = None) -> dict[str, Any]:
    """Counts and histograms (percent) of pseudo-labels, beside a real split's when given."""
    words = [len(q.query.split()) for q in queries]
    lengths = [w[1] - w[0] for q in queries for w in q.windows]
    vids_per_text: dict[str, set[str]] = {}
    for q in queries:
        vids_per_text.setdefault(q.query.lower().strip(), set()).add(q.vid)
    shared = sum(1 for q in queries if len(vids_per_text[q.query.lower().strip()]) > 1)
    out: dict[str, Any] = {
        "queries": len(queries),
        "videos": len({q.vid for q in queries}),
        "query_words_hist": _histogram(words, WORD_EDGES),
        "moment_seconds_hist": _histogram(lengths, LENGTH_EDGES),
        "mean_query_words": round(float(np.mean(words)), 2) if words else 0.0,
        "mean_moment_seconds": round(float(np.mean(lengths)), 2) if lengths else 0.0,
        "queries_shared_across_videos_pct": round(100.0 * shared / max(1, len(queries)), 2),
        "top_repeated_queries": Counter(q.query for q in queries).most_common(5),
    }
    if reference:
        ref_words = [len(q.query.split()) for q in reference]
        ref_lengths = [w[1] - w[0] for q in reference for w in q.windows]
        out["reference"] = {
            "queries": len(reference),
            "query_words_hist": _histogram(ref_words, WORD_EDGES),
            "moment_seconds_hist": _histogram(ref_lengths, LENGTH_EDGES),
            "mean_query_words": round(float(np.mean(ref_words)), 2),
            "mean_moment_seconds": round(float(np.mean(ref_lengths)), 2),
        }
    return out

"""The labels stage: proposals + captions -> pseudo-annotations in the benchmarks' schema.

Two kinds of label, by the recipe's ``labels.kind``:

* ``pseudo`` (:func:`run_captions`): each proposal's frames are captioned (BLIP, or captions made
  elsewhere) and turned into a pseudo-query; nothing human enters;
* ``weak`` (:func:`run_weak`): real sentences without timestamps, each assigned to the proposal that
  matches it best.

The output is QVHighlights-style JSON Lines (``qid, vid, duration, query, relevant_windows``) with
``source: pseudo`` (or ``weak``) and provenance, loadable by the same loader as real annotations;
``<out>.config.yaml`` records the settings and code version. Pseudo-labels are made per video, in
parts (resumable, shardable: :mod:`pseudo.stages.partfiles`).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict

from pseudo.backbones import build_backbone
from pseudo.backbones.memo import TextMemo
from pseudo.captions.queries import QueryConfig, assign_weak, build_pseudo_queries
from pseudo.captions.sources import CaptionerConfig, CaptionSource, build_caption_source
from pseudo.captions.text import load_nlp
from pseudo.data.benchmarks import load_qvh_jsonl
from pseudo.data.store import FeatureSource, VideoFeatures
from pseudo.errors import PseudoError
from pseudo.io import atomic_write_jsonl, atomic_write_text, check_writable
from pseudo.records import Proposal, Query
from pseudo.settings import code_version, dump_yaml, settings_hash
from pseudo.stages.features import caption_track_of, text_encoder_of
from pseudo.stages.partfiles import PartFiles, PartsTask
from pseudo.stages.per_video import Engine, Outcome, RunSummary, run_per_video
from pseudo.stages.proposals import check_same_features, read_proposals


class LabelsConfig(BaseModel):
    """How pseudo-labels are made: where captions come from, and how queries are built from them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    captioner: CaptionerConfig = CaptionerConfig()
    queries: QueryConfig = QueryConfig()


def write_queries(out: str | Path, queries: Sequence[Query], meta: dict[str, Any]) -> Path:
    out = Path(out)
    atomic_write_jsonl(out, (q.to_json() for q in queries))
    atomic_write_text(out.with_name(out.name + ".config.yaml"), dump_yaml({"code_version": code_version(), **meta}))
    return out


class PseudoQueriesTask(PartsTask):
    """Pseudo-queries of one video at a time, kept as parts keyed by settings and proposals."""

    errors: tuple[type[BaseException], ...] = (PseudoError,)

    def __init__(
        self,
        by_video: dict[str, list[Proposal]],
        cfg: LabelsConfig,
        source: CaptionSource,
        features: FeatureSource | None,
        encoder: TextMemo | None,
        parts: PartFiles,
        proposals_path: Path,
    ) -> None:
        super().__init__(parts)
        self.by_video = by_video
        self.cfg = cfg
        self.source = source
        self.features = features
        self.encoder = encoder
        self.proposals_path = proposals_path
        self.track = caption_track_of(features) if encoder is not None else None
        self.identity = settings_hash(cfg, source.identity())
        self.nlp: Any = None

    def key(self, vid: str) -> str:
        return settings_hash(self.identity, sorted({p.settings_hash for p in self.by_video[vid]}))

    def run(self, vids: Sequence[str]) -> dict[str, Outcome | BaseException]:
        out: dict[str, Outcome | BaseException] = {}
        self.nlp = self.nlp or load_nlp()
        for vid in vids:
            props = self.by_video[vid]
            feats: VideoFeatures | None = None
            if self.features is not None:
                check_same_features(
                    props[0].features_hash,
                    self.features.content_hash(vid),
                    vid,
                    self.proposals_path,
                    getattr(self.features, "root", None),
                    "proposals",
                )
                feats = self.features.get(vid)
            if self.encoder is not None and feats is not None:
                self.encoder.clear()  # memory stays bounded: one video's texts at a time
                if self.track is not None:
                    caps = self.track.captions(vid)
                    if len(caps) == len(feats.features):  # the store's rows are these captions' embeddings
                        self.encoder.seed([c.text for c in caps], feats.features)
            try:
                qs = build_pseudo_queries(
                    vid, props[0].duration, props, self.source, self.cfg.queries, feats, self.encoder, self.nlp
                )
            except PseudoError as exc:
                out[vid] = exc
                continue
            self.parts.write(vid, self.key(vid), [q.to_json() for q in qs])
            out[vid] = None
        return out


def run_captions(
    proposals: str | Path,
    out: str | Path,
    cfg: LabelsConfig,
    features: FeatureSource | None = None,
    vids: Sequence[str] | None = None,
    shard: tuple[int, int] | None = None,
    engine: Engine | None = None,
    on_start: Callable[[int], None] | None = None,
    on_video: Callable[[str], None] | None = None,
) -> tuple[RunSummary, list[Query]]:
    """Pseudo-queries for every video of ``proposals`` (or ``vids``); the output (and the returned
    list) holds them all once every video is done."""
    by_video = read_proposals(proposals)
    out = check_writable(out, "file")
    todo = [v for v in (vids or sorted(by_video)) if v in by_video]
    if not todo:
        raise PseudoError(f"{proposals}: no proposals for the requested videos")
    source = build_caption_source(cfg.captioner)
    encoder = None
    if cfg.queries.selection == "contrastive":
        enc_cfg = text_encoder_of(features)
        if enc_cfg is None:
            raise PseudoError(
                "contrastive caption selection needs --features-dir pointing at a pseudo feature store "
                "(its encoder embeds the captions); or set queries.selection: centre"
            )
        encoder = TextMemo(enc_cfg)
    parts = PartFiles(out)
    task = PseudoQueriesTask(by_video, cfg, source, features, encoder, parts, Path(proposals))
    summary = run_per_video(task, todo, shard=shard, on_start=on_start, on_video=on_video, engine=engine)
    keys = {v: task.key(v) for v in todo}
    queries: list[Query] = []
    if not parts.missing(todo, keys):
        meta = {"stage": "captions", "proposals": str(proposals), **cfg.model_dump(mode="json")}
        parts.merge(
            [v for v in todo if parts.failure(v, keys[v]) is None], dump_yaml({"code_version": code_version(), **meta})
        )
        queries = load_qvh_jsonl([out])
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
    enc_cfg = text_encoder_of(features)
    if enc_cfg is None:
        raise PseudoError("weak labels need --features-dir pointing at a pseudo feature store (for its text encoder)")
    encoder = build_backbone(enc_cfg)
    summary = RunSummary()
    labels: list[Query] = []
    for vid, sents in per_vid.items():
        if vid not in by_video:
            summary.failed[vid] = "no proposals"
            continue
        props = by_video[vid]
        h = features.content_hash(vid)
        check_same_features(props[0].features_hash, h, vid, proposals, getattr(features, "root", None), "proposals")
        labels.extend(assign_weak(sents, props, features.get(vid), encoder, outside_weight))
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

"""The localizer stages: train on labels, predict a benchmark split, and ask one video a question.

These read and write the files (labels JSONL, feature stores, proposals for event boundaries,
prediction JSONL); the model, its loop and its predictor (:class:`trainers.localizer.Localizer`)
only see records and arrays.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from proposals import ProposalConfig, generate_proposals
from pseudo.backbones import build_backbone
from pseudo.baselines.zero_shot import rank_proposals
from pseudo.data import load_dataset
from pseudo.data.benchmarks import load_qvh_jsonl
from pseudo.data.predictions import save_predictions
from pseudo.data.store import FeatureSource, SingleVideo, VideoFeatures, open_features
from pseudo.data.variants import load_variants
from pseudo.errors import PseudoError
from pseudo.io import atomic_write_jsonl, check_writable
from pseudo.records import Prediction, Query
from pseudo.settings import settings_hash, validate
from pseudo.stages.features import FeaturesConfig, caption_texts
from pseudo.stages.partfiles import PartFiles
from pseudo.stages.proposals import event_boundaries, proposals_for, read_proposals
from trainers.config import DecodeConfig, TrainConfig
from trainers.data import select_labels
from trainers.localizer import Localizer
from trainers.loop import TrainResult, train
from trainers.text_towers import TowerPool

Window = tuple[float, float, float]

#: queries per saved part of a prediction pass (one to two minutes of QVHighlights on a 2-core CPU)
PREDICT_PART_QUERIES = 1000


def predict_in_parts(
    localizer: Localizer,
    features: FeatureSource,
    queries: Sequence[Query],
    out: str | Path,
    events: Mapping[str, NDArray[np.float64]] | None = None,
    decode_cfg: DecodeConfig | None = None,
    top_k: int | None = None,
    variants: Mapping[str, Sequence[str]] | None = None,
    part_size: int = PREDICT_PART_QUERIES,
    on_start: Callable[[int], None] | None = None,
    on_query: Callable[[str], None] | None = None,
    log: Callable[[str], None] | None = None,
    step_texts: Callable[[str], Sequence[str]] | None = None,
) -> list[Prediction]:
    """:meth:`Localizer.predict` over ``queries`` in parts of ``part_size``, each saved as it finishes
    (:class:`pseudo.stages.partfiles.PartFiles` of ``out``), so a pass that was stopped goes on where it
    stopped: a part is reused when its key (the localizer's weights and settings, the decoding, and each
    of its queries with its phrasings, video features and event boundaries) is the one it would be made
    with now. Parts always run in the same order and size, so a resumed pass gives exactly what an
    unbroken one gives. The caller writes ``out``, then clears the parts (:meth:`PartFiles.clear`)."""
    dc = decode_cfg or localizer.config.decode
    base = settings_hash(localizer.digest(), dc, top_k or localizer.config.optim.top_k)
    parts = PartFiles(out)
    extra = variants or {}
    content = {vid: features.content_hash(vid) for vid in dict.fromkeys(q.vid for q in queries)}
    reused = 0
    if on_start is not None:
        on_start(len(queries))
    preds: list[Prediction] = []
    for n, lo in enumerate(range(0, len(queries), part_size)):
        chunk = queries[lo : lo + part_size]
        name = f"queries-{n:05d}"
        key = settings_hash(
            base,
            [
                [q.qid, q.vid, q.duration, q.query, list(extra.get(str(q.qid), ())), content[q.vid],
                 None if events is None or q.vid not in events else np.asarray(events[q.vid]).tolist()]
                for q in chunk
            ],
        )  # fmt: skip
        if parts.current(name, key):
            done = [Prediction.from_json(r) for r in parts.read(name)]
            reused += len(done)
            for q in chunk:
                if on_query is not None:
                    on_query(str(q.qid))
        else:
            done = localizer.predict(
                features,
                chunk,
                events=events,
                top_k=top_k,
                decode_cfg=dc,
                variants=extra,
                on_query=on_query,
                step_texts=step_texts,
            )
            parts.write(name, key, [p.to_json() for p in done])
        preds.extend(done)
    if reused and log is not None:
        log(f"predict: {reused} of {len(queries)} queries read from the parts an earlier pass saved ({parts.root})")
    return preds


def load_events(proposals: str | Path) -> dict[str, NDArray[np.float64]]:
    """Event boundaries per video (its proposals' starts and ends) from a proposals JSONL."""
    return event_boundaries(read_proposals(proposals))


def train_localizer(
    cfg: TrainConfig,
    label_files: Sequence[str | Path],
    features: str | Path,
    run_dir: str | Path,
    resume: bool = False,
    clip_seconds: float = 1.0,
    evaluate: Callable[[Localizer], dict[str, float]] | None = None,
    on_log: Callable[[dict[str, Any]], None] | None = None,
    stop_after_steps: int | None = None,
    select: bool = True,
    towers: TowerPool | None = None,
) -> TrainResult:
    """Train on the labels in ``label_files`` over the features at ``features`` into ``run_dir`` (the
    frozen text tower from ``towers`` when given: :class:`trainers.text_towers.TowerPool`)."""
    labels = load_qvh_jsonl([Path(p) for p in label_files])
    source = open_features(features, clip_seconds=clip_seconds)
    return train(
        cfg,
        labels,
        source,
        run_dir,
        resume=resume,
        stop_after_steps=stop_after_steps,
        on_log=on_log,
        evaluate=evaluate,
        labels_name=", ".join(str(p) for p in label_files),
        features_name=str(features),
        select=select,
        towers=towers,
    )


def relabel(
    localizer: Localizer,
    label_files: Sequence[str | Path],
    features: str | Path,
    out: str | Path,
    events: Mapping[str, NDArray[np.float64]] | None = None,
    max_windows: int = 1,
    ratio: float = 0.9,
    clip_seconds: float = 1.0,
    select: bool = True,
    on_start: Callable[[int], None] | None = None,
    on_query: Callable[[str], None] | None = None,
    log: Callable[[str], None] | None = None,
) -> list[Query]:
    """Self-training: the labels the localizer learned from (selected by its own data settings when
    ``select``), each given the windows the localizer now finds for its query on its video: the best,
    and up to ``max_windows - 1`` more scoring at least ``ratio`` times the best, decoded with the
    localizer's own settings (:meth:`Localizer.with_decode` gives other ones). Written as JSONL.
    ``on_start``/``on_query`` report progress (:meth:`Localizer.predict`). A stopped pass resumes
    (:func:`predict_in_parts`; ``log`` says how much it read back)."""
    out = check_writable(out, "file")
    labels = load_qvh_jsonl([Path(p) for p in label_files])
    data = localizer.config.data
    if select:
        labels = select_labels(labels, data.max_label_seconds, data.labels_per_video, data.min_label_seconds)
    source = open_features(features, clip_seconds=clip_seconds)
    preds = predict_in_parts(
        localizer, source, labels, out, events, top_k=max_windows, on_start=on_start, on_query=on_query, log=log
    )
    new: list[Query] = []
    for q, p in zip(labels, preds, strict=True):
        if not p.windows:
            continue
        best = p.windows[0][2]
        kept = [w for i, w in enumerate(p.windows[:max_windows]) if i == 0 or w[2] >= ratio * best]
        meta = {
            **q.meta,
            "self_training": {"windows_before": [list(w) for w in q.windows], "scores": [w[2] for w in kept]},
        }
        new.append(Query(q.qid, q.vid, q.duration, q.query, tuple((w[0], w[1]) for w in kept), q.source, meta))
    atomic_write_jsonl(out, (q.to_json() for q in new))
    PartFiles(out).clear()
    return new


def split_queries(
    dataset: str,
    split: str,
    source: FeatureSource,
    gt_files: Sequence[str | Path] | None = None,
    data_root: str | Path | None = None,
    limit: int | None = None,
) -> list[Query]:
    """The split's queries whose video has features (the first ``limit`` when given)."""
    queries = load_dataset(dataset, split, files=gt_files, data_root=data_root)
    have = set(source.vids())
    kept = [q for q in queries if q.vid in have]
    if not kept:
        raise PseudoError(f"none of the {len(queries)} {dataset} {split} videos has features in the feature source")
    return kept[:limit] if limit else kept


def predict_split(
    localizer: Localizer,
    dataset: str,
    split: str,
    features: FeatureSource,
    out: str | Path,
    events: Mapping[str, NDArray[np.float64]] | None = None,
    gt_files: Sequence[str | Path] | None = None,
    data_root: str | Path | None = None,
    decode_overrides: Mapping[str, Any] | None = None,
    limit: int | None = None,
    variants: str | Path | None = None,
    on_start: Callable[[int], None] | None = None,
    on_query: Callable[[str], None] | None = None,
    log: Callable[[str], None] | None = None,
) -> list[Prediction]:
    """Predictions for every query of a split whose video has features, written as JSONL.

    ``decode_overrides`` (``{"snap_to_steps": False}``) replace keys of the run's decode settings (they
    need no retraining); ``events`` (event boundaries per video) are what ``event_snap_seconds`` snaps to;
    ``variants`` is a query-variants JSONL (:mod:`pseudo.data.variants`) whose phrasings are fused in;
    ``on_start``/``on_query`` report progress (:meth:`Localizer.predict`). A stopped pass resumes
    (:func:`predict_in_parts`; ``log`` says how much it read back). Caption-track features bring their
    captions (``decode.caption_feedback``)."""
    out = check_writable(out, "file")
    dc = validate(
        DecodeConfig, {**localizer.config.decode.model_dump(), **(decode_overrides or {})}, "decode overrides"
    )
    if dc.event_snap_seconds and events is None:
        raise PseudoError(
            f"decode.event_snap_seconds is {dc.event_snap_seconds:g} but no proposals of the {dataset} {split} videos "
            "were given: pass their proposals JSONL (`pseudo predict --proposals FILE`), or set "
            "decode.event_snap_seconds to 0 (`--event-snap-seconds 0`)"
        )
    queries = split_queries(dataset, split, features, gt_files, data_root, limit)
    extra = load_variants(variants, queries) if variants is not None else None
    preds = predict_in_parts(
        localizer,
        features,
        queries,
        out,
        events,
        dc,
        variants=extra,
        on_start=on_start,
        on_query=on_query,
        log=log,
        step_texts=caption_texts(features),
    )
    save_predictions(out, preds)
    PartFiles(out).clear()
    return preds


def run_video_features(localizer: Localizer) -> FeaturesConfig:
    """The frame-feature settings a run was trained with; an error when it was not trained on video
    frames (caption-track or foreign array features cannot be made from a video file)."""
    recorded = localizer.features
    if recorded.get("kind") != "video":
        what = {
            "captions": "caption-track features (captions embedded as text)",
            "arrays": "feature arrays made elsewhere",
        }
        raise PseudoError(
            f"{localizer.run_dir} was trained on {what.get(str(recorded.get('kind')), recorded.get('kind'))}, which "
            "cannot be computed from a video file; use `pseudo predict` with such features, or a run trained on frames"
        )
    return FeaturesConfig.model_validate(recorded["settings"])


def video_features(video: str | Path, cfg: FeaturesConfig) -> VideoFeatures:
    from pseudo.video import sample_frames

    sampled = sample_frames(video, cfg.sampling)
    return VideoFeatures(
        Path(video).stem,
        build_backbone(cfg.backbone).encode_images(sampled.frames),
        sampled.timestamps,
        sampled.info.duration,
        content_hash=f"video:{Path(video).name}",
        truncated=sampled.truncated,
        decoded_end=sampled.decoded_end,
    )


def localize(
    video: str | Path,
    query: str,
    run: str | Path | Localizer | None = None,
    features_cfg: FeaturesConfig | None = None,
    top_k: int = 5,
    proposals_cfg: ProposalConfig | None = None,
    variants: Sequence[str] = (),
) -> list[Window]:
    """Top windows (start, end, score) in seconds for ``query`` in ``video``.

    With ``run`` (a localizer, or a run directory that is checked and loaded first) the frames are
    embedded with the backbone and sampling the run was trained with (``features_cfg`` is ignored),
    and decoded with its localizer's settings
    (:func:`pseudo.pipeline.load_run` gives a work directory's with its recipe's decoding); without it,
    ``features_cfg`` (default: CLIP ViT-B/32) embeds frames and query for zero-shot ranking of the
    video's proposals."""
    if run is None:
        cfg = features_cfg or FeaturesConfig()
        feats = video_features(video, cfg)
        _, props = proposals_for(feats, proposals_cfg or ProposalConfig())
        q = Query("q", feats.vid, feats.duration, query, ())
        enc = build_backbone(cfg.backbone)
        (pred,) = rank_proposals(
            [q], {feats.vid: props}, SingleVideo(feats), enc, top_k=top_k, variants={"q": list(variants)}
        )
        return list(pred.windows)
    localizer = run if isinstance(run, Localizer) else Localizer.from_run(run)
    feats = video_features(video, run_video_features(localizer))
    events = None
    if localizer.config.decode.event_snap_seconds:  # this video's own event boundaries
        found = generate_proposals(feats.features, feats.duration, proposals_cfg or ProposalConfig(), feats.timestamps)
        events = np.unique(np.array([t for p in found.proposals for t in (p.start, p.end)], dtype=np.float64))
    (pred,) = localizer.predict(feats, [query], events=events, top_k=top_k, variants={"q0": list(variants)})
    return list(pred.windows)

"""Commands that run one stage, for people who run stages by hand: ``features``, ``proposals``,
``captions``, ``weak``, ``show``. ``pseudo train RECIPE`` runs them all (see :mod:`pseudo.pipeline`).

``--config FILE`` takes the stage's own sections from any YAML that has them (a recipe works);
flags override it. ``--shard I/N`` takes every video whose id hashes to I of N, so N processes (a
SLURM array) cover a corpus exactly once, writing to the same outputs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from pseudo.cli.app import (
    BackboneOpt,
    BatchOpt,
    ConfigOpt,
    DataRoot,
    DeviceOpt,
    FpsOpt,
    JsonFlag,
    MaxSideOpt,
    ModelOpt,
    NumFramesOpt,
    PrecisionOpt,
    PretrainedOpt,
    app,
    features_section,
    friendly,
    merge_section,
    overrides,
    print_summary,
    section_config,
    stage_sections,
)
from pseudo.console import stderr_console
from pseudo.errors import PseudoError
from pseudo.settings import ConfigError, deep_merge

ShardOpt = Annotated[
    str | None, typer.Option("--shard", help="I/N: only the videos whose id hashes to shard I of N (0-based).")
]

EngineOpt = Annotated[
    str | None,
    typer.Option(
        "--engine", help="local (this process; the default) or ray (a Ray Data pipeline; pip install 'pseudo[ray]')."
    ),
]
RayAddressOpt = Annotated[
    str | None,
    typer.Option("--ray-address", help="With --engine ray: auto or HOST:PORT of a running cluster (else a local one)."),
]
WorkersOpt = Annotated[
    int | None, typer.Option("--workers", min=1, help="With --engine ray: model actors (one copy of the models each).")
]
GpusOpt = Annotated[float | None, typer.Option("--gpus-per-worker", min=0, help="With --engine ray: GPUs per actor.")]


def engine_of(
    config: Path | None, name: str | None, address: str | None, workers: int | None, gpus: float | None
) -> Any:
    """The recipe's ``engine:`` section (with ``--config``), overridden by the flags."""
    from pseudo.stages.per_video import Engine

    section = stage_sections(config, "engine").get("engine", {})
    flags = {"name": name, "address": address, "workers": workers, "gpus_per_worker": gpus}
    section = deep_merge(section, {k: v for k, v in flags.items() if v is not None})
    if section.get("name", "local") != "ray" and any(v is not None for k, v in flags.items() if k != "name"):
        raise ConfigError("--ray-address, --workers and --gpus-per-worker need --engine ray")
    return section_config(Engine, "engine", section, config)


def parse_k(text: str) -> int | str:
    """``--k``: ``auto`` or a whole number of at least 1."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        k = int(text)
    except ValueError:
        k = 0
    if k < 1:
        raise ConfigError(f"--k must be 'auto' or a whole number of at least 1, got {text!r}")
    return k


@app.command("features")
@friendly
def features_cmd(
    out: Annotated[Path, typer.Option("--out", help="Feature store directory.")],
    video_dir: Annotated[Path | None, typer.Option("--video-dir", help="Folder of videos.")] = None,
    captions: Annotated[
        Path | None, typer.Option("--captions", help="Folder or zip of per-video caption files, instead of videos.")
    ] = None,
    clip_seconds: Annotated[float, typer.Option("--clip-seconds", help="Seconds per caption clip.")] = 2.0,
    encoder: Annotated[str, typer.Option("--encoder", help="Sentence encoder for --captions (HF id/dir).")] = "minilm",
    config: ConfigOpt = None,
    fps: FpsOpt = None,
    num_frames: NumFramesOpt = None,
    max_side: MaxSideOpt = None,
    backbone: BackboneOpt = None,
    model: ModelOpt = None,
    pretrained: PretrainedOpt = None,
    device: DeviceOpt = None,
    precision: PrecisionOpt = None,
    batch_size: BatchOpt = None,
    rebuild: Annotated[bool, typer.Option("--rebuild", help="Replace a store made with other settings.")] = False,
    retry_failed: Annotated[
        bool, typer.Option("--retry-failed", help="Try again the videos that failed in an earlier run.")
    ] = False,
    shard: ShardOpt = None,
    engine: EngineOpt = None,
    ray_address: RayAddressOpt = None,
    workers: WorkersOpt = None,
    gpus_per_worker: GpusOpt = None,
    as_json: JsonFlag = False,
) -> None:
    """Embed sampled video frames (or external captions) into a feature store (cached, resumable)."""
    from pseudo.backbones import BackboneConfig
    from pseudo.progress import progress_bar
    from pseudo.recipe import FeaturesSection
    from pseudo.stages.features import build_caption_features, build_features, caption_features_config
    from pseudo.stages.per_video import parse_shard

    if (video_dir is None) == (captions is None):
        raise ConfigError("give exactly one of --video-dir or --captions")
    part = parse_shard(shard)
    eng = engine_of(config, engine, ray_address, workers, gpus_per_worker)
    if captions is not None:
        enc = BackboneConfig.model_validate(
            {"name": "sentence", "model": encoder, "batch_size": batch_size or 256, "device": device or "auto"}
        )
        ccfg = caption_features_config(captions, clip_seconds, enc)
        with progress_bar("caption features") as bar:
            summary = build_caption_features(
                ccfg, out, rebuild=rebuild, shard=part, on_start=bar.start, on_video=bar.advance, engine=eng
            )
        print_summary("features", summary, as_json, {"store": str(out), "settings_hash": ccfg.settings_hash()})
        return
    assert video_dir is not None
    section = deep_merge(
        stage_sections(config, "features").get("features", {}),
        features_section(fps, num_frames, max_side, backbone, model, pretrained, device, precision, batch_size),
    )
    cfg = section_config(FeaturesSection, "features", section, config).for_videos()
    with progress_bar("features") as bar:
        summary = build_features(
            video_dir,
            out,
            cfg,
            rebuild=rebuild,
            shard=part,
            retry_failed=retry_failed,
            on_start=bar.start,
            on_video=bar.advance,
            engine=eng,
        )
    print_summary("features", summary, as_json, {"store": str(out), "settings_hash": cfg.settings_hash()})


@app.command("proposals")
@friendly
def proposals_cmd(
    video_dir: Annotated[
        Path | None, typer.Option("--video-dir", help="Folder of videos (features made if missing).")
    ] = None,
    features_dir: Annotated[
        Path | None, typer.Option("--features-dir", help="A feature store, or a folder of per-video .npy/.npz arrays.")
    ] = None,
    out: Annotated[Path, typer.Option("--out", help="Proposals JSONL to write.")] = Path("proposals.jsonl"),
    config: ConfigOpt = None,
    steps: Annotated[int | None, typer.Option("--steps", help="Resample to this many steps (0 = keep).")] = None,
    k: Annotated[str | None, typer.Option("--k", help="k-means clusters, or 'auto'.")] = None,
    similarity: Annotated[str | None, typer.Option("--similarity", help="cosine or euclidean_softmax.")] = None,
    composer: Annotated[str | None, typer.Option("--composer", help="random, compactness or diversity.")] = None,
    num_proposals: Annotated[int | None, typer.Option("--num-proposals", help="Proposals per video.")] = None,
    min_event_steps: Annotated[int | None, typer.Option("--min-event-steps", help="Merge shorter events.")] = None,
    seed: Annotated[int | None, typer.Option("--seed")] = None,
    clip_seconds: Annotated[
        float, typer.Option("--clip-seconds", help="Seconds per row of foreign .npy/.npz features.")
    ] = 1.0,
    fps: FpsOpt = None,
    num_frames: NumFramesOpt = None,
    max_side: MaxSideOpt = None,
    backbone: BackboneOpt = None,
    model: ModelOpt = None,
    pretrained: PretrainedOpt = None,
    device: DeviceOpt = None,
    precision: PrecisionOpt = None,
    batch_size: BatchOpt = None,
    shard: ShardOpt = None,
    engine: EngineOpt = None,
    ray_address: RayAddressOpt = None,
    workers: WorkersOpt = None,
    gpus_per_worker: GpusOpt = None,
    as_json: JsonFlag = False,
) -> None:
    """Self-similarity k-means event proposals (PSVL) for every video; extracts features first if needed."""
    from proposals import ProposalConfig
    from pseudo.data.store import open_features
    from pseudo.io import check_writable
    from pseudo.progress import progress_bar
    from pseudo.recipe import FeaturesSection
    from pseudo.stages.features import build_features
    from pseudo.stages.per_video import parse_shard
    from pseudo.stages.proposals import run_proposals

    if (video_dir is None) == (features_dir is None):
        raise ConfigError("give exactly one of --video-dir or --features-dir")
    part = parse_shard(shard)
    eng = engine_of(config, engine, ray_address, workers, gpus_per_worker)
    prop = overrides(
        similarity=similarity,
        composer=composer,
        num_proposals=num_proposals,
        min_event_steps=min_event_steps,
        seed=seed,
    )
    if steps is not None:
        prop["resample_steps"] = steps or None
    if k is not None:
        prop["num_clusters"] = parse_k(k)
    sections = stage_sections(config, "features", "proposals")
    pcfg = section_config(ProposalConfig, "proposals", deep_merge(sections.get("proposals", {}), prop), config)
    check_writable(out, "file")
    provenance: dict[str, Any] = {}
    if video_dir is not None:
        fsec = deep_merge(
            sections.get("features", {}),
            features_section(fps, num_frames, max_side, backbone, model, pretrained, device, precision, batch_size),
        )
        fcfg = section_config(FeaturesSection, "features", fsec, config).for_videos()
        features_dir = out.parent / f"{out.stem}_features"
        with progress_bar("features") as bar:
            fsum = build_features(
                video_dir, features_dir, fcfg, shard=part, on_start=bar.start, on_video=bar.advance, engine=eng
            )
        print_summary("features", fsum, False)
        provenance["features"] = fcfg.model_dump(mode="json")
    assert features_dir is not None
    source = open_features(features_dir, clip_seconds=clip_seconds)
    provenance["features_dir"] = str(features_dir)
    with progress_bar("proposals") as bar:
        summary = run_proposals(
            source, pcfg, out, provenance=provenance, shard=part, on_start=bar.start, on_video=bar.advance, engine=eng
        )
    print_summary("proposals", summary, as_json, {"out": str(out), "features_dir": str(features_dir)})


@app.command("captions")
@friendly
def captions_cmd(
    proposals: Annotated[Path, typer.Option("--proposals", help="Proposals JSONL from `pseudo proposals`.")],
    out: Annotated[Path, typer.Option("--out", help="Pseudo-annotation JSONL to write.")] = Path("pseudo_train.jsonl"),
    features_dir: Annotated[
        Path | None, typer.Option("--features-dir", help="The feature store the proposals came from.")
    ] = None,
    captioner: Annotated[str | None, typer.Option("--captioner", help="external or blip.")] = None,
    captions: Annotated[Path | None, typer.Option("--captions", help="Folder/zip of captions (external).")] = None,
    clip_seconds: Annotated[float | None, typer.Option("--clip-seconds", help="Seconds per caption clip.")] = None,
    video_dir: Annotated[Path | None, typer.Option("--video-dir", help="Videos to caption (blip).")] = None,
    blip_model: Annotated[str | None, typer.Option("--blip-model", help="BLIP HF id or local directory.")] = None,
    cache: Annotated[Path | None, typer.Option("--cache", help="Frame-caption cache directory (blip).")] = None,
    query_type: Annotated[str | None, typer.Option("--query-type", help="natural or simple (nouns+verbs).")] = None,
    selection: Annotated[str | None, typer.Option("--selection", help="contrastive or centre.")] = None,
    frames: Annotated[
        str | None, typer.Option("--frames", help="Frames captioned per proposal: even or centre.")
    ] = None,
    num_frames: Annotated[int | None, typer.Option("--num-frames", help="Frames per proposal (even).")] = None,
    join_long: Annotated[
        bool | None, typer.Option("--join-long/--no-join-long", help="Join captions of long ones.")
    ] = None,
    compare: Annotated[
        str | None, typer.Option("--compare", help="DATASET:SPLIT whose real annotations the summary shows beside.")
    ] = None,
    config: ConfigOpt = None,
    data_root: DataRoot = None,
    shard: ShardOpt = None,
    engine: EngineOpt = None,
    ray_address: RayAddressOpt = None,
    workers: WorkersOpt = None,
    gpus_per_worker: GpusOpt = None,
    as_json: JsonFlag = False,
) -> None:
    """Caption proposals and write pseudo-queries as QVHighlights-style JSONL (source: pseudo)."""
    from pseudo.data import load_dataset
    from pseudo.data.store import open_features
    from pseudo.progress import progress_bar
    from pseudo.stages.labels import LabelsConfig, label_stats, run_captions
    from pseudo.stages.per_video import parse_shard

    part = parse_shard(shard)
    eng = engine_of(config, engine, ray_address, workers, gpus_per_worker)
    section = dict(stage_sections(config, "labels").get("labels", {}))
    section = {k: v for k, v in section.items() if k in ("captioner", "queries")}
    blip = {"model": blip_model} if blip_model else {}
    merge_section(
        section,
        "captioner",
        overrides(
            name=captioner,
            captions=str(captions) if captions else None,
            clip_seconds=clip_seconds,
            video_dir=str(video_dir) if video_dir else None,
            cache=str(cache) if cache else None,
            blip=blip or None,
        ),
    )
    merge_section(
        section,
        "queries",
        overrides(
            query_type=query_type, selection=selection, frames=frames, num_frames=num_frames, join_long=join_long
        ),
    )
    cfg = section_config(LabelsConfig, "labels", section, config)
    reference = None
    if compare:  # loaded first, so a bad name fails before any work
        name, _, split = compare.partition(":")
        reference = load_dataset(name, split or "train", data_root=data_root)
    features = open_features(features_dir) if features_dir is not None else None
    with progress_bar("captions") as bar:
        summary, queries = run_captions(
            proposals, out, cfg, features, shard=part, on_start=bar.start, on_video=bar.advance, engine=eng
        )
    stats = label_stats(queries, reference)
    if queries:
        _print_stats(stats)
    print_summary("captions", summary, as_json, {"out": str(out), "stats": stats})


def _print_stats(stats: dict[str, Any]) -> None:
    con = stderr_console()
    con.print(
        f"{stats['queries']} pseudo-queries over {stats['videos']} videos; mean {stats['mean_query_words']} words, "
        f"mean moment {stats['mean_moment_seconds']} s; {stats['queries_shared_across_videos_pct']}% of queries "
        "also appear for another video"
    )
    ref = stats.get("reference", {})
    for key, title in (("query_words_hist", "query length (words)"), ("moment_seconds_hist", "moment length (s)")):
        con.print(f"{title:>22}: " + "  ".join(f"{k}: {v}%" for k, v in stats[key].items()))
        if ref:
            con.print(f"{'real split':>22}: " + "  ".join(f"{k}: {v}%" for k, v in ref[key].items()))


@app.command("weak")
@friendly
def weak_cmd(
    proposals: Annotated[Path, typer.Option("--proposals", help="Proposals JSONL from `pseudo proposals`.")],
    features_dir: Annotated[Path, typer.Option("--features-dir", help="The feature store the proposals came from.")],
    out: Annotated[Path, typer.Option("--out", help="Weak-label JSONL to write.")] = Path("weak_train.jsonl"),
    dataset: Annotated[str | None, typer.Option("--dataset", help="Take sentences from this benchmark split.")] = None,
    split: Annotated[str, typer.Option("--split", help="Split of --dataset.")] = "train",
    sentences: Annotated[
        Path | None, typer.Option("--sentences", help="QVHighlights-style JSONL of sentences (windows ignored).")
    ] = None,
    data_root: DataRoot = None,
    as_json: JsonFlag = False,
) -> None:
    """Assign real sentences without timestamps to their best-matching proposal (weak supervision)."""
    from pseudo.data import load_dataset
    from pseudo.data.benchmarks import load_qvh_jsonl
    from pseudo.data.store import open_features
    from pseudo.stages.labels import run_weak

    if (dataset is None) == (sentences is None):
        raise ConfigError("give exactly one of --dataset (with --split) or --sentences")
    sents = load_dataset(dataset, split, data_root=data_root) if dataset else load_qvh_jsonl([sentences])  # type: ignore[list-item]
    summary, labels = run_weak(sents, proposals, open_features(features_dir), out)
    conf = [q.meta["confidence"] for q in labels]
    mean_conf = round(sum(conf) / len(conf), 4) if conf else 0.0
    stderr_console().print(f"{len(labels)} weak labels, mean confidence {mean_conf}")
    print_summary("weak", summary, as_json, {"out": str(out), "labels": len(labels), "mean_confidence": mean_conf})


@app.command("show")
@friendly
def show_cmd(
    video: Annotated[str, typer.Argument(help="A video file, or a video id in --features-dir.")],
    out: Annotated[Path | None, typer.Option("--out", help="PNG to write (default <video>.png).")] = None,
    features_dir: Annotated[Path | None, typer.Option("--features-dir", help="Feature store or array folder.")] = None,
    config: ConfigOpt = None,
    queries: Annotated[
        list[Path] | None, typer.Option("--queries", help="Pseudo-label or GT JSONL to overlay (relevant_windows).")
    ] = None,
    predictions: Annotated[
        list[Path] | None, typer.Option("--predictions", help="Prediction JSONL to overlay (top window per query).")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite the output PNG if it exists.")] = False,
    clip_seconds: Annotated[float, typer.Option("--clip-seconds", help="Seconds per row of foreign arrays.")] = 1.0,
    model: ModelOpt = None,
    backbone: BackboneOpt = None,
    fps: FpsOpt = None,
) -> None:
    """Write a PNG: self-similarity matrix, atomic events, proposals, and optional overlays."""
    from proposals import ProposalConfig
    from pseudo.data.store import open_features
    from pseudo.io import check_writable
    from pseudo.recipe import FeaturesSection
    from pseudo.stages.localize import video_features
    from pseudo.stages.proposals import proposals_for
    from pseudo.viz import render_summary

    sections = stage_sections(config, "features", "proposals")
    fsec = deep_merge(
        sections.get("features", {}), features_section(fps, None, None, backbone, model, None, None, None, None)
    )
    fcfg = section_config(FeaturesSection, "features", fsec, config).for_videos()
    pcfg = section_config(ProposalConfig, "proposals", sections.get("proposals", {}), config)
    if features_dir is not None:
        feats = open_features(features_dir, clip_seconds=clip_seconds).get(video)
    else:
        if not Path(video).is_file():
            raise PseudoError(f"{video} is not a video file; give a file, or an id with --features-dir")
        feats = video_features(video, fcfg)
    target = out or Path(f"{feats.vid}.png")
    if target.exists() and not force:
        raise PseudoError(f"{target} exists; pass --out to choose another file, or --force to overwrite it")
    check_writable(target, "file")
    result, _ = proposals_for(feats, pcfg)
    overlays = _overlays(feats.vid, queries or [], predictions or [])
    png = render_summary(feats.vid, feats.duration, result, target, overlays)
    stderr_console().print(f"wrote {png}")


def _overlays(vid: str, queries: list[Path], predictions: list[Path]) -> dict[str, list[tuple[float, float, str]]]:
    from pseudo.data.benchmarks import load_qvh_jsonl
    from pseudo.data.predictions import load_predictions

    out: dict[str, list[tuple[float, float, str]]] = {}
    for f in queries:
        for q in load_qvh_jsonl([f]):
            if q.vid == vid:
                name = "pseudo" if q.source != "gt" else "gt"
                out.setdefault(name, []).extend((s, e, q.query) for s, e in q.windows)
    for f in predictions:
        for p in load_predictions(f):
            if p.vid == vid and p.windows:
                out.setdefault("pred", []).append((p.windows[0][0], p.windows[0][1], p.query))
    return out

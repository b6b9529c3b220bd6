"""Commands of the proposal stage: ``features``, ``proposals``, ``show``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from pseudo.cli.app import (
    BackboneOpt,
    BatchOpt,
    ConfigOpt,
    DeviceOpt,
    FpsOpt,
    JsonFlag,
    MaxSideOpt,
    ModelOpt,
    NumFramesOpt,
    PrecisionOpt,
    PretrainedOpt,
    app,
    deep_update,
    features_section,
    friendly,
    merge_section,
    overrides,
    print_summary,
    yaml_dict,
)
from pseudo.console import stderr_console
from pseudo.errors import PseudoError
from pseudo.io import check_writable
from pseudo.settings import ConfigError


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
    as_json: JsonFlag = False,
) -> None:
    """Embed sampled video frames (or external captions) into a feature store (cached, resumable)."""
    from pseudo.features import FeaturesConfig, build_features
    from pseudo.progress import progress_bar
    from pseudo.settings import validate

    if (video_dir is None) == (captions is None):
        raise ConfigError("give exactly one of --video-dir or --captions")
    if captions is not None:
        from pseudo.backbones import BackboneConfig
        from pseudo.captions.features import build_caption_features, caption_features_config

        enc = BackboneConfig.model_validate(
            {"name": "sentence", "model": encoder, "batch_size": batch_size or 256, "device": device or "auto"}
        )
        ccfg = caption_features_config(captions, clip_seconds, enc)
        with progress_bar("caption features") as bar:
            summary = build_caption_features(ccfg, out, rebuild=rebuild, on_start=bar.start, on_video=bar.advance)
        print_summary("features", summary, as_json, {"store": str(out), "settings_hash": ccfg.settings_hash()})
        return
    assert video_dir is not None
    data = deep_update(
        yaml_dict(config),
        features_section(fps, num_frames, max_side, backbone, model, pretrained, device, precision, batch_size),
    )
    cfg = validate(FeaturesConfig, data, str(config or "options"))
    with progress_bar("features") as bar:
        summary = build_features(video_dir, out, cfg, rebuild=rebuild, on_start=bar.start, on_video=bar.advance)
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
    as_json: JsonFlag = False,
) -> None:
    """Self-similarity k-means event proposals (PSVL) for every video; extracts features first if needed."""
    from pseudo.features import build_features, open_features
    from pseudo.progress import progress_bar
    from pseudo.proposal_stage import ProposalRunConfig, run_proposals
    from pseudo.settings import validate

    if (video_dir is None) == (features_dir is None):
        raise ConfigError("give exactly one of --video-dir or --features-dir")
    prop = overrides(
        resample_steps=(steps or None) if steps is not None else None,
        similarity=similarity,
        composer=composer,
        num_proposals=num_proposals,
        min_event_steps=min_event_steps,
        seed=seed,
    )
    if steps == 0:
        prop["resample_steps"] = None
    if k is not None:
        prop["num_clusters"] = parse_k(k)
    data = yaml_dict(config)
    deep_update(
        data,
        {
            "features": features_section(
                fps, num_frames, max_side, backbone, model, pretrained, device, precision, batch_size
            )
        },
    )
    merge_section(data, "proposals", prop)
    cfg = validate(ProposalRunConfig, data, str(config or "options"))
    provenance: dict[str, Any] = {}
    if video_dir is not None:
        features_dir = out.parent / f"{out.stem}_features"
        with progress_bar("features") as bar:
            fsum = build_features(video_dir, features_dir, cfg.features, on_start=bar.start, on_video=bar.advance)
        print_summary("features", fsum, False)
        provenance["features"] = cfg.features.model_dump(mode="json")
    assert features_dir is not None
    source = open_features(features_dir, clip_seconds=clip_seconds)
    provenance["features_dir"] = str(features_dir)
    with progress_bar("proposals", total=len(source.vids())) as bar:
        summary = run_proposals(source, cfg.proposals, out, on_video=bar.advance, provenance=provenance)
    print_summary("proposals", summary, as_json, {"out": str(out), "features_dir": str(features_dir)})


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
    from pseudo.features import VideoFeatures, open_features
    from pseudo.proposal_stage import ProposalRunConfig, proposals_for
    from pseudo.settings import validate
    from pseudo.viz import render_summary

    data = yaml_dict(config)
    deep_update(data, {"features": features_section(fps, None, None, backbone, model, None, None, None, None)})
    cfg = validate(ProposalRunConfig, data, str(config or "options"))
    path = Path(video)
    if features_dir is not None:
        feats = open_features(features_dir, clip_seconds=clip_seconds).get(video)
    else:
        from pseudo.backbones import build_backbone
        from pseudo.video import sample_frames

        if not path.is_file():
            raise PseudoError(f"{video} is not a video file; give a file, or an id with --features-dir")
        sampled = sample_frames(path, cfg.features.sampling)
        emb = build_backbone(cfg.features.backbone).encode_images(sampled.frames)
        feats = VideoFeatures(path.stem, emb, sampled.timestamps, sampled.info.duration)
    target = out or Path(f"{feats.vid}.png")
    if target.exists() and not force:
        raise PseudoError(f"{target} exists; pass --out to choose another file, or --force to overwrite it")
    check_writable(target, "file")
    result, _ = proposals_for(feats, cfg.proposals)
    overlays = _overlays(feats.vid, queries or [], predictions or [])
    png = render_summary(feats.vid, feats.duration, result, target, overlays)
    stderr_console().print(f"wrote {png}")


def _overlays(vid: str, queries: list[Path], predictions: list[Path]) -> dict[str, list[tuple[float, float, str]]]:
    from pseudo.data.benchmarks import load_qvh_jsonl
    from pseudo.predictions import load_predictions

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

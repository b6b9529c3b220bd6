"""The ``pseudo`` command: a thin layer over the library; data on stdout, logs on stderr."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, ParamSpec

import typer

from pseudo.console import metrics_table, stderr_console
from pseudo.errors import PseudoError

app = typer.Typer(
    name="pseudo",
    help="Video moment retrieval without human timestamps.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")]
DataRoot = Annotated[
    Path | None,
    typer.Option("--data-root", help="Benchmark data directory (default: $PSEUDO_DATA_ROOT or ../shared/data)."),
]


P = ParamSpec("P")


def friendly(fn: Callable[P, None]) -> Callable[P, None]:
    """Show user errors (bad files, unknown names) as one line on stderr and exit 2."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> None:
        try:
            fn(*args, **kwargs)
        except PseudoError as exc:
            stderr_console().print(f"[red]error:[/] {exc}", soft_wrap=True)
            raise typer.Exit(2) from None

    return wrapper


def _emit_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2) + "\n")


def _report_eval(result: Any, as_json: bool) -> None:
    from pseudo.evaluate import EvalResult

    assert isinstance(result, EvalResult)
    con = stderr_console()
    for w in result.warnings:
        con.print(f"[yellow]warning:[/] {w}")
    title = f"{result.dataset} {result.split} ({result.n_queries} queries, {result.protocol} protocol)"
    con.print(metrics_table(title, {"predictions": result.metrics}))
    con.print(f"scored in {result.seconds:.2f}s")
    if as_json:
        _emit_json(result.to_json())


@app.command("eval")
@friendly
def eval_cmd(
    predictions: Annotated[Path, typer.Argument(help="QVHighlights-style prediction JSONL.")],
    dataset: Annotated[str, typer.Option("--dataset", "-d", help="Benchmark name (see `pseudo datasets`).")],
    split: Annotated[str, typer.Option("--split", "-s", help="Split name, e.g. test or val.")] = "test",
    gt: Annotated[
        list[Path] | None, typer.Option("--gt", help="Annotation file(s) to use instead of the dataset's defaults.")
    ] = None,
    protocol: Annotated[
        str | None, typer.Option("--protocol", help="Metric protocol: recall or qvhighlights (default per dataset).")
    ] = None,
    allow_missing: Annotated[
        bool, typer.Option("--allow-missing", help="Score queries without a prediction as misses instead of failing.")
    ] = False,
    data_root: DataRoot = None,
    as_json: JsonFlag = False,
) -> None:
    """Score PREDICTIONS on a benchmark split: R@k/mIoU, or the official QVHighlights metrics."""
    from pseudo.evaluate import evaluate

    result = evaluate(
        predictions, dataset, split, gt_files=gt, data_root=data_root, protocol=protocol, allow_missing=allow_missing
    )
    _report_eval(result, as_json)


@app.command("datasets")
@friendly
def datasets_cmd(
    count: Annotated[bool, typer.Option("--count", help="Load every split and count queries and videos.")] = False,
    data_root: DataRoot = None,
    as_json: JsonFlag = False,
) -> None:
    """List the registered benchmarks and their splits."""
    from pseudo.data import DATASETS, get_dataset, load_dataset

    rows: list[dict[str, Any]] = []
    for name in DATASETS.names():
        spec = get_dataset(name)
        for split in spec.splits:
            row: dict[str, Any] = {"dataset": name, "split": split, "description": spec.description}
            if count and spec.splits[split]:
                qs = load_dataset(name, split, data_root=data_root)
                row.update(queries=len(qs), videos=len({q.vid for q in qs}))
            rows.append(row)
    con = stderr_console()
    for r in rows:
        extra = f"  {r['queries']} queries, {r['videos']} videos" if "queries" in r else ""
        con.print(f"{r['dataset']:>13} {r['split']:<9}{extra}")
    if as_json:
        _emit_json(rows)


@app.command("demo")
@friendly
def demo_cmd(as_json: JsonFlag = False) -> None:
    """Score the bundled slice (150 QVHighlights val queries, Moment-DETR predictions)."""
    from pseudo.evaluate import evaluate

    demo = resources.files("pseudo") / "assets" / "demo"
    with resources.as_file(demo) as d:
        result = evaluate(
            d / "momentdetr_val_slice_preds.jsonl",
            "jsonl",
            "demo",
            gt_files=[d / "qvhighlights_val_slice.jsonl"],
            protocol="qvhighlights",
        )
    stderr_console().print("bundled demo: QVHighlights val (first 150 queries), Moment-DETR predictions")
    _report_eval(result, as_json)


def _summary(title: str, summary: Any, as_json: bool, extra: dict[str, Any] | None = None) -> None:
    con = stderr_console()
    con.print(
        f"{title}: {len(summary.done)} done, {len(summary.skipped)} skipped (cached), "
        f"{len(summary.failed)} failed in {summary.seconds:.1f}s"
    )
    for vid, err in summary.failed.items():
        con.print(f"[red]failed[/] {vid}: {err}", soft_wrap=True)
    if as_json:
        _emit_json({**summary.to_json(), **(extra or {})})


def _overrides(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def _merge(base: dict[str, Any], section: str, values: dict[str, Any]) -> None:
    if values:
        base.setdefault(section, {}).update(values)


ConfigOpt = Annotated[Path | None, typer.Option("--config", help="YAML with the stage settings; flags override it.")]
FpsOpt = Annotated[float | None, typer.Option("--fps", help="Frames sampled per second (default 1).")]
NumFramesOpt = Annotated[int | None, typer.Option("--num-frames", help="Sample this many frames per video instead.")]
MaxSideOpt = Annotated[int | None, typer.Option("--max-side", help="Resize while decoding to this longer side.")]
BackboneOpt = Annotated[str | None, typer.Option("--backbone", help="Backbone registry name: hf_clip, open_clip.")]
ModelOpt = Annotated[str | None, typer.Option("--model", help="HF id or local dir (hf_clip); model name (open_clip).")]
PretrainedOpt = Annotated[str | None, typer.Option("--pretrained", help="open_clip pretrained tag or checkpoint.")]
DeviceOpt = Annotated[str | None, typer.Option("--device", help="auto, cpu or cuda.")]
PrecisionOpt = Annotated[str | None, typer.Option("--precision", help="auto, fp32, fp16 or bf16.")]
BatchOpt = Annotated[int | None, typer.Option("--batch-size", help="Frames per forward pass.")]


def _features_section(
    fps: float | None,
    num_frames: int | None,
    max_side: int | None,
    backbone: str | None,
    model: str | None,
    pretrained: str | None,
    device: str | None,
    precision: str | None,
    batch_size: int | None,
) -> dict[str, Any]:
    section: dict[str, Any] = {}
    sampling = _overrides(fps=fps, num_frames=num_frames, max_side=max_side)
    if num_frames is not None and fps is None:
        sampling["fps"] = None
    _merge(section, "sampling", sampling)
    _merge(
        section,
        "backbone",
        _overrides(
            name=backbone, model=model, pretrained=pretrained, device=device, precision=precision, batch_size=batch_size
        ),
    )
    return section


def _deep_update(base: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    for k, v in new.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            _deep_update(base[k], v)
        else:
            base[k] = v
    return base


def _yaml_dict(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    from pseudo.settings import ConfigError, load_yaml_dict

    data = load_yaml_dict(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping")
    return data


@app.command("features")
@friendly
def features_cmd(
    video_dir: Annotated[Path, typer.Option("--video-dir", help="Folder of videos.")],
    out: Annotated[Path, typer.Option("--out", help="Feature store directory.")],
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
    """Sample frames of every video and embed them into a feature store (cached, resumable)."""
    from pseudo.features import FeaturesConfig, build_features
    from pseudo.progress import progress_bar
    from pseudo.settings import validate

    data = _deep_update(
        _yaml_dict(config),
        _features_section(fps, num_frames, max_side, backbone, model, pretrained, device, precision, batch_size),
    )
    cfg = validate(FeaturesConfig, data, str(config or "options"))
    with progress_bar("features") as bar:
        summary = build_features(video_dir, out, cfg, rebuild=rebuild, on_start=bar.start, on_video=bar.advance)
    _summary("features", summary, as_json, {"store": str(out), "settings_hash": cfg.settings_hash()})


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
    from pseudo.settings import ConfigError, validate

    if (video_dir is None) == (features_dir is None):
        raise ConfigError("give exactly one of --video-dir or --features-dir")
    prop = _overrides(
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
        prop["num_clusters"] = k if k == "auto" else int(k)
    data = _yaml_dict(config)
    _deep_update(
        data,
        {
            "features": _features_section(
                fps, num_frames, max_side, backbone, model, pretrained, device, precision, batch_size
            )
        },
    )
    _merge(data, "proposals", prop)
    cfg = validate(ProposalRunConfig, data, str(config or "options"))
    provenance: dict[str, Any] = {}
    if video_dir is not None:
        features_dir = out.parent / f"{out.stem}_features"
        with progress_bar("features") as bar:
            fsum = build_features(video_dir, features_dir, cfg.features, on_start=bar.start, on_video=bar.advance)
        _summary("features", fsum, False)
        provenance["features"] = cfg.features.model_dump(mode="json")
    assert features_dir is not None
    source = open_features(features_dir, clip_seconds=clip_seconds)
    provenance["features_dir"] = str(features_dir)
    with progress_bar("proposals", total=len(source.vids())) as bar:
        summary = run_proposals(source, cfg.proposals, out, on_video=bar.advance, provenance=provenance)
    _summary("proposals", summary, as_json, {"out": str(out), "features_dir": str(features_dir)})


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

    data = _yaml_dict(config)
    _deep_update(data, {"features": _features_section(fps, None, None, backbone, model, None, None, None, None)})
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
    result, _ = proposals_for(feats, cfg.proposals)
    overlays = _overlays(feats.vid, queries or [], predictions or [])
    png = render_summary(feats.vid, feats.duration, result, out or Path(f"{feats.vid}.png"), overlays)
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


def main() -> None:
    app()


if __name__ == "__main__":
    main()

"""Commands of the whole method and the localizer: ``train`` (every stage of a recipe), ``predict``,
``localize``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from pseudo.cli.app import (
    ConfigOpt,
    DataRoot,
    JsonFlag,
    ModelOpt,
    app,
    emit_json,
    friendly,
    section_config,
    stage_sections,
)
from pseudo.console import metrics_table, print_warning, stderr_console


@app.command("train")
@friendly
def train_cmd(
    recipe: Annotated[Path, typer.Argument(help="Recipe YAML, e.g. recipes/qvhighlights_captions_zs.yaml.")],
    until: Annotated[
        str | None,
        typer.Option("--until", help="Stop after this stage: features, proposals, labels, train, predict or eval."),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the plan (what is current, what is built).")
    ] = False,
    work_dir: Annotated[
        Path | None, typer.Option("--work-dir", help="Default: the recipe's work_dir, else runs/<name>.")
    ] = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Override a setting: dotted.key=value (YAML value); repeatable.")
    ] = None,
    device: Annotated[str | None, typer.Option("--device", help="Override device: auto, cpu or cuda.")] = None,
    epochs: Annotated[int | None, typer.Option("--epochs", help="Override optim.epochs.")] = None,
    data_root: DataRoot = None,
    as_json: JsonFlag = False,
) -> None:
    """Run a recipe's whole method: features -> proposals -> labels -> train -> predict -> eval.

    Each stage is keyed by the hash of its settings and inputs: a current one is skipped, a changed
    one is rebuilt (the log says which settings changed), and an interrupted training run resumes."""
    from pseudo.pipeline import Pipeline
    from pseudo.recipe import load_recipe, parse_override
    from trainers.loop import TrainingInterrupted

    overrides: dict[str, Any] = dict(parse_override(s) for s in set_ or [])
    if device:
        overrides["device"] = device
    if epochs:
        overrides["optim.epochs"] = epochs
    cfg = load_recipe(recipe, overrides)
    con = stderr_console()

    def log(rec: dict[str, Any]) -> None:
        con.print(
            f"step {rec['step']} epoch {rec['epoch']} loss {rec['loss']:.4f} lr {rec['lr']:.2e} "
            f"{rec['steps_per_s']:.2f} steps/s {rec['samples_per_s']:.1f} samples/s"
        )

    pipeline = Pipeline(cfg, work_dir, on_train_log=log, data_root=data_root)
    try:
        result = pipeline.run(until=until, dry_run=dry_run)
    except TrainingInterrupted as exc:
        print_warning(str(exc), con)
        raise typer.Exit(130) from None
    if result.run_dir is not None and not dry_run and (result.run_dir / "checkpoints").is_dir():
        con.print(f"run: {result.run_dir}")
    for name, metrics in result.metrics.items():
        con.print(metrics_table(f"{cfg.name}: {name.replace('_', ' ', 1)}", {cfg.name: metrics}))
    if as_json:
        emit_json(result.to_json())


@app.command("predict")
@friendly
def predict_cmd(
    run: Annotated[
        Path, typer.Option("--run", "--checkpoint", help="A trained run, or the work directory of `pseudo train`.")
    ],
    dataset: Annotated[str, typer.Option("--dataset", "-d")],
    features: Annotated[Path, typer.Option("--features", help="Features of the split's videos (store or arrays).")],
    split: Annotated[str, typer.Option("--split", "-s")] = "test",
    out: Annotated[Path, typer.Option("--out", help="Prediction JSONL (what `pseudo eval` reads).")] = Path(
        "preds.jsonl"
    ),
    gt: Annotated[list[Path] | None, typer.Option("--gt", help="Annotation files instead of the defaults.")] = None,
    device: Annotated[str, typer.Option("--device")] = "auto",
    data_root: DataRoot = None,
    proposals: Annotated[
        Path | None, typer.Option("--proposals", help="The split's proposals JSONL (event boundaries to snap to).")
    ] = None,
    snap_to_steps: Annotated[
        bool | None, typer.Option("--snap-to-steps/--no-snap-to-steps", help="Override decode.snap_to_steps.")
    ] = None,
    event_snap: Annotated[
        float | None, typer.Option("--event-snap-seconds", min=0, help="Override decode.event_snap_seconds.")
    ] = None,
    clip_seconds: Annotated[float, typer.Option("--clip-seconds", help="Seconds per row of foreign arrays.")] = 1.0,
    variants: Annotated[
        Path | None, typer.Option("--variants", help="Query variants JSONL ({qid, variants: [...]}) to fuse in.")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Write predictions for a benchmark split with a trained run."""
    from pseudo.data.store import open_features
    from pseudo.io import check_writable
    from pseudo.pipeline import load_run
    from pseudo.progress import progress_bar
    from pseudo.settings import ConfigError
    from pseudo.stages.localize import load_events, predict_split

    if device not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"--device must be auto, cpu or cuda, got {device!r}")
    check_writable(out, "file")  # before the model loads: a bad --out fails at once
    localizer = load_run(run, device, log=stderr_console().print)  # type: ignore[arg-type]
    overrides = {"snap_to_steps": snap_to_steps, "event_snap_seconds": event_snap}
    events = load_events(proposals) if proposals is not None else None
    with progress_bar(f"predict ({dataset} {split})") as bar:
        preds = predict_split(
            localizer,
            dataset,
            split,
            open_features(features, clip_seconds=clip_seconds),
            out,
            events=events,
            gt_files=gt,
            data_root=data_root,
            decode_overrides={k: v for k, v in overrides.items() if v is not None},
            variants=variants,
            on_start=bar.start,
            on_query=bar.advance,
            log=stderr_console().print,
        )
    stderr_console().print(f"wrote {len(preds)} predictions to {out}")
    if as_json:
        emit_json(
            {
                "out": str(out),
                "predictions": len(preds),
                "run": str(localizer.run_dir),
                "dataset": dataset,
                "split": split,
            }
        )


@app.command("localize")
@friendly
def localize_cmd(
    video: Annotated[Path, typer.Argument(help="A video file.")],
    query: Annotated[str, typer.Argument(help="What to find, in words.")],
    run: Annotated[
        Path | None, typer.Option("--run", "--checkpoint", help="A trained run or work directory (else zero-shot).")
    ] = None,
    config: ConfigOpt = None,
    model: ModelOpt = None,
    top_k: Annotated[int, typer.Option("--top-k")] = 5,
    variant: Annotated[
        list[str] | None, typer.Option("--variant", help="Another phrasing of the query (repeatable); fused in.")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Ask one video a question: prints the top windows (start, end, score) in seconds."""
    from pseudo.pipeline import load_run
    from pseudo.recipe import FeaturesSection
    from pseudo.stages.localize import localize

    localizer = load_run(run, log=stderr_console().print) if run is not None else None
    section = dict(stage_sections(config, "features").get("features", {}))
    if model:
        section.setdefault("backbone", {})["model"] = model
    cfg = section_config(FeaturesSection, "features", section, config).for_videos()
    windows = localize(video, query, localizer, cfg, top_k, variants=variant or ())
    run_dir = localizer.run_dir if localizer is not None else None
    con = stderr_console()
    con.print(f"{'zero-shot' if run_dir is None else run_dir}: {query!r} in {video.name}")
    for i, (s, e, sc) in enumerate(windows, 1):
        con.print(f"{i:>2}. {s:8.2f} - {e:8.2f} s  score {sc:.3f}")
    if as_json:
        emit_json(
            {
                "video": str(video),
                "query": query,
                "run": str(run_dir) if run_dir is not None else None,
                "windows": [{"start": s, "end": e, "score": sc} for s, e, sc in windows],
            }
        )

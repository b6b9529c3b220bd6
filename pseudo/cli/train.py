"""Commands of the localizer: ``train``, ``predict``, ``localize``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from pseudo.cli.app import ConfigOpt, DataRoot, JsonFlag, ModelOpt, app, emit_json, friendly, yaml_dict
from pseudo.console import metrics_table, print_warning, stderr_console


@app.command("train")
@friendly
def train_cmd(
    recipe: Annotated[Path, typer.Argument(help="Recipe YAML, e.g. recipes/tiny_cpu.yaml.")],
    run_dir: Annotated[Path | None, typer.Option("--run-dir", help="Default: <out_dir>/<name> of the recipe.")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from the run's last checkpoint.")] = False,
    features: Annotated[Path | None, typer.Option("--features", help="Override data.features.")] = None,
    train_files: Annotated[list[Path] | None, typer.Option("--train", help="Override data.train.")] = None,
    eval_features: Annotated[Path | None, typer.Option("--eval-features", help="Override data.eval_features.")] = None,
    device: Annotated[str | None, typer.Option("--device", help="Override device: auto, cpu or cuda.")] = None,
    epochs: Annotated[int | None, typer.Option("--epochs", help="Override optim.epochs.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Train the prompt-tuned localizer on pseudo-labels; evaluates on the recipe's benchmark."""
    from trainers.config import load_recipe
    from trainers.loop import TrainingInterrupted, train

    overrides: dict[str, Any] = {}
    if features:
        overrides["data.features"] = str(features)
    if train_files:
        overrides["data.train"] = [str(p) for p in train_files]
    if eval_features:
        overrides["data.eval_features"] = str(eval_features)
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

    try:
        result = train(cfg, run_dir, resume=resume, on_log=log)
    except TrainingInterrupted as exc:
        print_warning(str(exc).replace("RECIPE", str(recipe)), con)
        raise typer.Exit(130) from None
    con.print(f"run: {result.run_dir} ({result.steps} steps, {result.steps_per_s:.2f} steps/s)")
    if result.metrics:
        con.print(metrics_table(eval_title(cfg), {cfg.name: result.metrics}))
    if as_json:
        emit_json({k: v for k, v in result.__dict__.items() if k != "losses"})


def eval_title(cfg: Any) -> str:
    """``qvhighlights val``, or ``synthetic eval`` for the synthetic task (whose split has no name)."""
    if cfg.data.synthetic is not None:
        return "synthetic task, eval videos"
    if cfg.data.eval_dataset == "jsonl":
        return f"{', '.join(cfg.data.eval_gt or [])}"
    return f"{cfg.data.eval_dataset} {cfg.data.eval_split}"


@app.command("predict")
@friendly
def predict_cmd(
    run: Annotated[Path, typer.Option("--checkpoint", "--run", help="A run directory from `pseudo train`.")],
    dataset: Annotated[str, typer.Option("--dataset", "-d")],
    split: Annotated[str, typer.Option("--split", "-s")] = "test",
    out: Annotated[Path, typer.Option("--out", help="Prediction JSONL (what `pseudo eval` reads).")] = Path(
        "preds.jsonl"
    ),
    features: Annotated[Path | None, typer.Option("--features", help="Features of the split's videos.")] = None,
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
    as_json: JsonFlag = False,
) -> None:
    """Write predictions for a benchmark split with a trained run."""
    from trainers.run import predict_split

    overrides = {"snap_to_steps": snap_to_steps, "event_snap_seconds": event_snap}
    preds = predict_split(
        run,
        dataset,
        split,
        out,
        features,
        gt,
        device=device,
        data_root=data_root,
        proposals=proposals,
        decode_overrides={k: v for k, v in overrides.items() if v is not None},
    )
    stderr_console().print(f"wrote {len(preds)} predictions to {out}")
    if as_json:
        emit_json({"out": str(out), "predictions": len(preds), "run": str(run), "dataset": dataset, "split": split})


@app.command("localize")
@friendly
def localize_cmd(
    video: Annotated[Path, typer.Argument(help="A video file.")],
    query: Annotated[str, typer.Argument(help="What to find, in words.")],
    run: Annotated[Path | None, typer.Option("--checkpoint", "--run", help="A trained run (else zero-shot).")] = None,
    config: ConfigOpt = None,
    model: ModelOpt = None,
    top_k: Annotated[int, typer.Option("--top-k")] = 5,
    as_json: JsonFlag = False,
) -> None:
    """Ask one video a question: prints the top windows (start, end, score) in seconds."""
    from pseudo.features import FeaturesConfig
    from pseudo.localize import localize
    from pseudo.settings import validate

    data = yaml_dict(config).get("features", {})
    if model:
        data.setdefault("backbone", {})["model"] = model
    cfg = validate(FeaturesConfig, data, str(config or "options"))
    windows = localize(video, query, run, cfg, top_k)
    con = stderr_console()
    con.print(f"{'zero-shot' if run is None else run}: {query!r} in {video.name}")
    for i, (s, e, sc) in enumerate(windows, 1):
        con.print(f"{i:>2}. {s:8.2f} - {e:8.2f} s  score {sc:.3f}")
    if as_json:
        emit_json(
            {
                "video": str(video),
                "query": query,
                "run": str(run) if run is not None else None,
                "windows": [{"start": s, "end": e, "score": sc} for s, e, sc in windows],
            }
        )

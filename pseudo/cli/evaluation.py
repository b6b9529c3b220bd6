"""Commands that score predictions: ``eval``, ``datasets``, ``demo``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from pseudo.cli.app import DataRoot, JsonFlag, app, emit_json, friendly
from pseudo.console import metrics_table, stderr_console


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
        emit_json(result.to_json())


@app.command("eval")
@friendly
def eval_cmd(
    dataset: Annotated[str, typer.Option("--dataset", "-d", help="Benchmark name (see `pseudo datasets`).")],
    predictions: Annotated[
        Path | None, typer.Argument(help="QVHighlights-style prediction JSONL (or give --work).")
    ] = None,
    work: Annotated[
        Path | None, typer.Option("--work", help="A `pseudo train` work directory: score its current predictions.")
    ] = None,
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
    from pseudo.pipeline import current_predictions
    from pseudo.settings import ConfigError

    if (predictions is None) == (work is None):
        raise ConfigError("give a predictions file or --work (a `pseudo train` work directory), not both")
    if work is not None:
        predictions = current_predictions(work, dataset, split)
    assert predictions is not None
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
        emit_json(rows)


@app.command("demo")
@friendly
def demo_cmd(
    work: Annotated[Path, typer.Option("--work", help="Where the demo writes its stages.")] = Path("runs/demo"),
    as_json: JsonFlag = False,
) -> None:
    """The method end to end on the bundled slice of real QVHighlights data (a few minutes on a CPU)."""
    from pseudo.demo import DEMO_COLUMNS, caption_pipeline, official_check

    con = stderr_console()
    con.print("1/2 official QVHighlights metrics, Moment-DETR sample predictions (150 val queries)")
    official = official_check()
    _report_eval(official, False)
    con.print("2/2 the whole method on 200 real QVHighlights val videos from their clip captions (no human timestamps)")
    demo = caption_pipeline(work)
    title = f"{demo.videos} QVHighlights val videos, {demo.queries} real queries (official metrics; transductive)"
    con.print(metrics_table(title, demo.rows, DEMO_COLUMNS))
    con.print(demo.verdict)
    con.print(f"stages and the trained run are in {work}")
    if as_json:
        emit_json({"official_check": official.to_json(), "caption_pipeline": demo.rows, "verdict": demo.verdict})

"""Where the trained localizer loses on QVHighlights: candidate recall, ranking, moment length.

    python -m bench.qvhighlights_gap [--recipe recipes/qvhighlights_captions_zs.yaml] [--work DIR]

Runs the recipe's pipeline (every stage is reused when current), takes its predictions of val and
test, and prints one table: how often a window with IoU >= 0.5 / 0.7 is ranked first, in the top 5,
in the top 10; the same for the proposals; R1@0.5 by total GT length; and the lengths of the rank-1
windows against the GT's.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from bench._common import header, parse_args, run_bench
from pseudo.console import markdown_table
from pseudo.data import load_dataset
from pseudo.data.predictions import load_predictions
from pseudo.metrics.iou import iou_cross
from pseudo.pipeline import Pipeline
from pseudo.recipe import load_recipe
from pseudo.records import Prediction, Proposal, Query
from pseudo.stages.proposals import read_proposals


def best_ious(windows: Sequence[Sequence[float]], gt: Sequence[tuple[float, float]]) -> list[float]:
    """Each window's IoU with its best-matching GT window (the official protocol's IoU)."""
    if not windows:
        return []
    return [float(x) for x in iou_cross(np.array(windows)[:, :2], np.array(gt)).max(axis=1)]


def hit_at(ious: list[list[float]], k: int, thr: float) -> float:
    return 100.0 * float(np.mean([bool(x[:k]) and max(x[:k]) >= thr for x in ious]))


def pct(x: NDArray[np.float64]) -> str:
    return " / ".join(f"{v:.0f}" for v in np.percentile(x, [10, 50, 90]))


def diagnose(gts: list[Query], preds: list[Prediction], props: dict[str, list[Proposal]]) -> dict[str, str]:
    by_q = {q.qid: q for q in gts}
    preds = [p for p in preds if p.qid in by_q]
    ious = [best_ious(p.windows, by_q[p.qid].windows) for p in preds]
    prop_ious = [best_ious([(r.start, r.end) for r in props.get(q.vid, [])], q.windows) for q in gts]
    total = np.array([sum(e - s for s, e in by_q[p.qid].windows) for p in preds])
    first = np.array([x[0] >= 0.5 if x else False for x in ious])
    rank1_len = np.array([p.windows[0][1] - p.windows[0][0] if p.windows else 0.0 for p in preds])
    row = {
        f"localizer: IoU >= {t} at rank 1 / top 5 / top 10": " / ".join(f"{hit_at(ious, k, t):.2f}" for k in (1, 5, 10))
        for t in (0.5, 0.7)
    }
    row.update(
        {
            f"proposals: IoU >= {t} in the first 10 / 100": " / ".join(
                f"{hit_at(prop_ious, k, t):.2f}" for k in (10, 100)
            )
            for t in (0.5, 0.7)
        }
    )
    for lo, hi in ((0, 10), (10, 30), (30, 1e9)):
        m = (total > lo) & (total <= hi)
        if m.any():
            name = f"R1@0.5, GT total {lo}-{hi:g} s" if hi < 1e9 else f"R1@0.5, GT total over {lo} s"
            row[name] = f"{100 * first[m].mean():.2f} (n={int(m.sum())})"
    row["rank-1 window length, 10th / 50th / 90th percentile (s)"] = pct(rank1_len)
    row["GT total length, 10th / 50th / 90th percentile (s)"] = pct(total)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipe", type=Path, default=Path("recipes/qvhighlights_captions_zs.yaml"))
    ap.add_argument("--work", type=Path, default=None, help="pipeline work directory (default: the recipe's)")
    ap.add_argument("--out", default="bench/results/qvhighlights_gap.md")
    args = parse_args(ap)
    result = Pipeline(load_recipe(args.recipe), args.work).run()
    cols: dict[str, dict[str, str]] = {}
    for split, videos in (("val", "train"), ("test", "test")):
        gts = [q for q in load_dataset("qvhighlights", split) if q.windows]
        props = read_proposals(result.outputs[f"proposals:{videos}"])
        preds = load_predictions(result.outputs[f"predict:qvhighlights_{split}"])
        cols[split] = diagnose(gts, preds, props)
    rows = [{"measure": k, "val (transductive)": v, "test": cols["test"].get(k, "-")} for k, v in cols["val"].items()]
    table = markdown_table(rows, ["measure", "val (transductive)", "test"])
    print(table)
    text = header(
        "Where the QVHighlights localizer loses",
        f"python -m bench.qvhighlights_gap --recipe {args.recipe}",
        args.code_version,
    )
    text += f"The recipe `{args.recipe}`'s trained localizer and its decoding, from its pipeline.\n\n" + table
    Path(args.out).write_text(text)


if __name__ == "__main__":
    run_bench(main)

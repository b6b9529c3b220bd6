"""Prior-only baselines on the real test splits of all five benchmarks.

    python -m bench.baselines [--data-root DIR] [--out bench/results/baselines.md]

Prints a table (stderr) and writes it as markdown. The prior is fitted on the train split only
(DiDeMo has no train file here, so its prior is fitted on val: labelled as such).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from rich.console import Console

from bench._common import header, parse_args, run_bench
from pseudo.baselines.prior import LengthPositionPrior, whole_video
from pseudo.console import markdown_table, metrics_table
from pseudo.data import load_dataset
from pseudo.evaluate import score

# (dataset, evaluated split, split the prior is fitted on)
RUNS = [
    ("charades_sta", "test", "train"),
    ("activitynet", "val_2", "train"),
    ("tacos", "test", "train"),
    ("didemo", "test", "val"),
    ("qvhighlights", "val", "train"),
    ("qvhighlights", "test", "train"),
]
RECALL_COLS = ["R1@0.3", "R1@0.5", "R1@0.7", "R5@0.3", "R5@0.5", "R5@0.7", "mIoU"]
QVH_COLS = ["R1@0.5", "R1@0.7", "mAP@0.5", "mAP@0.75", "mAP", "R1@0.3", "mIoU"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--out", default="bench/results/baselines.md")
    args = parse_args(ap)
    con = Console(stderr=True, width=160)
    recall_rows: dict[str, dict[str, float]] = {}
    qvh_rows: dict[str, dict[str, float]] = {}
    recall_md: list[dict[str, float | str]] = []
    qvh_md: list[dict[str, float | str]] = []
    t0 = time.perf_counter()
    for name, split, train_split in RUNS:
        gts = load_dataset(name, split, data_root=args.data_root)
        prior = LengthPositionPrior().fit(load_dataset(name, train_split, data_root=args.data_root))
        fitted_on = train_split if train_split == "train" else f"{train_split} (no train file)"
        for method, preds in (("whole video", whole_video(gts)), (f"prior from {fitted_on}", prior.predict(gts))):
            label = f"{name} {split}: {method}"
            ident = {"split": f"{name} {split}", "method": method, "queries": str(len(gts))}
            rep, _ = score(gts, preds, "recall")
            recall_rows[label] = rep.headline
            recall_md.append({**ident, **rep.headline})
            if name == "qvhighlights":
                rep, _ = score(gts, preds, "qvhighlights")
                qvh_rows[label] = rep.headline
                qvh_md.append({**ident, **rep.headline})
    con.print(metrics_table("Prior-only baselines: R@k (%)", recall_rows, RECALL_COLS))
    con.print(metrics_table("Prior-only baselines: QVHighlights protocol (%)", qvh_rows, QVH_COLS))
    text = header("Prior-only baselines", "python -m bench.baselines", args.code_version)
    text += "R@k at IoU and mIoU (percent), every benchmark's test split (ActivityNet: val_2).\n\n"
    text += markdown_table(recall_md, ["split", "method", "queries", *RECALL_COLS])
    text += "\nQVHighlights, official protocol (percent).\n\n"
    text += markdown_table(qvh_md, ["split", "method", "queries", *QVH_COLS])
    text += f"\nWall time: {time.perf_counter() - t0:.1f} s.\n"
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    con.print(f"wrote {args.out}")


if __name__ == "__main__":
    run_bench(main)

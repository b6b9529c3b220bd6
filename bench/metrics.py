"""Speed of the vectorised metrics against the per-query loop reference, on synthetic queries.

    python -m bench.metrics [--queries 20000] [--loop-queries 2000]

The loop reference (pseudo.metrics.reference) is the evaluators' algorithm one query at a time;
it runs on a subset and is compared per query. Both are checked to agree before timing counts.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from rich.console import Console

from bench._common import header, parse_args, run_bench
from pseudo.console import markdown_table
from pseudo.metrics.protocols import PROTOCOLS
from pseudo.metrics.qvhighlights import MAP_IOUS
from pseudo.metrics.reference import ap_one_query, recall_one_query
from pseudo.records import Prediction, Query


def synthetic(n: int, seed: int = 0) -> tuple[list[Query], list[Prediction]]:
    rng = np.random.default_rng(seed)
    gts, preds = [], []
    for i in range(n):
        g = []
        for _ in range(rng.integers(1, 4)):
            s = float(rng.integers(0, 70) * 2)
            g.append((s, min(150.0, s + float(rng.integers(1, 30) * 2))))
        p = []
        for _ in range(10):
            s = float(rng.integers(0, 70) * 2)
            p.append((s, min(150.0, s + float(rng.integers(1, 40) * 2)), float(rng.random())))
        p.sort(key=lambda w: -w[2])
        gts.append(Query(i, f"v{i}", 150.0, "q", tuple(g)))
        preds.append(Prediction(i, f"v{i}", tuple(p)))
    return gts, preds


def loop_scores(gts: list[Query], preds: list[Prediction]) -> tuple[float, float]:
    """(mean AP at IoU 0.5, R1@0.5) by the per-query reference."""
    ap = [ap_one_query(list(q.windows), list(p.windows), 0.5) for q, p in zip(gts, preds, strict=True)]
    for thr in MAP_IOUS[1:]:
        for q, p in zip(gts, preds, strict=True):
            ap_one_query(list(q.windows), list(p.windows), thr)
    r1 = [recall_one_query(list(q.windows), list(p.windows), 1, 0.5) for q, p in zip(gts, preds, strict=True)]
    return 100 * float(np.mean(ap)), 100 * float(np.mean(r1))


def best_of(fn: object, repeats: int = 3) -> float:
    assert callable(fn)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--queries", type=int, default=20000)
    ap.add_argument("--loop-queries", type=int, default=2000)
    ap.add_argument("--out", default="bench/results/metrics.md")
    args = parse_args(ap)
    con = Console(stderr=True, width=160)
    gts, preds = synthetic(args.queries)
    sub_g, sub_p = gts[: args.loop_queries], preds[: args.loop_queries]

    vec_qvh = PROTOCOLS.get("qvhighlights")
    vec_rec = PROTOCOLS.get("recall")
    # agreement on the subset before anything is timed
    got = vec_qvh(sub_g, sub_p).details["full"]
    loop_map, loop_r1 = loop_scores(sub_g, sub_p)
    assert abs(got["MR-mAP"]["0.5"] - loop_map) < 0.006 and abs(got["MR-R1"]["0.5"] - loop_r1) < 0.006

    t_loop = best_of(lambda: loop_scores(sub_g, sub_p), repeats=1)
    t_qvh = best_of(lambda: vec_qvh(gts, preds))
    t_rec = best_of(lambda: vec_rec(gts, preds))
    per_loop = t_loop / len(sub_g)
    rows: list[dict[str, float | str]] = [
        {
            "scorer": "per-query loop reference (baseline)",
            "queries": str(len(sub_g)),
            "seconds": t_loop,
            f"s per {args.queries} q": per_loop * args.queries,
            "speed-up": 1.0,
        },
        {
            "scorer": "vectorised QVHighlights protocol (R1 + mAP, 4 buckets)",
            "queries": str(len(gts)),
            "seconds": t_qvh,
            f"s per {args.queries} q": t_qvh,
            "speed-up": per_loop * len(gts) / t_qvh,
        },
        {
            "scorer": "vectorised recall protocol (R1/R5 x 3 IoU + mIoU)",
            "queries": str(len(gts)),
            "seconds": t_rec,
            f"s per {args.queries} q": t_rec,
            "speed-up": per_loop * len(gts) / t_rec,
        },
    ]
    cols = ["scorer", "queries", "seconds", f"s per {args.queries} q", "speed-up"]
    table = markdown_table(rows, cols)
    con.print(table)
    text = header("Metric speed", "python -m bench.metrics", args.code_version)
    text += (
        "Synthetic QVHighlights-like queries (150 s videos, 1-3 GT windows, 10 ranked predictions). The loop "
        "baseline computes mAP at 10 IoU thresholds and R1@0.5, one query at a time; its time is scaled per query. "
        "The QVHighlights protocol also scores the short/middle/long buckets, so it does more work than the "
        "baseline.\n\n" + table
    )
    Path(args.out).write_text(text)
    con.print(f"wrote {args.out}")


if __name__ == "__main__":
    run_bench(main)

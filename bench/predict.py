"""Prediction passes of the QVHighlights recipe's trained localizer: the previous path against the current one.

    python -m bench.predict [--recipe recipes/qvhighlights_captions_zs.yaml] [--work DIR] [--split val]
                            [--queries 0]

The recipe's stages are run first (current ones are read back; ``pseudo train RECIPE`` makes them).
Each path loads the run (cold text encodings) and predicts the split with the query
rephrasings fused, as the recipe evaluates: first with the recipe's decoding (every text is new to the
model), then with one decoding setting changed (``overlap_decay_iou: 1``, as a decoding ablation does
on the same model), then loads the run again (as the bench loads the next seed's run) and predicts
with the recipe's decoding.

* previous path: the second stage (``decode.similarity_weight``) embeds each query's phrasings through
  the frozen text tower on every call, once per query and pass, and each model keeps its own text
  encodings (a run loaded again encodes every text again);
* current path: the second stage reads the plain embeddings that the plain-similarity channel made,
  and the frozen tower keeps every encoding, shared through a :class:`TowerPool` by every model loaded
  through it (the bench's seeds and ablations).

The table gives seconds and queries per second per pass, the speed-up as a ratio to the previous path,
the official metrics of each pass, how many queries the two paths rank differently, and the largest
difference between their scores of a window (the two embed a text in batches of different shapes, so
the embeddings agree to float rounding).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from rich.console import Console

from bench._common import header, parse_args, run_bench
from bench.qvhighlights import SPLITS, VARIANTS
from pseudo.console import markdown_table
from pseudo.data import load_dataset
from pseudo.data.paths import find_data_root
from pseudo.data.store import FeatureSource
from pseudo.data.variants import load_variants
from pseudo.evaluate import score
from pseudo.io import atomic_write_json, atomic_write_text
from pseudo.pipeline import Pipeline
from pseudo.recipe import load_recipe
from pseudo.records import Prediction, Query
from pseudo.stages.features import caption_texts
from pseudo.stages.localize import load_events
from trainers.config import DecodeConfig
from trainers.data import StepFeatures
from trainers.localizer import Localizer
from trainers.text_towers import TowerPool


class PreviousPath(Localizer):
    """The previous release's second stage: the phrasings go through the frozen tower on every call."""

    def _rescore(
        self, windows: NDArray[np.float64], texts: Any, grid: StepFeatures, dc: DecodeConfig
    ) -> NDArray[np.float64]:
        emb = self.model.tower.embed_texts(list(texts)).float().cpu()
        model = self.model
        model.plain_embeddings = lambda _texts: emb  # type: ignore[method-assign,assignment]
        try:
            return super()._rescore(windows, texts, grid, dc)
        finally:
            del model.plain_embeddings


def score_gap(pairs: list[tuple[Prediction, Prediction]]) -> float:
    """The largest difference between the two paths' scores of the same window at the same rank."""
    gaps = [abs(x[2] - y[2]) for a, b in pairs for x, y in zip(a.windows, b.windows, strict=False) if x[:2] == y[:2]]
    return max(gaps, default=0.0)


def load(run_dir: Path, pool: TowerPool | None) -> Localizer:
    """The run's localizer: by the previous path without a pool, else through ``pool``."""
    return PreviousPath.from_run(run_dir, "cpu") if pool is None else Localizer.from_run(run_dir, "cpu", pool)


def timed_pass(
    loc: Localizer,
    source: FeatureSource,
    queries: list[Query],
    events: Any,
    variants: dict[str, list[str]],
    dc: DecodeConfig,
) -> tuple[float, list[Prediction]]:
    t = time.perf_counter()
    preds = loc.predict(
        source, queries, events=events, decode_cfg=dc, variants=variants, step_texts=caption_texts(source)
    )
    return time.perf_counter() - t, preds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipe", type=Path, default=Path("recipes/qvhighlights_captions_zs.yaml"))
    ap.add_argument("--work", type=Path, default=None, help="pipeline work directory (default: the recipe's)")
    ap.add_argument("--split", choices=sorted(SPLITS), default="val")
    ap.add_argument("--queries", type=int, default=0, help="the first N queries of the split (0: all)")
    ap.add_argument("--out", default="bench/results/predict.md")
    args = parse_args(ap)
    con = Console(stderr=True)
    pipeline = Pipeline(load_recipe(args.recipe), args.work, log=con.print)
    result = pipeline.run(until="train")  # current stages are read back, not rebuilt
    run_dir = Path(result.outputs["train"])
    videos = SPLITS[args.split]
    events = load_events(result.outputs[f"proposals:{videos}"])
    source = pipeline.features_source(videos)
    gts = [q for q in load_dataset("qvhighlights", args.split) if q.windows]
    variants = load_variants(VARIANTS.format(root=find_data_root(), split=args.split), gts)
    queries = gts[: args.queries] if args.queries else gts
    recipe_dc = pipeline.recipe.decode
    warm = recipe_dc.model_copy(update={"overlap_decay_iou": 1.0})
    #: (pass, whether it loads the run again first: another run of the recipe, as the next seed is)
    passes = [
        ("recipe's decoding (cold: every text new)", recipe_dc, False),
        ("overlap_decay_iou 1 (a decoding ablation on the same model)", warm, False),
        ("recipe's decoding, the run loaded again (as another seed's run)", recipe_dc, True),
    ]
    rows: list[dict[str, Any]] = []
    preds: dict[tuple[str, str], list[Prediction]] = {}
    for path in ("previous", "current"):
        pool = TowerPool() if path == "current" else None
        loc = load(run_dir, pool)
        for name, dc, again in passes:
            if again:
                loc = load(run_dir, pool)
            seconds, got = timed_pass(loc, source, queries, events, variants, dc)
            preds[path, name] = got
            rep, _ = score(queries, got, "qvhighlights")
            rows.append(
                {
                    "path": path,
                    "pass": name,
                    "seconds": round(seconds, 1),
                    "queries/s": round(len(queries) / seconds, 2),
                    **{k: round(rep.headline[k], 2) for k in ("R1@0.5", "R1@0.7", "mAP")},
                }
            )
            con.print(rows[-1])
    for row in rows:
        base = next(r for r in rows if r["path"] == "previous" and r["pass"] == row["pass"])
        row["speed-up"] = round(base["seconds"] / row["seconds"], 2)
        if row["path"] == "current":
            old, new = preds["previous", row["pass"]], preds["current", row["pass"]]
            pairs = list(zip(old, new, strict=True))
            row["queries ranked differently"] = sum(
                [w[:2] for w in a.windows] != [w[:2] for w in b.windows] for a, b in pairs
            )
            row["largest score difference"] = f"{score_gap(pairs):.1e}"
    total = {p: sum(r["seconds"] for r in rows if r["path"] == p) for p in ("previous", "current")}
    cols = [
        "path",
        "pass",
        "seconds",
        "queries/s",
        "speed-up",
        "R1@0.5",
        "R1@0.7",
        "mAP",
        "queries ranked differently",
        "largest score difference",
    ]
    command = f"python -m bench.predict --recipe {args.recipe} --split {args.split} --queries {args.queries}"
    text = header("Prediction passes: previous path against current", command, args.code_version)
    text += (
        f"The recipe's trained run `{run_dir.name}` on {len(queries)} QVHighlights {args.split} queries with VTG-GPT's "
        f"five rephrasings fused, CPU, torch threads {torch.get_num_threads()}. "
        "Metrics are the official ones (val is transductive for this recipe).\n\n"
        + markdown_table(rows, cols)
        + f"\nThe three passes: previous {total['previous']:.0f} s, current {total['current']:.0f} s "
        f"(speed-up {total['previous'] / total['current']:.2f}x).\n"
    )
    atomic_write_text(Path(args.out), text)
    atomic_write_json(
        Path(args.out).with_suffix(".json"),
        {
            "split": args.split,
            "queries": len(queries),
            "seconds": {p: round(s, 1) for p, s in total.items()},
            "speed_up": round(total["previous"] / total["current"], 2),
            "code_version": args.code_version,
        },
    )
    con.print(markdown_table(rows, cols))


if __name__ == "__main__":
    run_bench(main)

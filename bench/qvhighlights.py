"""Zero-shot QVHighlights from real clip captions: the recipe's whole method and every baseline,
scored in one run with the official metrics.

    python -m bench.qvhighlights [--recipe recipes/qvhighlights_captions_zs.yaml] [--work DIR]
                                 [--ablations] [--seeds 0 1 2]

The method is the recipe, run through the pipeline (cached stages are reused; ablations are the
recipe with one setting changed, so they share every stage before the one they change). No human
timestamp enters training: pseudo-labels come from the val videos' captions only. Val numbers are
transductive (the model saw those videos' captions, never their queries or GT); test videos were
never seen. Baselines, on the same features and proposals: a prior fitted on the train split's GT
lengths (a floor, not zero-shot), TF-IDF caption matching, zero-shot proposal ranking by the recipe's encoder, and
VTG-GPT's released val predictions scored by our evaluator.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from rich.console import Console

from bench._common import header, parse_args, run_bench
from pseudo.backbones import build_backbone
from pseudo.backbones.base import set_threads
from pseudo.baselines.prior import LengthPositionPrior
from pseudo.baselines.tfidf import tfidf_caption_windows
from pseudo.baselines.vtggpt import vtggpt_predictions
from pseudo.baselines.zero_shot import rank_proposals
from pseudo.console import markdown_table
from pseudo.curves import SpanSettings
from pseudo.data import load_dataset
from pseudo.data.captions import ExternalCaptions
from pseudo.data.paths import find_data_root
from pseudo.data.predictions import load_predictions
from pseudo.data.variants import load_variants
from pseudo.evaluate import score
from pseudo.io import atomic_write_json, atomic_write_text
from pseudo.pipeline import Pipeline, PipelineResult
from pseudo.recipe import Recipe, load_recipe
from pseudo.records import Prediction
from pseudo.stages.features import caption_texts, text_encoder_of
from pseudo.stages.localize import load_events
from pseudo.stages.proposals import read_proposals
from trainers.localizer import Localizer
from trainers.text_towers import TowerPool

COLS = ["R1@0.5", "R1@0.7", "mAP@0.5", "mAP@0.75", "mAP", "mIoU"]
HEADLINE = ["R1@0.5", "R1@0.7", "mAP", "mAP@0.5", "mAP@0.75", "mIoU"]
SPLITS = {"val": "train", "test": "test"}  # split -> the recipe's video set
#: VTG-GPT's five LLM rephrasings of every query (only qid and the texts are read)
VARIANTS = "{root}/qvhighlights/vtggpt_rephrased_queries/{split}.jsonl"

#: VTG-GPT's span rule as its released code sets it (the baseline's settings)
VTG = SpanSettings()

#: the sentence encoders' aliases as the rows name them (any other model by its own name)
ENCODER_NAMES = {"minilm": "MiniLM", "mpnet": "all-mpnet-base-v2"}

#: decoding changed, one setting at a time, on the recipe's trained model (no retraining)
DECODE_ABLATIONS: dict[str, dict[str, Any]] = {
    "no zero-shot spans fused (similarity_span_weight 0)": {"similarity_span_weight": 0.0},
    "no finer zero-shot spans (similarity_span_gap 6 only)": {"similarity_span_gap": 6},
    "regressed windows only (the previous decoding)": {"windows_from": "regression", "similarity_span_weight": 0.0},
    "variants pooled as windows (not fused per step)": {"variant_fusion": "windows"},
    "boundaries not snapped": {"snap_to_steps": False, "event_snap_seconds": 0},
    "near-copies not decayed (overlap_decay_iou 1)": {"overlap_decay_iou": 1.0},
    "windows not re-scored by the zero-shot contrast (similarity_weight 0)": {"similarity_weight": 0.0},
    "no caption feedback (caption_feedback 0)": {"caption_feedback": 0},
    f"VTG-GPT's span threshold (span_bins {VTG.num_bins}, span_top_k {VTG.top_k})": {
        "span_bins": VTG.num_bins,
        "span_top_k": VTG.top_k,
    },
}

#: training changed, one setting at a time (each trains a model: --ablations)
ABLATIONS: dict[str, dict[str, Any]] = {
    "pseudo-moments of 10-40 s (the previous recipe's labels)": {"data.max_label_seconds": 40},
    "same-video hard negatives (loss.query_contrast_weight 1)": {"loss.query_contrast_weight": 1.0},
}

PUBLISHED: list[dict[str, float | str]] = [
    {
        "method": "VTG-GPT paper (zero-shot, LLM-rephrased queries)",
        "split": "val",
        "R1@0.5": 54.26,
        "R1@0.7": 38.45,
        "mAP": 30.91,
    },
    {"method": "VTG-GPT README (zero-shot)", "split": "val", "R1@0.5": 59.03, "R1@0.7": 38.90, "mAP": 35.57},
    {"method": "Diwan et al. (zero-shot)", "split": "val", "R1@0.5": 48.33, "R1@0.7": 30.96, "mAP": 27.96},
    {"method": "Moment-GPT (AAAI 2025, zero-shot)", "split": "test", "R1@0.5": 58.30, "R1@0.7": 37.70, "mAP": 35.00},
    {"method": "GranAlign (AAAI 2026, zero-shot)", "split": "test", "R1@0.5": 59.92, "R1@0.7": 39.30, "mAP": 38.23},
    {"method": "REZE (2026, a VLM scores every clip)", "split": "test", "mAP": 40.32},
    {"method": "UniVTG (zero-shot)", "split": "test", "R1@0.5": 25.16, "R1@0.7": 8.95},
    {"method": "Moment-DETR (fully supervised)", "split": "val", "R1@0.5": 53.94, "R1@0.7": 34.84},
]


class Timer:
    def __init__(self) -> None:
        self.times: dict[str, float] = {}

    def __call__(self, name: str, fn: Callable[[], Any]) -> Any:
        t = time.perf_counter()
        out = fn()
        self.times[name] = self.times.get(name, 0.0) + time.perf_counter() - t
        return out

    def add_pipeline(self, result: PipelineResult) -> None:
        for step in result.steps:
            if step.status == "built":
                name = step.key.split(":")[0]
                self.times[name] = self.times.get(name, 0.0) + step.seconds


def seed_label(recipe: Recipe) -> str:
    """What a recipe row with ``recipe``'s seed is: one run, or an ensemble and its members' seeds."""
    seeds = recipe.ensemble.seeds(recipe.optim.seed)
    if len(seeds) == 1:
        return f"seed {seeds[0]}"
    return f"ensemble of {len(seeds)} (seeds {', '.join(map(str, seeds))})"


def over(recipe: Recipe, seeds: list[int]) -> str:
    """What the recipe's mean row averages: seeds, or ensembles (one per seed, with its members)."""
    if recipe.ensemble.members == 1:
        return f"{len(seeds)} seed(s)"
    return f"{len(seeds)} ensembles of {recipe.ensemble.members} (seeds {', '.join(map(str, seeds))} and their members)"


def split_label(split: str, trains: bool) -> str:
    return "val (transductive)" if split == "val" and trains else split


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipe", type=Path, default=Path("recipes/qvhighlights_captions_zs.yaml"))
    ap.add_argument("--work", type=Path, default=None, help="pipeline work directory (default: the recipe's)")
    ap.add_argument("--ablations", action="store_true")
    ap.add_argument("--seeds", type=int, nargs="*", default=[0], help="optim.seed values of the recipe's row")
    ap.add_argument("--out", default="bench/results/qvhighlights.md")
    args = parse_args(ap)
    set_threads("auto")  # as `pseudo train` does: one torch thread per core other work leaves free
    con = Console(stderr=True, width=180)
    timer = Timer()
    gts = {s: [q for q in load_dataset("qvhighlights", s) if q.windows] for s in SPLITS}
    rows: list[dict[str, float | str]] = []

    def add(method: str, split: str, preds: list[Prediction], trains: bool = False) -> dict[str, float]:
        rep, _ = score(gts[split], preds, "qvhighlights")
        rows.append({"method": method, "split": split_label(split, trains), **rep.headline})
        con.print(method, split, {k: round(rep.headline[k], 2) for k in COLS})
        return rep.headline

    towers = TowerPool()  # the seeds and ablations share the frozen text encoder and what it has encoded

    def run(overrides: dict[str, Any]) -> tuple[Pipeline, PipelineResult]:
        pipeline = Pipeline(load_recipe(args.recipe, overrides), args.work, log=con.print, towers=towers)
        result = pipeline.run()
        timer.add_pipeline(result)
        return pipeline, result

    variants = {s: load_variants(VARIANTS.format(root=find_data_root(), split=s), gts[s]) for s in SPLITS}
    llm = "LLM rephrasings fused: same inputs as VTG-GPT"

    def localizer_preds(
        pipeline: Pipeline,
        result: PipelineResult,
        split: str,
        use_variants: bool,
        localizer: Localizer | None = None,
        **decode: Any,
    ) -> list[Prediction]:
        """The trained run's predictions with the recipe's decoding (``decode`` changed), by the model
        that made the run's own predictions (it keeps the text encodings it made for them), or by
        ``localizer``."""
        videos = SPLITS[split]
        localizer = localizer or pipeline.localizer()
        dc = pipeline.recipe.decode.model_copy(update=decode)
        events = load_events(result.outputs[f"proposals:{videos}"])
        source = pipeline.features_source(videos)
        extra = variants[split] if use_variants else None
        preds: list[Prediction] = timer(
            "predict",
            lambda: localizer.predict(
                source, gts[split], events=events, decode_cfg=dc, variants=extra, step_texts=caption_texts(source)
            ),
        )
        return preds

    # the recipe, one run per seed: with the rephrasings (as the recipe evaluates) and without
    seed_metrics: dict[str, list[dict[str, float]]] = {s: [] for s in SPLITS}
    nollm_metrics: dict[str, list[dict[str, float]]] = {s: [] for s in SPLITS}
    base_pipeline: Pipeline | None = None
    base_result: PipelineResult | None = None
    for seed in args.seeds:
        pipeline, result = run({"optim.seed": seed})
        base_pipeline, base_result = base_pipeline or pipeline, base_result or result
        which = seed_label(pipeline.recipe)
        for split in SPLITS:
            m = result.metrics[f"qvhighlights_{split}"]
            seed_metrics[split].append(m)
            method = f"trained localizer (recipe; {llm}), {which}"
            rows.append({"method": method, "split": split_label(split, True), **m})
            nollm_metrics[split].append(
                add(
                    f"trained localizer (recipe; no LLM), {which}",
                    split,
                    localizer_preds(pipeline, result, split, False),
                    True,
                )
            )
    assert base_pipeline is not None and base_result is not None
    summary = {split: mean_spread(ms) for split, ms in seed_metrics.items()}
    nollm = {split: mean_spread(ms) for split, ms in nollm_metrics.items()}
    for name, table in ((llm, summary), ("no LLM", nollm)):
        for split, (mean, _spread) in table.items():
            rows.append(
                {
                    "method": f"trained localizer (recipe; {name}), mean over {over(base_pipeline.recipe, args.seeds)}",
                    "split": split_label(split, True),
                    **mean,
                }
            )

    # baselines on the same features and proposals
    prior = LengthPositionPrior().fit(load_dataset("qvhighlights", "train"))
    recipe = base_pipeline.recipe
    for split, videos in SPLITS.items():
        source = base_pipeline.features_source(videos)
        enc_cfg = text_encoder_of(source)
        assert enc_cfg is not None
        enc = build_backbone(enc_cfg)
        encoder = ENCODER_NAMES.get(enc_cfg.model, enc_cfg.model)  # in the rows' names
        add("prior only (train-split GT lengths; a floor)", split, prior.predict(gts[split]))
        vs = recipe.videos[videos]
        assert vs.captions is not None
        track = ExternalCaptions(vs.captions, recipe.features.clip_seconds)
        add("TF-IDF caption matching", split, timer("TF-IDF", partial(tfidf_caption_windows, gts[split], track)))
        key = f"proposals:{videos}"
        if key in base_result.outputs:
            props = read_proposals(base_result.outputs[key])
            for w, name in ((0.0, "inside mean"), (1.0, "inside minus outside")):
                preds = timer("zero-shot", partial(rank_proposals, gts[split], props, source, enc, outside_weight=w))
                add(f"zero-shot: {encoder} proposal ranking, {name} (no training)", split, preds)
            preds = timer(
                "zero-shot",
                partial(rank_proposals, gts[split], props, source, enc, outside_weight=1.0, variants=variants[split]),
            )
            add(f"zero-shot: {encoder} proposal ranking, inside minus outside ({llm})", split, preds)
        for name, var in (("no LLM", None), (llm, variants[split])):
            preds = timer("VTG-GPT spans", partial(vtggpt_predictions, gts[split], source, enc, variants=var))
            add(f"VTG-GPT's span algorithm on our {encoder} caption features ({name})", split, preds)
    vtg = find_data_root() / "qvhighlights" / "reference_preds" / "vtggpt_infer_val.jsonl"
    add("VTG-GPT released val predictions (scored here)", "val", load_predictions(vtg))

    first = seed_label(recipe)
    if recipe.ensemble.members > 1:  # the ensemble's share: its first member alone, decoded as the recipe says
        alone = Localizer.from_run(base_result.outputs["train"], recipe.device, towers).with_decode(recipe.decode)
        for split in SPLITS:
            preds = localizer_preds(base_pipeline, base_result, split, True, alone)
            name = f"ensemble ablation ({first}, {llm}): its first member alone (seed {args.seeds[0]})"
            add(name, split, preds, True)
    for name, decode in DECODE_ABLATIONS.items():
        for split in SPLITS:
            preds = localizer_preds(base_pipeline, base_result, split, True, **decode)
            add(f"decoding ablation ({first}, {llm}): {name}", split, preds, True)
    for split in SPLITS:
        preds = localizer_preds(
            base_pipeline, base_result, split, False, windows_from="regression", similarity_span_weight=0.0
        )
        add(f"decoding ablation ({first}): no LLM and regressed windows only", split, preds, True)

    if args.ablations:
        for name, overrides in ABLATIONS.items():
            pipeline, result = run({"optim.seed": args.seeds[0], **overrides})
            for split in SPLITS:
                rows.append(
                    {
                        "method": f"training ablation ({llm}): {name}",
                        "split": split_label(split, True),
                        **result.metrics[f"qvhighlights_{split}"],
                    }
                )
                preds = localizer_preds(pipeline, result, split, False)
                add(f"training ablation (no LLM): {name}", split, preds, True)

    write_results(args, rows, summary, nollm, timer, base_result, base_pipeline.recipe)
    con.print(markdown_table(rows, ["method", "split", *COLS]))


def mean_spread(ms: list[dict[str, float]]) -> tuple[dict[str, float], dict[str, float]]:
    keys = ms[0].keys()
    mean = {k: statistics.fmean(m[k] for m in ms) for k in keys}
    spread = {k: (statistics.stdev(m[k] for m in ms) if len(ms) > 1 else 0.0) for k in keys}
    return mean, spread


def write_results(
    args: argparse.Namespace,
    rows: list[dict[str, float | str]],
    summary: dict[str, tuple[dict[str, float], dict[str, float]]],
    nollm: dict[str, tuple[dict[str, float], dict[str, float]]],
    timer: Timer,
    result: PipelineResult,
    result_recipe: Recipe,
) -> None:
    flags = " ".join(
        f
        for f in (
            f"--recipe {args.recipe}",
            f"--work {args.work}" if args.work is not None else "",
            "--ablations" if args.ablations else "",
            f"--seeds {' '.join(map(str, args.seeds))}",
        )
        if f
    )
    spread_rows: list[dict[str, float | str]] = [
        {
            "queries": name,
            "split": split_label(split, True),
            **{f"{k} mean": mean[k] for k in HEADLINE[:3]},
            **{f"{k} std": spread[k] for k in HEADLINE[:3]},
        }
        for name, table in (("LLM rephrasings (same inputs as VTG-GPT)", summary), ("no LLM", nollm))
        for split, (mean, spread) in table.items()
    ]
    text = header(
        "Zero-shot QVHighlights from real clip captions", f"python -m bench.qvhighlights {flags}", args.code_version
    )
    text += (
        f"Official QVHighlights metrics (percent). The method is `{args.recipe}` run by the pipeline "
        f"(work directory `{result.work}`). Val rows of methods that learn from the val videos' captions are "
        "transductive; test videos were never seen. Baselines use the recipe's own features and proposals.\n\n"
        + markdown_table(rows, ["method", "split", *COLS])
        + f"\nThe recipe over {over(result_recipe, args.seeds)}: mean and sample standard deviation.\n\n"
        + markdown_table(spread_rows, list(spread_rows[0]))
        + "\nPublished numbers on the same splits (not re-run here):\n\n"
        + markdown_table(PUBLISHED, ["method", "split", "R1@0.5", "R1@0.7", "mAP"])
        + "\nWall time on this CPU (stages built in this run; cached stages count 0): "
        + ", ".join(f"{k} {v:.0f} s" for k, v in timer.times.items())
        + ".\n"
    )
    atomic_write_text(Path(args.out), text)

    def headline(table: dict[str, tuple[dict[str, float], dict[str, float]]]) -> dict[str, Any]:
        return {
            split: {k: round(mean[k], 2) for k in HEADLINE} | {f"{k}_std": round(spread[k], 2) for k in HEADLINE[:3]}
            for split, (mean, spread) in table.items()
        }

    atomic_write_json(
        Path(args.out).with_suffix(".json"),
        {
            **headline(summary),
            "queries": "with VTG-GPT's LLM rephrasings fused (the recipe's eval); val is transductive",
            "no_llm": headline(nollm),
            "seeds": len(args.seeds),
            "ensemble_members": result_recipe.ensemble.members,
            "recipe": str(args.recipe),
            "code_version": args.code_version,
        },
    )


if __name__ == "__main__":
    run_bench(main)

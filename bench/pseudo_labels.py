"""Label-quality diagnostics of pseudo-labels made from the QVHighlights val clip captions,
against the real GT of the same videos. Diagnostics only: nothing here is training signal.

    python -m bench.pseudo_labels [--recipe recipes/qvhighlights_captions_zs.yaml] [--work DIR]

The features, proposals and pseudo-labels are the recipe's own (its pipeline, run up to the labels
stage; cached stages are reused).

1. Proposal recall: the share of GT windows that some proposal among the video's top N (by score)
   covers at IoU >= 0.5 (and 0.7), N = 10, 50, 100, beside N random windows per video measured in
   the same run (the baseline);
2. Pseudo-query quality: for each GT query, the pseudo-label of its video whose window overlaps its
   GT window most; the MiniLM cosine similarity of the two queries, beside a random pseudo-label
   of the same video and one of another video;
3. Label statistics beside the real train split (query and moment lengths).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from rich.console import Console

from bench._common import header, parse_args, run_bench
from pseudo.backbones import BackboneConfig, build_backbone
from pseudo.console import markdown_table
from pseudo.data import load_dataset
from pseudo.data.benchmarks import load_qvh_jsonl
from pseudo.metrics.iou import iou_cross
from pseudo.pipeline import Pipeline
from pseudo.recipe import load_recipe
from pseudo.records import Proposal, Query
from pseudo.stages.labels import label_stats
from pseudo.stages.proposals import read_proposals

TOP_N = (10, 50, 100)


def recall_rows(
    gts: list[Query], by_video: dict[str, list[Proposal]], rng: np.random.Generator
) -> list[dict[str, float | str]]:
    rows: list[dict[str, float | str]] = []
    windows = [(q.vid, q.duration, w) for q in gts for w in q.windows if q.vid in by_video]
    for n in TOP_N:
        for thr in (0.5, 0.7):
            hit_prop = hit_rand = 0
            n_props = []
            for vid, duration, w in windows:
                props = sorted(by_video[vid], key=lambda p: -p.score)[:n]
                n_props.append(len(props))
                cand = np.array([[p.start, p.end] for p in props])
                hit_prop += iou_cross(cand, np.array([w])).max() >= thr
                r = np.sort(rng.uniform(0, duration, (len(props), 2)), axis=1)
                hit_rand += iou_cross(r, np.array([w])).max() >= thr
            rows.append(
                {
                    "top N": str(n),
                    "IoU": f"{thr:g}",
                    "proposals/video (mean)": float(np.mean(n_props)),
                    "recall: proposals": 100.0 * hit_prop / len(windows),
                    "recall: random windows (baseline)": 100.0 * hit_rand / len(windows),
                    "ratio": hit_prop / max(1, hit_rand),
                }
            )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipe", type=Path, default=Path("recipes/qvhighlights_captions_zs.yaml"))
    ap.add_argument("--work", type=Path, default=None, help="the pipeline's work directory (default: the recipe's)")
    ap.add_argument("--out", default="bench/results/pseudo_labels.md")
    args = parse_args(ap)
    con = Console(stderr=True, width=160)
    recipe = load_recipe(args.recipe)
    pipeline = Pipeline(recipe, args.work, log=con.print)
    result = pipeline.run(until="labels")
    times = {s.key: s.seconds for s in result.steps if s.status == "built"}
    by_video = read_proposals(result.outputs["proposals:train"])
    pseudo = load_qvh_jsonl([Path(f) for f in pipeline.label_files])
    gts = load_dataset("qvhighlights", "val")
    vids = sorted({q.vid for q in gts} & set(by_video))
    pcfg = recipe.proposals

    rng = np.random.default_rng(0)
    gts = [q for q in gts if q.vid in by_video]
    rec = recall_rows(gts, by_video, rng)

    t = time.perf_counter()
    enc = build_backbone(BackboneConfig(name="sentence", model="minilm", batch_size=256))
    pseudo_by_vid: dict[str, list[Query]] = {}
    for q in pseudo:
        pseudo_by_vid.setdefault(q.vid, []).append(q)
    all_pseudo = [q for q in pseudo]
    matched, same_vid, other_vid, best_iou = [], [], [], []
    pairs_gt, pairs_pl = [], []
    for q in gts:
        cands = pseudo_by_vid.get(q.vid)
        if not cands:
            continue
        ious = iou_cross(np.array([c.windows[0] for c in cands]), np.array(q.windows)).max(axis=1)
        j = int(np.argmax(ious))
        best_iou.append(float(ious[j]))
        other = all_pseudo[int(rng.integers(len(all_pseudo)))]
        while other.vid == q.vid:
            other = all_pseudo[int(rng.integers(len(all_pseudo)))]
        pairs_gt.append(q.query)
        pairs_pl += [cands[j].query, cands[int(rng.integers(len(cands)))].query, other.query]
    e_gt = enc.encode_texts(pairs_gt)
    e_pl = enc.encode_texts(pairs_pl).reshape(len(pairs_gt), 3, -1)
    sims = np.einsum("nd,nkd->nk", e_gt, e_pl)
    matched, same_vid, other_vid = sims[:, 0], sims[:, 1], sims[:, 2]
    times["text similarity"] = time.perf_counter() - t
    sim_rows: list[dict[str, float | str]] = [
        {
            "pseudo-query compared with the GT query": "best-overlapping pseudo-label",
            "mean cosine": float(matched.mean()),
            "ratio to other-video baseline": float(matched.mean() / other_vid.mean()),
        },
        {
            "pseudo-query compared with the GT query": "random pseudo-label, same video",
            "mean cosine": float(same_vid.mean()),
            "ratio to other-video baseline": float(same_vid.mean() / other_vid.mean()),
        },
        {
            "pseudo-query compared with the GT query": "random pseudo-label, other video (baseline)",
            "mean cosine": float(other_vid.mean()),
            "ratio to other-video baseline": 1.0,
        },
    ]
    stats = label_stats(pseudo, load_dataset("qvhighlights", "train"))
    rec_table = markdown_table(rec, list(rec[0]))
    sim_table = markdown_table(sim_rows, list(sim_rows[0]))
    hist_rows: list[dict[str, float | str]] = []
    for key, title in (("query_words_hist", "query words"), ("moment_seconds_hist", "moment seconds")):
        for name, src in (("pseudo (val videos)", stats), ("real train split", stats["reference"])):
            hist_rows.append({"": f"{title}: {name}", **{k: float(v) for k, v in src[key].items()}})
    hist_tables = "".join(
        markdown_table([r for r in hist_rows if str(r[""]).startswith(t)], list(hist_rows[i * 2])) + "\n"
        for i, t in enumerate(("query words", "moment seconds"))
    )
    con.print(rec_table)
    con.print(sim_table)
    text = header(
        "Pseudo-label quality on QVHighlights val (diagnostics only)",
        f"python -m bench.pseudo_labels --recipe {args.recipe}",
        args.code_version,
    )
    text += (
        f"{len(vids)} val videos; captions: VTG-GPT MiniGPT-v2 clip captions (2 s); features: MiniLM caption "
        f"embeddings; proposals: {pcfg.model_dump()}; pseudo-queries: contrastive caption selection, "
        f"natural captions. {stats['queries']} pseudo-labels ({stats['queries'] / max(1, len(vids)):.1f} per video), "
        f"{stats['queries_shared_across_videos_pct']}% of their texts also appear for another video. "
        f"Best-overlapping pseudo-label's mean IoU with a GT window: {np.mean(best_iou):.3f}.\n\n"
        "Proposal recall of GT windows (percent):\n\n"
        + rec_table
        + "\nPseudo-query vs GT query text similarity (MiniLM cosine):\n\n"
        + sim_table
        + "\nLength histograms, percent of labels per bin (mean query words: pseudo "
        f"{stats['mean_query_words']}, real {stats['reference']['mean_query_words']}; mean moment seconds: pseudo "
        f"{stats['mean_moment_seconds']}, real {stats['reference']['mean_moment_seconds']}):\n\n"
        + hist_tables
        + "Wall time per stage on this CPU: "
        + ", ".join(f"{k} {v:.0f} s" for k, v in times.items())
        + ".\n"
    )
    Path(args.out).write_text(text)
    con.print(f"wrote {args.out}")


if __name__ == "__main__":
    run_bench(main)

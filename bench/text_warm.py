"""Encoding a training run's texts ahead, in batches of one token count, against the first epoch's way.

    python -m bench.text_warm [--model minilm] [--texts 2000] [--labels FILE.jsonl]

With the hand-written prompt, the frozen text tower encodes every training text twice (prompted,
"a video of <text>", and plain, for the plain similarity) and keeps the encodings. Before, the first
epoch made them as its random batches asked: 64 texts at a time, each batch padded to its longest
text (the baseline). Now training starts with :meth:`trainers.text_towers.TextTower.warm`: the same
texts in batches of one token count, shortest first, no padding. Both ways run in this process on
the same tower, alternating, ``--repeats`` times (the tower forgets what it kept between runs); the
table gives the median seconds, texts per second and the ratio to the baseline, and the largest
difference between the two ways' encodings. The texts are the pseudo-queries of ``--labels`` (a
labels file a run made), or the shipped QVHighlights caption slice's captions.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
from rich.console import Console

from bench._common import header, parse_args, run_bench
from pseudo.console import markdown_table

SLICE = Path(__file__).resolve().parents[1] / "pseudo" / "assets" / "demo" / "qvhighlights_val_slice"
PREFIX = "a video of "


def load_texts(labels: str | None, n: int, seed: int) -> list[str]:
    """``n`` distinct texts drawn at random (the pseudo-queries of ``labels``, or the slice's captions)."""
    if labels:
        from pseudo.data.benchmarks import load_qvh_jsonl

        texts = [q.query for q in load_qvh_jsonl([Path(labels)])]
    else:
        from pseudo.data.captions import ExternalCaptions

        track = ExternalCaptions(SLICE / "captions")
        texts = [c.text for vid in track.vids() for c in track.captions(vid)]
    distinct = list(dict.fromkeys(texts))
    rng = np.random.default_rng(seed)
    return [distinct[int(i)] for i in rng.permutation(len(distinct))[:n]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="minilm", help="Sentence encoder: minilm, mpnet, a directory or an HF id.")
    ap.add_argument("--texts", type=int, default=2000)
    ap.add_argument("--labels", default=None, help="A labels file (jsonl) whose pseudo-queries are the texts.")
    ap.add_argument("--batch", type=int, default=64, help="The training batch size (the baseline's batches).")
    ap.add_argument("--max-tokens", type=int, default=24, help="model.max_query_tokens.")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default="bench/results/text_warm.md")
    args = parse_args(ap)
    import torch

    from pseudo.backbones import BackboneConfig
    from pseudo.backbones.base import set_threads
    from trainers.text_towers import build_text_tower

    threads = set_threads("auto")
    con = Console(stderr=True)
    texts = load_texts(args.labels, args.texts, 0)
    prompted = [PREFIX + t for t in texts]
    tower = build_text_tower(BackboneConfig(name="sentence", model=args.model))
    order = np.random.default_rng(1).permutation(len(texts))

    def first_epoch() -> None:
        for lo in range(0, len(texts), args.batch):
            batch = [texts[int(i)] for i in order[lo : lo + args.batch]]
            tower.encoded([PREFIX + t for t in batch], args.max_tokens)
            tower.plain_embeddings(batch)

    def ahead() -> None:
        tower.warm(prompted, args.max_tokens, plain=True)

    def kept() -> tuple[torch.Tensor, torch.Tensor]:
        return (
            torch.stack([p for _, p in tower.encoded(prompted, args.max_tokens)]),
            tower.plain_embeddings(texts),
        )

    ways = {"first epoch's random batches (baseline)": first_epoch, "ahead, one token count per batch": ahead}
    seconds: dict[str, list[float]] = {name: [] for name in ways}
    made: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for r in range(args.repeats):
        for name, way in ways.items():
            tower.forget()
            t = time.perf_counter()
            way()
            seconds[name].append(time.perf_counter() - t)
            made[name] = kept()
            con.print(f"repeat {r + 1}/{args.repeats}: {name}: {seconds[name][-1]:.1f} s")
    (a_pro, a_plain), (b_pro, b_plain) = made.values()
    diff = max(float((a_pro - b_pro).abs().max()), float((a_plain - b_plain).abs().max()))
    base = statistics.median(next(iter(seconds.values())))
    rows: list[dict[str, float | str]] = []
    for name, secs in seconds.items():
        med = statistics.median(secs)
        rows.append(
            {
                "way": name,
                "seconds (median)": med,
                "encodings/s": 2 * len(texts) / med,
                "speed-up over baseline": base / med,
                "seconds, each repeat": " / ".join(f"{s:.1f}" for s in secs),
            }
        )
    table = markdown_table(
        rows, ["way", "seconds (median)", "encodings/s", "speed-up over baseline", "seconds, each repeat"]
    )
    con.print(table)
    source = args.labels or f"the shipped caption slice ({SLICE.name})"
    command = f"python -m bench.text_warm --model {args.model} --texts {args.texts} --repeats {args.repeats}" + (
        f" --labels {args.labels}" if args.labels else ""
    )
    text = header("Training texts encoded ahead, against the first epoch's random batches", command, args.code_version)
    text += (
        f"{len(texts)} distinct texts from {source}, each encoded prompted ('{PREFIX}<text>', at most "
        f"{args.max_tokens} tokens) and plain: {2 * len(texts)} encodings by the frozen `{args.model}` sentence "
        f"tower, CPU fp32, {threads} torch thread(s). Baseline batches: {args.batch} texts in a random order. "
        f"Largest difference between the two ways' encodings: {diff:.1e}.\n\n" + table
    )
    Path(args.out).write_text(text)
    Path(args.out).with_suffix(".json").write_text(
        json.dumps(
            {
                "command": command,
                "code_version": args.code_version,
                "model": args.model,
                "texts": len(texts),
                "threads": threads,
                "seconds": seconds,
                "speed_up": base / statistics.median(list(seconds.values())[1]),
                "max_abs_difference": diff,
            },
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    run_bench(main)

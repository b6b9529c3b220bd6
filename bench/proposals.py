"""Throughput of the proposal generator's stages on this machine.

    python -m bench.proposals [--video PATH] [--out bench/results/proposals.md]

1. decode-only frames/s (PyAV, every frame of a real video, resized to 224 on the long side),
   and decode+encode frames/s with random CLIP models of two sizes (tiny; ViT-B/32 dimensions),
   each as a ratio to decode-only, measured in the same run;
2. proposal time per video at 32, 128, 512 and 2048 steps (planted-segment features, D=512), with
   k fixed and with k chosen per video, as a ratio to the 32-step time.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from rich.console import Console

from bench._common import header, parse_args, run_bench
from proposals import ProposalConfig, generate_proposals
from pseudo.backbones import Backbone, BackboneConfig, build_backbone
from pseudo.console import markdown_table
from pseudo.data.paths import find_data_root
from pseudo.testing import save_random_clip
from pseudo.video import SamplingConfig, probe_video, sample_frames


def timed(fn: Callable[[], object], repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def planted(steps: int, dim: int = 512, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    cuts = np.sort(rng.choice(np.arange(1, steps), size=max(1, steps // 16), replace=False))
    seg = np.searchsorted(cuts, np.arange(steps), side="right")
    centres = rng.normal(size=(seg.max() + 1, dim))
    feats: np.ndarray = centres[seg] + 0.3 * rng.normal(size=(steps, dim))
    return feats.astype(np.float32)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--video", type=Path, default=None, help="default: shared/data/samples/univtg/charades.mp4")
    ap.add_argument("--out", default="bench/results/proposals.md")
    args = parse_args(ap)
    con = Console(stderr=True, width=160)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    video = args.video or find_data_root() / "samples/univtg/charades.mp4"
    info = probe_video(video)
    cfg = SamplingConfig(fps=info.fps, max_side=224)
    sampled = sample_frames(video, cfg)
    n = len(sampled.frames)
    t_decode = timed(lambda: sample_frames(video, cfg))
    rows: list[dict[str, float | str]] = [
        {
            "stage": "decode only (baseline)",
            "frames": str(n),
            "seconds": t_decode,
            "frames/s": n / t_decode,
            "ratio": 1.0,
        },
    ]
    with tempfile.TemporaryDirectory() as tmp:
        for size in ("tiny", "vit-b-32"):
            model_dir = save_random_clip(Path(tmp) / size, size=size)
            bb = build_backbone(BackboneConfig(model=str(model_dir), device="cpu", batch_size=32))
            bb.encode_images(sampled.frames[:4])  # warm-up

            def run(bb: Backbone = bb) -> None:
                bb.encode_images(sample_frames(video, cfg).frames)

            t = timed(run, repeats=1 if size != "tiny" else 3)
            rows.append(
                {
                    "stage": f"decode + encode, random CLIP {size} (fp32, CPU)",
                    "frames": str(n),
                    "seconds": t,
                    "frames/s": n / t,
                    "ratio": t_decode / t,
                }
            )
    decode_table = markdown_table(rows, ["stage", "frames", "seconds", "frames/s", "ratio"])

    prop_rows: list[dict[str, float | str]] = []
    base: dict[str, float] = {}
    for k in (8, "auto"):
        for steps in (32, 128, 512, 2048):
            feats = planted(steps)
            pcfg = ProposalConfig(resample_steps=None, num_clusters=k)
            dur = float(steps)

            def propose(f: np.ndarray = feats, c: ProposalConfig = pcfg, d: float = dur) -> None:
                generate_proposals(f, d, c)

            t = timed(propose, repeats=1 if steps >= 512 else 3)
            key = str(k)
            base.setdefault(key, t)
            prop_rows.append(
                {"k": key, "steps": str(steps), "seconds per video": t, "ratio to 32 steps": t / base[key]}
            )
    prop_table = markdown_table(prop_rows, ["k", "steps", "seconds per video", "ratio to 32 steps"])
    con.print(decode_table)
    con.print(prop_table)
    text = header("Proposal generator throughput", "python -m bench.proposals", args.code_version)
    text += (
        f"Video: `{video.name}` ({info.width}x{info.height}, {info.fps:.2f} fps, {info.duration:.1f} s), every frame "
        "decoded and resized to 224 on the long side; models are randomly initialised (no weights can be fetched "
        "here), which does not change their cost.\n\n"
        + decode_table
        + "\nProposals per video (self-similarity, k-means with n_init=10, atomic events, 50 random composites), "
        "planted-segment features with D=512, no resampling.\n\n"
        + prop_table
        + "\nNo GPU was lent to this session, so there is no GPU ViT-B/32 row.\n"
    )
    Path(args.out).write_text(text)
    con.print(f"wrote {args.out}")


if __name__ == "__main__":
    run_bench(main)

"""Training throughput and peak memory of the localizer on this machine.

    python -m bench.train [--steps 30]

Each prompt mode runs in a fresh process (so peak RSS is its own) on the synthetic task of
``recipes/tiny_cpu.yaml`` with the real MiniLM text tower. The baseline is the hand-written prompt,
which back-propagates through no text-tower layer; CoOp and CoCoOp are ratios to it. On a GPU
session the same script reports CUDA peak memory as well.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console

from bench._common import header
from pseudo.console import markdown_table

MODES = ("hand", "coop", "cocoop")


def one(mode: str, steps: int, batch: int) -> dict[str, float | str]:
    import torch

    from pseudo.data.benchmarks import load_qvh_jsonl
    from pseudo.data.store import ArrayDirectory
    from pseudo.data.synthetic import make_synthetic_dataset
    from pseudo.recipe import load_recipe
    from trainers.loop import train

    with tempfile.TemporaryDirectory() as tmp:
        overrides = {
            "model.prompt": mode,
            "optim.batch_size": batch,
            "optim.epochs": 100,
            "optim.log_every": 1000,
            "optim.checkpoint_every": None,
        }
        cfg = load_recipe(Path(__file__).resolve().parents[1] / "recipes/tiny_cpu.yaml", overrides).train_config()
        paths = make_synthetic_dataset(Path(tmp) / "syn", n_train=400, n_eval=4)
        labels, feats = load_qvh_jsonl([paths.train]), ArrayDirectory(paths.features)
        train(cfg, labels, feats, Path(tmp) / "warm", stop_after_steps=3)  # model load and first steps
        t = time.perf_counter()
        res = train(cfg, labels, feats, Path(tmp) / "run", stop_after_steps=steps)
        dt = time.perf_counter() - t
    out: dict[str, float | str] = {
        "prompt": mode,
        "steps/s": res.steps / dt,
        "samples/s": res.steps * batch / dt,
        "peak RSS (MiB)": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "threads": str(torch.get_num_threads()),
    }
    if torch.cuda.is_available():
        out["peak CUDA (MiB)"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--one", choices=MODES, help=argparse.SUPPRESS)
    ap.add_argument("--out", default="bench/results/train.md")
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(args.one, args.steps, args.batch)))
        return
    rows = []
    for mode in MODES:
        cmd = [
            sys.executable,
            "-m",
            "bench.train",
            "--one",
            mode,
            "--steps",
            str(args.steps),
            "--batch",
            str(args.batch),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    base = float(rows[0]["steps/s"])
    for r in rows:
        r["ratio to hand prompt"] = float(r["steps/s"]) / base
    cols = ["prompt", "steps/s", "samples/s", "ratio to hand prompt", "peak RSS (MiB)", "threads"]
    table = markdown_table(rows, cols)
    Console(stderr=True).print(table)
    text = header("Localizer training throughput", "python -m bench.train")
    text += (
        f"Synthetic task of recipes/tiny_cpu.yaml (d_model 64, 1 layer, 3 levels, 4 context vectors), batch "
        f"{args.batch}, {args.steps} timed steps after 3 warm-up steps, real MiniLM text tower (frozen), CPU fp32. "
        "No GPU was lent to this session, so there is no GPU row.\n\n" + table
    )
    Path(args.out).write_text(text)


if __name__ == "__main__":
    main()

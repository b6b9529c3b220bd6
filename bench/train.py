"""Training and inference throughput of the localizer on this machine, and the thread settings.

    python -m bench.train [--steps 30]

Every row runs in a fresh process (so its thread settings and peak RSS are its own) on the synthetic
task of ``recipes/tiny_cpu.yaml`` with the real MiniLM text tower.

1. Prompt modes: the hand-written prompt (back-propagates through no text-tower layer) is the
   baseline; CoOp and CoCoOp are ratios to it.
2. Threads: CoOp training steps/s and inference queries/s with torch's default threads (one per
   core), with one thread, and with OpenMP's passive waiting, on an idle machine and with another
   process keeping one core busy (as a data loader, a second run or a test suite does), and with
   pseudo's default (``auto``: one thread per core that other work leaves free). Ratios are to
   torch's default on the idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console

from bench._common import header, parse_args, run_bench
from pseudo.console import markdown_table

MODES = ("hand", "coop", "cocoop")
#: name -> (torch intra-op threads: a number, "auto" (pseudo's default) or None for torch's own, environment)
THREADS: dict[str, tuple[int | str | None, dict[str, str]]] = {
    "torch default (1 per core)": (None, {}),
    "1 thread": (1, {}),
    "default, OMP_WAIT_POLICY=PASSIVE": (None, {"OMP_WAIT_POLICY": "PASSIVE"}),
    "pseudo's default: auto (cores other work leaves free)": ("auto", {}),
}


def one(mode: str, steps: int, batch: int, threads: int | str | None) -> dict[str, float | str]:
    import torch

    from pseudo.data.benchmarks import load_qvh_jsonl
    from pseudo.data.store import ArrayDirectory
    from pseudo.data.synthetic import make_synthetic_dataset
    from pseudo.recipe import load_recipe
    from trainers.loop import train

    if threads is not None:
        from pseudo.backbones.base import set_threads

        set_threads("auto" if threads == "auto" else int(threads))
    with tempfile.TemporaryDirectory() as tmp:
        overrides = {
            "model.prompt": mode,
            "optim.batch_size": batch,
            "optim.epochs": 100,
            "optim.log_every": 1000,
            "optim.checkpoint_every": None,
        }
        cfg = load_recipe(Path(__file__).resolve().parents[1] / "recipes/tiny_cpu.yaml", overrides).train_config()
        paths = make_synthetic_dataset(Path(tmp) / "syn", n_train=400, n_eval=40)
        labels, feats = load_qvh_jsonl([paths.train]), ArrayDirectory(paths.features)
        train(cfg, labels, feats, Path(tmp) / "warm", stop_after_steps=3)  # model load and first steps
        t = time.perf_counter()
        res = train(cfg, labels, feats, Path(tmp) / "run", stop_after_steps=steps)
        dt = time.perf_counter() - t
        from trainers.localizer import Localizer

        loc = Localizer.from_run(Path(tmp) / "run", "cpu")
        queries = load_qvh_jsonl([paths.eval])
        loc.predict(feats, queries[:8])
        t = time.perf_counter()
        loc.predict(feats, queries)
        dq = time.perf_counter() - t
    out: dict[str, float | str] = {
        "prompt": mode,
        "steps/s": res.steps / dt,
        "samples/s": res.steps * batch / dt,
        "queries/s (inference)": len(queries) / dq,
        "peak RSS (MiB)": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "threads": str(torch.get_num_threads()),
    }
    if torch.cuda.is_available():
        out["peak CUDA (MiB)"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def run_one(
    mode: str, args: argparse.Namespace, threads: int | str | None, env: dict[str, str], busy: bool
) -> dict[str, float | str]:
    cmd = [sys.executable, "-m", "bench.train", "--one", mode, "--steps", str(args.steps), "--batch", str(args.batch)]
    if threads is not None:
        cmd += ["--threads", str(threads)]
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
    time.sleep(1.0 if busy else 0.0)  # the other work is running before this run starts
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, check=True, env={**os.environ, **env})
    finally:
        if spinner is not None:
            spinner.kill()
    row: dict[str, float | str] = json.loads(proc.stdout.strip().splitlines()[-1])
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--one", choices=MODES, help=argparse.SUPPRESS)
    ap.add_argument("--out", default="bench/results/train.md")
    args = parse_args(ap)
    if args.one:
        print(json.dumps(one(args.one, args.steps, args.batch, args.threads)))
        return
    con = Console(stderr=True)
    rows = [run_one(mode, args, None, {}, False) for mode in MODES]
    base = float(rows[0]["steps/s"])
    for r in rows:
        r["ratio to hand prompt"] = float(r["steps/s"]) / base
    modes_table = markdown_table(
        rows, ["prompt", "steps/s", "samples/s", "ratio to hand prompt", "peak RSS (MiB)", "threads"]
    )
    con.print(modes_table)
    trows: list[dict[str, float | str]] = []
    for busy in (False, True):
        for name, (threads, env) in THREADS.items():
            r = run_one("coop", args, threads, env, busy)
            trows.append({"setting": name, "machine": "one core busy" if busy else "idle", **r})
    base_t, base_q = float(trows[0]["steps/s"]), float(trows[0]["queries/s (inference)"])
    for r in trows:
        r["train ratio"] = float(r["steps/s"]) / base_t
        r["inference ratio"] = float(r["queries/s (inference)"]) / base_q
    threads_table = markdown_table(
        trows, ["setting", "machine", "threads", "steps/s", "train ratio", "queries/s (inference)", "inference ratio"]
    )
    con.print(threads_table)
    text = header("Localizer training throughput and thread settings", "python -m bench.train", args.code_version)
    text += (
        f"Synthetic task of recipes/tiny_cpu.yaml (d_model 64, 1 layer, 3 levels, 4 context vectors), batch "
        f"{args.batch}, {args.steps} timed steps after 3 warm-up steps, then inference on 40 eval videos; real "
        "MiniLM text tower (frozen), CPU fp32. No GPU was lent to this session, so there is no GPU row.\n\n"
        "Prompt modes (torch's default threads, idle machine):\n\n"
        + modes_table
        + "\nThread settings (CoOp). pseudo's default is `auto` (`pseudo --threads`, `$PSEUDO_THREADS`): one "
        "torch thread per core that other work leaves free when the command starts.\n\n" + threads_table
    )
    Path(args.out).write_text(text)


if __name__ == "__main__":
    run_bench(main)

"""The per-video stages on the local engine and on Ray (1 and 2 workers), in one run.

    python -m bench.scale [--videos 200]

The bundled demo videos (MiniGPT-v2 caption tracks of 200 QVHighlights val videos): caption features
with the real MiniLM, then self-similarity proposals, each configuration in its own process and
store. The table gives videos per second per stage, Ray's start-up, the ratio of each row to the
local path, and whether the outputs equal the local path's bit for bit. On this 2-core machine the
local path runs with torch's default threads (one per core: what pseudo's automatic setting picks on
an idle machine), and once more with one thread, the setting of each Ray worker (Ray gives a 1-CPU
actor one thread).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench._common import header, parse_args, run_bench
from pseudo.console import markdown_table, stderr_console
from pseudo.io import atomic_write_json, atomic_write_text

CONFIGS = {"local": None, "local, 1 thread": None, "ray, 1 worker": 1, "ray, 2 workers": 2}


def demo_captions() -> Path:
    import pseudo

    return Path(pseudo.__file__).parent / "assets" / "demo" / "qvhighlights_val_videos"


def one(name: str, n_videos: int, out: Path) -> dict[str, Any]:
    """One configuration, timed: caption features, then proposals."""
    from proposals import ProposalConfig
    from pseudo.data.benchmarks import load_qvh_jsonl
    from pseudo.data.store import FeatureStore
    from pseudo.stages.features import build_caption_features, caption_features_config
    from pseudo.stages.per_video import Engine
    from pseudo.stages.proposals import run_proposals

    workers = CONFIGS[name]
    engine = None
    started = 0.0
    if workers is not None:
        import ray

        t = time.perf_counter()
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        started = time.perf_counter() - t
        engine = Engine(name="ray", workers=workers)
    demo = demo_captions()
    gt = load_qvh_jsonl([demo / "gt.jsonl"])
    durations = {q.vid: q.duration for q in gt}
    vids = sorted(durations)[:n_videos]
    cfg = caption_features_config(demo / "captions.zip")
    t = time.perf_counter()
    summary = build_caption_features(cfg, out / "store", vids=vids, durations=durations, engine=engine)
    features_s = time.perf_counter() - t
    t = time.perf_counter()
    psum = run_proposals(FeatureStore.load(out / "store"), ProposalConfig(), out / "proposals.jsonl", engine=engine)
    proposals_s = time.perf_counter() - t
    return {
        "videos": len(summary.done),
        "captions": int(sum(FeatureStore.load(out / "store").get(v).features.shape[0] for v in vids)),
        "ray start s": started,
        "features s": features_s,
        "proposals s": proposals_s,
        "failed": len(summary.failed) + len(psum.failed),
    }


def decode_rate(repeats: int = 3) -> dict[str, float]:
    """Seconds of real video (the Charades clip) decoded and sampled at 1 fps, 224 px, per wall second
    on one core."""
    import torch

    from pseudo.data.paths import find_data_root
    from pseudo.video import SamplingConfig, probe_video, sample_frames

    torch.set_num_threads(1)
    path = find_data_root() / "samples" / "univtg" / "charades.mp4"
    duration = probe_video(path).duration
    t = time.perf_counter()
    for _ in range(repeats):
        frames = sample_frames(path, SamplingConfig(fps=1.0, max_side=224)).frames
    dt = (time.perf_counter() - t) / repeats
    return {"video s": duration, "frames": float(len(frames)), "decode s": dt, "video s per s": duration / dt}


def store_costs(n: int, root: Path) -> dict[str, float]:
    """Per-video costs of the store at ``n`` videos: a write, the done-check, and a full listing."""
    from pseudo.data.store import FeatureStore, VideoFeatures
    from pseudo.stages.features import caption_features_config

    store = FeatureStore.open(root, caption_features_config(demo_captions() / "captions.zip"))
    feats = np.zeros((4, 8), np.float32)
    t = time.perf_counter()
    for i in range(n):
        store.put(VideoFeatures(f"v{i:07d}", feats, np.arange(4.0), 4.0))
    put = time.perf_counter() - t
    t = time.perf_counter()
    done = sum(store.has(f"v{i:07d}") for i in range(n))
    has = time.perf_counter() - t
    t = time.perf_counter()
    listed = len(store.vids())
    listing = time.perf_counter() - t
    assert done == listed == n
    return {
        "videos": float(n),
        "put ms": 1e3 * put / n,
        "done-check ms": 1e3 * has / n,
        "listing ms": 1e3 * listing / n,
    }


def same_outputs(a: Path, b: Path) -> bool:
    from pseudo.data.store import FeatureStore

    sa, sb = FeatureStore.load(a / "store"), FeatureStore.load(b / "store")
    if sa.vids() != sb.vids():
        return False
    for vid in sa.vids():
        with np.load(sa.path(vid)) as za, np.load(sb.path(vid)) as zb:
            if za["features"].tobytes() != zb["features"].tobytes():
                return False
    return (a / "proposals.jsonl").read_bytes() == (b / "proposals.jsonl").read_bytes()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--videos", type=int, default=200)
    ap.add_argument("--one", nargs=2, help=argparse.SUPPRESS)
    ap.add_argument("--store-videos", type=int, default=20000, help="videos for the store's per-video costs")
    ap.add_argument("--out", default="bench/results/scale_measured.md")
    args = parse_args(ap)
    if args.one:
        print(json.dumps(one(args.one[0], args.videos, Path(args.one[1]))))
        return
    con = stderr_console()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in CONFIGS:
            out = Path(tmp) / name.replace(" ", "_").replace(",", "")
            cmd = [sys.executable, "-m", "bench.scale", "--videos", str(args.videos), "--one", name, str(out)]
            env = {**os.environ, **({"PSEUDO_THREADS": "1", "OMP_NUM_THREADS": "1"} if "1 thread" in name else {})}
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if proc.returncode != 0:
                raise SystemExit(f"{name} failed:\n{proc.stderr[-3000:]}")
            row = {"engine": name, **json.loads(proc.stdout.strip().splitlines()[-1])}
            row["identical to local"] = "yes" if same_outputs(Path(tmp) / "local", out) else "NO"
            rows.append(row)
            con.print(row)
        costs = store_costs(args.store_videos, Path(tmp) / "costs")
    decode = decode_rate()
    con.print(costs, decode)
    base = rows[0]
    for r in rows:
        r["features videos/s"] = r["videos"] / r["features s"]
        r["proposals videos/s"] = r["videos"] / r["proposals s"]
        r["features ratio to local"] = base["features s"] / r["features s"]
        r["proposals ratio to local"] = base["proposals s"] / r["proposals s"]
    cols = ["engine", "videos", "captions", "ray start s", "features s", "features videos/s",
            "features ratio to local", "proposals s", "proposals videos/s", "proposals ratio to local", "failed",
            "identical to local"]  # fmt: skip
    table = markdown_table(rows, cols)
    con.print(table)
    local1, one_w, two = rows[1], rows[2], rows[3]
    text = header(
        "Per-video stages: local against Ray", f"python -m bench.scale --videos {args.videos}", args.code_version
    )
    text += (
        f"The {args.videos} bundled demo videos' caption tracks (real MiniLM, CPU fp32): caption features, then "
        "proposals (default settings), each configuration in its own process and store, one after another on "
        "the same otherwise idle machine. Ray runs a local instance with 2 CPUs; its start-up is its own column "
        "and not in the stage times.\n\n" + table + "\n"
        f"Ray's overhead: 1 worker (one thread) runs features at {local1['features s'] / one_w['features s']:.2f}x "
        f"and proposals at {local1['proposals s'] / one_w['proposals s']:.2f}x the speed of the local path with "
        f"one thread (and {base['features s'] / one_w['features s']:.2f}x / "
        f"{base['proposals s'] / one_w['proposals s']:.2f}x that of the local path with torch's default threads). "
        f"Speed-up from 2 workers over 1: features {one_w['features s'] / two['features s']:.2f}x, "
        f"proposals {one_w['proposals s'] / two['proposals s']:.2f}x.\n"
    )
    text += (
        f"\nThe store at {args.store_videos} videos (local disk; one tiny .npz each, 256 subfolders), per "
        "video:\n\n"
        + markdown_table([costs], list(costs))
        + "\nDecoding and sampling the real Charades clip (`samples/univtg/charades.mp4`) at 1 fps, 224 px, "
        "one thread:\n\n" + markdown_table([decode], list(decode))
    )
    atomic_write_text(Path(args.out), text)
    atomic_write_json(
        Path(args.out).with_suffix(".json"), {"videos": args.videos, "rows": rows, "store": costs, "decode": decode}
    )


if __name__ == "__main__":
    run_bench(main)

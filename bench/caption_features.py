"""Caption-track features: the old embedding path against the current one, in one run.

    python -m bench.caption_features [--videos 150] [--threads 1 2]

Both embed the MiniGPT-v2 captions of the same QVHighlights val videos with the real MiniLM:

* old path (the previous release): one video at a time, captions in file order, batches of 256
  padded to their longest caption, every caption embedded even when it repeats;
* new path (:class:`pseudo.stages.features.CaptionFeaturesTask`): 32 videos per pass, each distinct
  caption embedded once (remembered across passes, up to 50,000), batches of up to 64 captions of one
  token count (no padding, no attention mask), run side by side as one lane more than torch's threads,
  each lane on one thread (:func:`pseudo.backbones.base.map_in_lanes`).

``--videos 0`` takes every val video (the whole split, as the features stage embeds it).

The table gives captions per second, the speed-up as a ratio to the old path, and the largest
difference between the two paths' embeddings (the outputs are the same up to float rounding).
Each row runs in its own process, so torch's thread setting is its own.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from bench._common import header, machine, parse_args, run_bench
from pseudo.console import markdown_table, stderr_console
from pseudo.io import atomic_write_json, atomic_write_text


def _texts(n_videos: int) -> list[list[str]]:
    from pseudo.data.captions import ExternalCaptions
    from pseudo.data.paths import find_data_root

    track = ExternalCaptions(find_data_root() / "qvhighlights" / "vtggpt_captions" / "val.zip")
    vids = track.vids()
    return [[c.text for c in track.captions(v)] for v in (vids[:n_videos] if n_videos else vids)]


def old_path(videos: list[list[str]]) -> tuple[np.ndarray, int]:
    """The previous release's loop: per video, unsorted, batch 256, no de-duplication."""
    import torch

    from pseudo.backbones.base import l2_normalise
    from pseudo.backbones.sentence import load_sentence_model

    model, tok = load_sentence_model("minilm")
    model.eval()
    out = []
    with torch.inference_mode():
        for texts in videos:
            for i in range(0, len(texts), 256):
                t = tok(texts[i : i + 256], padding=True, truncation=True, max_length=128, return_tensors="pt")
                hidden = model(**t).last_hidden_state
                mask = t["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                out.append(l2_normalise((hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)))
    return np.concatenate(out), sum(len(v) for v in videos)


def new_path(videos: list[list[str]]) -> tuple[np.ndarray, int]:
    from pseudo.backbones.memo import TextMemo
    from pseudo.stages.features import CAPTION_BATCH_VIDEOS, CAPTION_MEMO_TEXTS, DEFAULT_ENCODER

    enc = TextMemo(DEFAULT_ENCODER, max_texts=CAPTION_MEMO_TEXTS)
    out = []
    for lo in range(0, len(videos), CAPTION_BATCH_VIDEOS):
        out.append(enc.encode_texts([t for v in videos[lo : lo + CAPTION_BATCH_VIDEOS] for t in v]))
    return np.concatenate(out), enc.encoded


def one(path: str, n_videos: int, threads: int, save: Path) -> dict[str, float | str]:
    import torch

    torch.set_num_threads(threads)
    videos = _texts(n_videos)
    fn = old_path if path == "old" else new_path
    warm = [[f"warm-up {i}" for i in range(8)]]  # model load and warm-up, on texts no video has
    fn(warm)
    t = time.perf_counter()
    emb, embedded = fn(videos)
    dt = time.perf_counter() - t
    np.save(save, emb)
    n = sum(len(v) for v in videos)
    return {
        "path": path,
        "threads": str(threads),
        "videos": float(len(videos)),
        "captions": float(n),
        "embedded": float(embedded),
        "seconds": dt,
        "captions/s": n / dt,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--videos", type=int, default=150)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--one", nargs=3, help=argparse.SUPPRESS)
    ap.add_argument("--out", default="bench/results/caption_features.md")
    args = parse_args(ap)
    if args.one:
        path, threads, save = args.one
        print(json.dumps(one(path, args.videos, int(threads), Path(save))))
        return
    import tempfile

    rows: list[dict[str, float | str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for path in ("old", "new"):
            for threads in args.threads:
                save = Path(tmp) / f"{path}{threads}.npy"
                cmd = [sys.executable, "-m", "bench.caption_features", "--videos", str(args.videos),
                       "--one", path, str(threads), str(save)]  # fmt: skip
                proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
                row = json.loads(proc.stdout.strip().splitlines()[-1])
                row["max |difference| to old"] = float(
                    np.abs(np.load(save) - np.load(Path(tmp) / f"old{args.threads[0]}.npy")).max()
                )
                rows.append(row)
    base = max(float(r["captions/s"]) for r in rows if r["path"] == "old")
    for r in rows:
        r["ratio to old (fastest old)"] = float(r["captions/s"]) / base
    cols = [
        "path",
        "threads",
        "videos",
        "captions",
        "embedded",
        "seconds",
        "captions/s",
        "ratio to old (fastest old)",
        "max |difference| to old",
    ]
    table = markdown_table(rows, cols)
    stderr_console().print(table)
    threads = " ".join(map(str, args.threads))
    command = f"python -m bench.caption_features --videos {args.videos} --threads {threads}"
    text = header("Caption-track features: old path against new", command, args.code_version)
    which = f"the first {args.videos}" if args.videos else "all the"
    text += (
        f"MiniGPT-v2 captions of {which} QVHighlights val videos (sorted ids), real MiniLM (all-MiniLM-L6-v2), "
        "CPU fp32; each row in its own process after a warm-up on 8 texts no video has. `embedded`: captions "
        "that went through the model.\n\n" + table
    )
    atomic_write_text(Path(args.out), text)
    new = [r for r in rows if r["path"] == "new"]
    atomic_write_json(
        Path(args.out).with_suffix(".json"),
        {
            "speedup": round(max(float(r["ratio to old (fastest old)"]) for r in new), 2),
            "max_abs_difference": max(float(r["max |difference| to old"]) for r in new),
            "videos": int(rows[0]["videos"]),
            "captions": int(rows[0]["captions"]),
            "rows": rows,
            "command": command,
            "machine": machine(),
            "code_version": args.code_version,
        },
    )


if __name__ == "__main__":
    run_bench(main)

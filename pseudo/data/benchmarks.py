"""Loaders for the five benchmarks' own annotation files, registered by name.

Each turns its source format into :class:`Query` records with windows in seconds:

* ``charades_sta``: ``VID start end##sentence`` lines, durations from the Charades CSVs; windows
  are clipped to the duration (562 test lines end past it);
* ``activitynet``: the original ``{vid: {duration, timestamps, sentences}}`` json;
* ``qvhighlights`` (and ``jsonl`` for any file in that schema): JSON Lines with ``relevant_windows``;
* ``tacos``: 2D-TAN json with frame indices, converted with each video's fps;
* ``didemo``: 5-second segment indices from several annotators.
"""

from __future__ import annotations

import csv
import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pseudo.data.registry import DatasetSpec, register_dataset
from pseudo.errors import DataFormatError
from pseudo.io import iter_jsonl, read_json
from pseudo.records import Query


def _num(value: Any, path: Path, what: str, line: int | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise DataFormatError(path, f"{what} must be a number, got {value!r}", line)
    try:
        x = float(value)
    except ValueError:
        raise DataFormatError(path, f"{what} must be a number, got {value!r}", line) from None
    if not math.isfinite(x):
        raise DataFormatError(path, f"{what} is not finite: {value!r}", line)
    return x


def _clip(start: float, end: float, duration: float) -> tuple[float, float]:
    return (min(max(start, 0.0), duration), min(max(end, 0.0), duration))


# --- Charades-STA -------------------------------------------------------------------------------


def read_charades_durations(path: Path) -> dict[str, float]:
    out: dict[str, float] = {}
    with path.open(encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None or not {"id", "length"} <= set(reader.fieldnames):
            raise DataFormatError(path, "expected a Charades CSV with columns 'id' and 'length'", 1)
        for i, row in enumerate(reader, start=2):
            out[row["id"]] = _num(row["length"], path, "length", i)
    return out


def load_charades_sta(paths: Sequence[Path]) -> list[Query]:
    """``paths``: the STA txt, then one or more Charades CSVs giving durations."""
    txt, *csvs = paths
    if not csvs:
        raise DataFormatError(txt, "Charades-STA needs the Charades CSV(s) for video durations")
    durations: dict[str, float] = {}
    for c in csvs:
        durations.update(read_charades_durations(c))
    out: list[Query] = []
    with txt.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            head, sep, sentence = line.rstrip("\n").partition("##")
            parts = head.split()
            if not sep or len(parts) != 3 or not sentence.strip():
                raise DataFormatError(txt, "expected 'VID start end##sentence'", lineno)
            vid = parts[0]
            start = _num(parts[1], txt, "start", lineno)
            end = _num(parts[2], txt, "end", lineno)
            if vid not in durations:
                raise DataFormatError(txt, f"video {vid} has no duration in {', '.join(map(str, csvs))}", lineno)
            duration = durations[vid]
            window = _clip(min(start, end), max(start, end), duration)  # 1 train line is reversed
            meta: dict[str, Any] = {}
            if window != (start, end):
                meta["raw_window"] = [start, end]
            out.append(Query(len(out), vid, duration, sentence.strip(), (window,), meta=meta))
    return out


# --- ActivityNet Captions -----------------------------------------------------------------------


def load_activitynet(paths: Sequence[Path]) -> list[Query]:
    (path,) = paths
    data = read_json(path)
    if not isinstance(data, dict):
        raise DataFormatError(path, "expected {video_id: {duration, timestamps, sentences}}")
    out: list[Query] = []
    for vid, rec in data.items():
        if not isinstance(rec, dict) or not {"duration", "timestamps", "sentences"} <= rec.keys():
            raise DataFormatError(path, f"video {vid!r} needs 'duration', 'timestamps' and 'sentences'")
        duration = _num(rec["duration"], path, f"{vid}.duration")
        stamps, sents = rec["timestamps"], rec["sentences"]
        if len(stamps) != len(sents):
            raise DataFormatError(path, f"video {vid!r} has {len(stamps)} timestamps but {len(sents)} sentences")
        for j, (ts, sent) in enumerate(zip(stamps, sents, strict=True)):
            if not isinstance(ts, list) or len(ts) != 2:
                raise DataFormatError(path, f"video {vid!r} timestamp {j} must be [start, end], got {ts!r}")
            s = _num(ts[0], path, f"{vid}.timestamps[{j}][0]")
            e = _num(ts[1], path, f"{vid}.timestamps[{j}][1]")
            lo, hi = min(s, e), max(s, e)
            window = _clip(lo, hi, duration)
            meta: dict[str, Any] = {} if window == (s, e) else {"raw_window": [s, e]}
            out.append(Query(f"{vid}_{j}", vid, duration, str(sent).strip(), (window,), meta=meta))
    return out


# --- QVHighlights-style JSON Lines ---------------------------------------------------------------

_QVH_EXTRA = ("relevant_clip_ids", "saliency_scores")


def load_qvh_jsonl(paths: Sequence[Path]) -> list[Query]:
    out: list[Query] = []
    for path in paths:
        for lineno, rec in iter_jsonl(path):
            missing = [k for k in ("qid", "vid", "query", "duration") if k not in rec]
            if missing:
                raise DataFormatError(path, f"missing field(s) {', '.join(missing)}", lineno)
            duration = _num(rec["duration"], path, "duration", lineno)
            windows: list[tuple[float, float]] = []
            for w in rec.get("relevant_windows") or []:
                if not isinstance(w, list) or len(w) != 2:
                    raise DataFormatError(path, f"relevant_windows entries must be [start, end], got {w!r}", lineno)
                s, e = _num(w[0], path, "window start", lineno), _num(w[1], path, "window end", lineno)
                if e < s:
                    raise DataFormatError(path, f"window [{s}, {e}] ends before it starts", lineno)
                windows.append((s, e))
            meta = {k: rec[k] for k in _QVH_EXTRA if k in rec}
            source = rec.get("source", "gt")
            if source not in ("gt", "pseudo", "weak"):
                raise DataFormatError(path, f"source must be gt, pseudo or weak, got {source!r}", lineno)
            for k, v in rec.items():
                if k not in ("qid", "vid", "query", "duration", "relevant_windows", "source", *_QVH_EXTRA):
                    meta[k] = v
            out.append(Query(rec["qid"], str(rec["vid"]), duration, str(rec["query"]), tuple(windows), source, meta))
    return out


# --- TACoS --------------------------------------------------------------------------------------


def load_tacos(paths: Sequence[Path]) -> list[Query]:
    (path,) = paths
    data = read_json(path)
    if not isinstance(data, dict):
        raise DataFormatError(path, "expected {video: {timestamps, sentences, fps, num_frames}}")
    out: list[Query] = []
    for key, rec in data.items():
        if not isinstance(rec, dict) or not {"timestamps", "sentences", "fps", "num_frames"} <= rec.keys():
            raise DataFormatError(path, f"video {key!r} needs 'timestamps', 'sentences', 'fps' and 'num_frames'")
        vid = key[:-4] if key.endswith(".avi") else key
        fps = _num(rec["fps"], path, f"{key}.fps")
        if fps <= 0:
            raise DataFormatError(path, f"video {key!r} has fps {fps}")
        duration = _num(rec["num_frames"], path, f"{key}.num_frames") / fps
        if len(rec["timestamps"]) != len(rec["sentences"]):
            raise DataFormatError(path, f"video {key!r}: timestamps and sentences differ in length")
        for j, (ts, sent) in enumerate(zip(rec["timestamps"], rec["sentences"], strict=True)):
            s = _num(ts[0], path, f"{key}.timestamps[{j}][0]") / fps
            e = _num(ts[1], path, f"{key}.timestamps[{j}][1]") / fps
            window = _clip(min(s, e), max(s, e), duration)
            out.append(Query(f"{vid}_{j}", vid, duration, str(sent).strip(), (window,), meta={"fps": fps}))
    return out


# --- DiDeMo -------------------------------------------------------------------------------------

DIDEMO_SEGMENT = 5.0


def load_didemo(paths: Sequence[Path]) -> list[Query]:
    """Windows are the distinct annotator spans, most agreed first; duration is
    ``num_segments * 5`` (the true length is not in the files, so this is an upper bound)."""
    (path,) = paths
    data = read_json(path)
    if not isinstance(data, list):
        raise DataFormatError(path, "expected a list of {video, description, times, num_segments, annotation_id}")
    out: list[Query] = []
    for i, rec in enumerate(data):
        if not isinstance(rec, dict) or not {"video", "description", "times", "num_segments"} <= rec.keys():
            raise DataFormatError(path, f"item {i} needs 'video', 'description', 'times' and 'num_segments'")
        n_seg = int(_num(rec["num_segments"], path, f"item {i} num_segments"))
        duration = n_seg * DIDEMO_SEGMENT
        counts: Counter[tuple[int, int]] = Counter()
        for t in rec["times"]:
            if not isinstance(t, list) or len(t) != 2 or not 0 <= t[0] <= t[1] < max(n_seg, 6):
                raise DataFormatError(path, f"item {i}: segment pair {t!r} is not [first, last] within 0..{n_seg - 1}")
            counts[(int(t[0]), int(t[1]))] += 1
        ordered = sorted(counts, key=lambda t: -counts[t])  # stable: ties keep first-seen order
        windows = tuple(_clip(a * DIDEMO_SEGMENT, (b + 1) * DIDEMO_SEGMENT, duration) for a, b in ordered)
        qid = rec.get("annotation_id", i)
        meta = {"times": rec["times"], "num_segments": n_seg}
        out.append(Query(qid, str(rec["video"]), duration, str(rec["description"]).strip(), windows, meta=meta))
    return out


# --- registrations ------------------------------------------------------------------------------

_CHARADES_CSVS = ("charades_sta/Charades_v1_train.csv", "charades_sta/Charades_v1_test.csv")

register_dataset(
    DatasetSpec(
        name="charades_sta",
        loader=load_charades_sta,
        splits={
            "train": ("charades_sta/charades_sta_train.txt", *_CHARADES_CSVS),
            "test": ("charades_sta/charades_sta_test.txt", *_CHARADES_CSVS),
        },
        description="Charades-STA (Gao et al. 2017): 2D-TAN txt files, durations from the Charades CSVs",
        train_split="train",
        test_split="test",
    )
)
register_dataset(
    DatasetSpec(
        name="activitynet",
        loader=load_activitynet,
        splits={
            "train": ("activitynet_captions/train.json",),
            "val_1": ("activitynet_captions/val_1.json",),
            "val_2": ("activitynet_captions/val_2.json",),
        },
        aliases={"val": "val_1", "test": "val_2"},
        description="ActivityNet Captions (Krishna et al. 2017); val_2 is the test split zero-shot papers report",
        train_split="train",
        test_split="val_2",
    )
)
register_dataset(
    DatasetSpec(
        name="qvhighlights",
        loader=load_qvh_jsonl,
        splits={
            "train": ("qvhighlights/highlight_train_release.jsonl",),
            "val": ("qvhighlights/highlight_val_release.jsonl",),
            "test": ("qvhighlights/highlight_test_with_gt.jsonl",),
            "test_nogt": ("qvhighlights/highlight_test_release.jsonl",),
        },
        description="QVHighlights (Lei et al. 2021); test uses the GT the authors released later",
        train_split="train",
        test_split="test",
    )
)
register_dataset(
    DatasetSpec(
        name="jsonl",
        loader=load_qvh_jsonl,
        splits={"custom": ()},
        description="any QVHighlights-style JSON Lines file (lighthouse, Moment-DETR, pseudo-labels); give --gt",
    )
)
register_dataset(
    DatasetSpec(
        name="tacos",
        loader=load_tacos,
        splits={"train": ("tacos/train.json",), "val": ("tacos/val.json",), "test": ("tacos/test.json",)},
        description="TACoS (Regneri et al. 2013), 2D-TAN split; frames converted to seconds with each video's fps",
        train_split="train",
        test_split="test",
    )
)
register_dataset(
    DatasetSpec(
        name="didemo",
        loader=load_didemo,
        splits={"val": ("didemo/val_data.json",), "test": ("didemo/test_data.json",)},
        description="DiDeMo (Hendricks et al. 2017): 5-s segments, several annotators (no train file here)",
        train_split="val",
        test_split="test",
    )
)

"""Inference: ranked windows in seconds for queries on videos with frozen step features.

Videos longer than ``max_len`` steps are scanned with windows of ``max_len`` steps overlapping by
half; the candidates of all windows are merged with soft-NMS.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from pseudo.data.records import Prediction, Query
from pseudo.errors import PseudoError
from trainers.config import DecodeConfig
from trainers.data import Batch, FeatureCache, Sample, collate
from trainers.decode import decode, snap_to_events, soft_nms
from trainers.model import MomentLocalizer


def chunks(t: int, max_len: int) -> list[int]:
    """Start steps of the windows that cover ``t`` steps (half overlap; the last one ends at ``t``)."""
    if t <= max_len:
        return [0]
    stride = max(1, max_len // 2)
    starts = list(range(0, t - max_len + 1, stride))
    if starts[-1] != t - max_len:
        starts.append(t - max_len)
    return starts


def load_events(dc: DecodeConfig, proposals: str | Path | None, what: str) -> dict[str, np.ndarray] | None:
    """Event boundaries per video from a proposals JSONL, when the decode settings snap to them."""
    if not dc.event_snap_seconds:
        return None
    if proposals is None:
        raise PseudoError(
            f"decode.event_snap_seconds is {dc.event_snap_seconds:g} but no proposals of the {what} videos were "
            "given: pass their proposals JSONL (`pseudo predict --proposals FILE`, data.eval_proposals), or set "
            "decode.event_snap_seconds to 0"
        )
    from pseudo.proposal_stage import event_boundaries, read_proposals

    return event_boundaries(read_proposals(proposals))


@torch.inference_mode()
def predict(
    model: MomentLocalizer,
    queries: Sequence[Query],
    cache: FeatureCache,
    max_len: int,
    top_k: int = 10,
    batch_size: int = 64,
    device: torch.device | None = None,
    decoding: DecodeConfig | None = None,
    events: Mapping[str, np.ndarray] | None = None,
) -> list[Prediction]:
    """Up to ``top_k`` ranked windows per query. ``events`` (event boundaries in seconds per video,
    see :func:`pseudo.proposal_stage.event_boundaries`) are used when ``decoding.event_snap_seconds``
    is set; videos without an entry are left unsnapped."""
    dc = decoding or DecodeConfig()
    device = device or next(p for p in model.parameters()).device
    was_training = model.training
    model.eval()
    items: list[tuple[int, Sample]] = []
    for i, q in enumerate(queries):
        grid = cache.get(q.vid)
        feats, sps = grid.features, grid.step
        if feats.shape[1] != model.video_dim:
            raise PseudoError(
                f"the features of video {q.vid!r} have {feats.shape[1]} dimensions, but this localizer was trained "
                f"on {model.video_dim}-dimensional features; give features made with the same settings as its "
                "training features (the run's config.yaml names them under data.features)"
            )
        for start in chunks(len(feats), max_len):
            part = feats[start : start + max_len]
            items.append((i, Sample(str(q.qid), q.vid, q.query, part, np.zeros((0, 2)), sps, grid.start + start * sps)))
    found: list[list[tuple[float, float, float]]] = [[] for _ in queries]
    n_chunks = [0] * len(queries)
    for lo in range(0, len(items), batch_size):
        group = items[lo : lo + batch_size]
        batch: Batch = collate([s for _, s in group]).to(device)
        out = model(batch.video, batch.mask, batch.texts)
        decoded = decode(out, top_k=max(top_k, 20), pre_nms=dc.pre_nms, sigma=dc.sigma, snap=dc.snap_to_steps)
        for (i, s), wins in zip(group, decoded, strict=True):
            n_chunks[i] += 1
            found[i].extend(
                (s.offset_seconds + a * s.seconds_per_step, s.offset_seconds + b * s.seconds_per_step, c)
                for a, b, c in wins
            )
    preds = []
    for q, wins, n in zip(queries, found, n_chunks, strict=True):
        arr = np.array(wins, dtype=np.float64).reshape(-1, 3)
        if n > 1 and len(arr):
            arr = soft_nms(arr, dc.sigma)
        arr = arr[np.argsort(-arr[:, 2], kind="stable")]
        if dc.event_snap_seconds and events is not None and q.vid in events:
            arr = snap_to_events(arr, events[q.vid], dc.event_snap_seconds)
        arr = arr[:top_k]
        windows = tuple((float(a), float(min(b, q.duration)), float(c)) for a, b, c in arr)
        preds.append(Prediction(q.qid, q.vid, windows, q.query))
    model.train(was_training)
    return preds

"""Inference: ranked windows in seconds for queries on videos with frozen step features.

Videos longer than ``max_len`` steps are scanned with windows of ``max_len`` steps overlapping by
half; the candidates of all windows are merged with soft-NMS.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from pseudo.data.records import Prediction, Query
from trainers.data import Batch, FeatureCache, Sample, collate
from trainers.decode import decode, soft_nms
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


@torch.inference_mode()
def predict(
    model: MomentLocalizer,
    queries: Sequence[Query],
    cache: FeatureCache,
    max_len: int,
    top_k: int = 10,
    batch_size: int = 64,
    device: torch.device | None = None,
) -> list[Prediction]:
    device = device or next(p for p in model.parameters()).device
    was_training = model.training
    model.eval()
    items: list[tuple[int, Sample]] = []
    for i, q in enumerate(queries):
        feats, duration = cache.get(q.vid)
        sps = duration / len(feats)
        for start in chunks(len(feats), max_len):
            part = feats[start : start + max_len]
            items.append((i, Sample(str(q.qid), q.vid, q.query, part, np.zeros((0, 2)), sps, start * sps)))
    found: list[list[tuple[float, float, float]]] = [[] for _ in queries]
    n_chunks = [0] * len(queries)
    for lo in range(0, len(items), batch_size):
        group = items[lo : lo + batch_size]
        batch: Batch = collate([s for _, s in group]).to(device)
        out = model(batch.video, batch.mask, batch.texts)
        for (i, s), wins in zip(group, decode(out, top_k=max(top_k, 20)), strict=True):
            n_chunks[i] += 1
            found[i].extend(
                (s.offset_seconds + a * s.seconds_per_step, s.offset_seconds + b * s.seconds_per_step, c)
                for a, b, c in wins
            )
    preds = []
    for q, wins, n in zip(queries, found, n_chunks, strict=True):
        arr = np.array(wins, dtype=np.float64).reshape(-1, 3)
        if n > 1 and len(arr):
            arr = soft_nms(arr)
        arr = arr[np.argsort(-arr[:, 2], kind="stable")][:top_k]
        windows = tuple((float(a), float(min(b, q.duration)), float(c)) for a, b, c in arr)
        preds.append(Prediction(q.qid, q.vid, windows, q.query))
    model.train(was_training)
    return preds

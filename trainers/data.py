"""Training and evaluation samples: a query, its video's frozen step features, its windows in steps.

Windows are converted from seconds to step units on the uniform grid of the video
(``step = t * T / duration``). Videos longer than ``max_len`` steps are cropped around the
moment when training (a random crop that contains it when it fits, resampled otherwise) and
scanned with overlapping windows at inference (see :mod:`trainers.infer`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
from numpy.typing import NDArray

from pseudo.data.store import FeatureSource
from pseudo.errors import PseudoError
from pseudo.records import Query
from pseudo.timeline import resample_linear


@dataclass
class Sample:
    qid: str
    vid: str
    text: str
    features: NDArray[np.float32]  # (T, D)
    windows: NDArray[np.float64]  # (G, 2) in steps of ``features``
    seconds_per_step: float
    offset_seconds: float = 0.0  # where step 0 starts in the video


@dataclass
class Batch:
    video: torch.Tensor  # (B, T, D)
    mask: torch.Tensor  # (B, T) bool
    texts: list[str]
    windows: list[torch.Tensor]  # (G_b, 2) steps
    samples: list[Sample]

    def to(self, device: torch.device) -> Batch:
        return Batch(
            self.video.to(device),
            self.mask.to(device),
            self.texts,
            [w.to(device) for w in self.windows],
            self.samples,
        )


@dataclass(frozen=True)
class StepFeatures:
    """A video's rows on a uniform step grid: row ``i`` spans ``start + [i, i + 1) * step`` seconds.

    The grid is where the rows really are (their timestamps), which need not be ``[0, duration]``:
    a truncated file or a sampling window covers less."""

    features: NDArray[np.float32]  # (T, D)
    start: float
    step: float
    duration: float


class FeatureCache:
    """Each video's features loaded once, with their step grid."""

    def __init__(self, source: FeatureSource) -> None:
        self.source = source
        self._feats: dict[str, StepFeatures] = {}

    def get(self, vid: str) -> StepFeatures:
        if vid not in self._feats:
            f = self.source.get(vid)
            b = f.boundaries()
            step = float(b[-1] - b[0]) / len(f.features)
            self._feats[vid] = StepFeatures(f.features.astype(np.float32), float(b[0]), step, float(f.duration))
        return self._feats[vid]


def style_text(q: Query, style: str) -> str:
    """The label's phrasing ``meta["query_<style>"]``; a style that came out empty for this label (such
    as a caption with no nouns) gives its own query."""
    text = q.meta.get(f"query_{style}")
    return text if isinstance(text, str) and text.strip() else q.query


def styled_text(q: Query, styles: Sequence[str], rng: np.random.Generator | None) -> str:
    """One of the label's phrasings (:func:`style_text`) drawn at random from ``styles`` (the label's
    own query without styles or rng)."""
    if not styles or rng is None:
        return q.query
    return style_text(q, styles[int(rng.integers(len(styles)))])


def training_texts(queries: Sequence[Query], styles: Sequence[str]) -> list[str]:
    """Every text :func:`styled_text` can draw for ``queries``, each once."""
    return list(dict.fromkeys([q.query for q in queries] + [style_text(q, s) for s in styles for q in queries]))


def check_query_styles(queries: Sequence[Query], styles: Sequence[str], labels: str) -> None:
    """Refuse labels that do not carry every asked-for style (e.g. made by an older version, or weak
    labels, which have only their real sentence)."""
    for style in styles:
        missing = sum(f"query_{style}" not in q.meta for q in queries)
        if missing:
            raise PseudoError(
                f"{missing} of the {len(queries)} labels in {labels} carry no 'query_{style}' phrasing, which "
                f"data.query_styles asks for; rebuild the labels with this version of pseudo, or remove {style!r} "
                "from data.query_styles"
            )


def make_sample(
    q: Query, cache: FeatureCache, max_len: int, rng: np.random.Generator | None, styles: Sequence[str] = ()
) -> Sample:
    """The training view of one query: windows in steps, long videos cropped (rng) or resampled, its
    text in one of ``styles`` (drawn with rng)."""
    grid = cache.get(q.vid)
    feats = grid.features
    t = len(feats)
    sps = grid.step
    windows = (np.array(q.windows, dtype=np.float64).reshape(-1, 2) - grid.start) / sps
    windows = np.clip(windows, 0, t)
    offset = 0
    if t > max_len:
        lo, hi = windows[:, 0].min(), windows[:, 1].max()
        if rng is not None and hi - lo <= max_len:
            first = int(np.clip(np.ceil(hi) - max_len, 0, t - max_len))
            last = int(np.clip(np.floor(lo), 0, t - max_len))
            offset = int(rng.integers(first, max(first, last) + 1))
            feats = feats[offset : offset + max_len]
            windows = np.clip(windows - offset, 0, max_len)
        else:
            feats = resample_linear(feats, max_len).astype(np.float32)
            windows = windows * max_len / t
            sps = sps * t / max_len
    text = styled_text(q, styles, rng)
    return Sample(str(q.qid), q.vid, text, feats, windows, sps, grid.start + offset * sps)


def hide_query_steps(sample: Sample, query: NDArray[np.floating], threshold: float) -> tuple[Sample, int]:
    """``sample`` with each step whose feature has cosine >= ``threshold`` with ``query`` (its text's
    plain embedding) given the feature of the nearest step below the threshold (the earlier one on a
    tie), and how many steps that hid. Nothing is hidden when every step is at or above it."""
    feats = sample.features
    norms = np.linalg.norm(feats, axis=1) * max(float(np.linalg.norm(query)), 1e-12)
    cos = (feats @ query.astype(feats.dtype)) / np.maximum(norms, 1e-12)
    hit = cos >= threshold
    n = int(hit.sum())
    if n == 0 or n == len(feats):
        return sample, 0
    keep = np.flatnonzero(~hit)
    nearest = keep[np.abs(np.arange(len(feats))[:, None] - keep[None, :]).argmin(axis=1)]
    return replace(sample, features=feats[nearest]), n


def collate(samples: Sequence[Sample]) -> Batch:
    t = max(len(s.features) for s in samples)
    d = samples[0].features.shape[1]
    video = torch.zeros(len(samples), t, d)
    mask = torch.zeros(len(samples), t, dtype=torch.bool)
    for i, s in enumerate(samples):
        video[i, : len(s.features)] = torch.from_numpy(s.features)
        mask[i, : len(s.features)] = True
    windows = [torch.as_tensor(s.windows, dtype=torch.float32) for s in samples]
    return Batch(video, mask, [s.text for s in samples], windows, list(samples))


def select_labels(
    queries: Sequence[Query],
    max_seconds: float | None = None,
    per_video: int | None = None,
    min_seconds: float | None = None,
) -> list[Query]:
    """Training labels from ``min_seconds`` to ``max_seconds`` long, and at most ``per_video`` per video:
    those with the best caption-selection score (``meta.provenance.selection_score``), else the first ones.
    The length of a label is its first window's (a pseudo-label's proposal; further windows are the
    other places where its query holds)."""
    kept = [
        q
        for q in queries
        if q.windows
        and (max_seconds is None or q.windows[0][1] - q.windows[0][0] <= max_seconds)
        and (min_seconds is None or q.windows[0][1] - q.windows[0][0] >= min_seconds)
    ]
    if per_video is None:
        return kept
    by_vid: dict[str, list[Query]] = {}
    for q in kept:
        by_vid.setdefault(q.vid, []).append(q)
    out: list[Query] = []
    for qs in by_vid.values():
        ranked = sorted(qs, key=lambda q: -float(q.meta.get("provenance", {}).get("selection_score", 0.0)))
        out.extend(ranked[:per_video])
    return out


def check_label_features(queries: Sequence[Query], cache: FeatureCache, labels: str, features: str) -> None:
    """Refuse labels made from other features than the ones training reads (their provenance records
    the features' hash; labels without one, e.g. hand-made files, are not checked)."""
    seen: set[str] = set()
    for q in queries:
        recorded = (
            q.meta.get("provenance", {}).get("features_hash") if isinstance(q.meta.get("provenance"), dict) else None
        )
        if not recorded or q.vid in seen:
            continue
        seen.add(q.vid)
        actual = cache.source.content_hash(q.vid)
        if recorded != actual:
            raise PseudoError(
                f"the labels in {labels} were made from other features than {features} (video {q.vid!r}: "
                f"labels from features {recorded}, data.features has {actual}); point data.features at the "
                "feature store the labels' proposals were made from"
            )


def usable(queries: Sequence[Query], source: FeatureSource) -> tuple[list[Query], int]:
    """Queries whose video has features and that have at least one non-empty window."""
    have = set(source.vids())
    keep = [q for q in queries if q.vid in have and any(e > s for s, e in q.windows)]
    if not keep:
        raise PseudoError("no training query has both features and a non-empty window; check the feature store")
    return keep, len(queries) - len(keep)

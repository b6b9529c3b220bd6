"""K-means over contextual (self-similarity row) features, with silhouette-chosen k."""

from __future__ import annotations

from typing import Literal

import numpy as np
import numpy.typing as npt
from sklearn.cluster import KMeans
from sklearn.metrics import silhouette_score

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]

#: rows equal after rounding to this many decimals count as one distinct row
DISTINCT_DECIMALS = 9


def distinct_rows(x: npt.ArrayLike, decimals: int = DISTINCT_DECIMALS) -> int:
    """How many different rows ``x`` has, up to rounding."""
    arr = np.asarray(x, dtype=np.float64)
    if arr.shape[0] == 0:
        return 0
    return int(np.unique(np.round(arr, decimals), axis=0).shape[0])


def relabel_by_first_appearance(labels: npt.ArrayLike) -> IntArray:
    """Labels renumbered 0, 1, 2, ... in order of first appearance (a canonical form)."""
    lab = np.asarray(labels)
    _, first, inverse = np.unique(lab, return_index=True, return_inverse=True)
    rank = np.empty(first.shape[0], dtype=np.intp)
    rank[np.argsort(first, kind="stable")] = np.arange(first.shape[0], dtype=np.intp)
    out: IntArray = rank[inverse.reshape(-1)]
    return out


def kmeans_labels(rows: FloatArray, k: int, seed: int) -> IntArray:
    km = KMeans(n_clusters=k, n_init=10, random_state=seed)
    return relabel_by_first_appearance(km.fit_predict(rows))


def auto_k_labels(rows: FloatArray, k_min: int, k_max: int, seed: int, max_clusters: int) -> IntArray:
    """The k-means labelling with the best silhouette score over k in [k_min, k_max].

    k is clipped to ``max_clusters`` (the number of distinct rows) and to T - 1, where the
    silhouette is defined; when no k >= 2 is possible every step gets label 0.
    """
    n = rows.shape[0]
    hi = min(k_max, max_clusters, n - 1)
    if hi < 2:
        return np.zeros(n, dtype=np.intp)
    lo = min(max(k_min, 2), hi)
    best_score = -np.inf
    best: IntArray = np.zeros(n, dtype=np.intp)
    for k in range(lo, hi + 1):
        labels = kmeans_labels(rows, k, seed)
        if np.unique(labels).shape[0] < 2:
            continue
        score = float(silhouette_score(rows, labels))
        if score > best_score + 1e-12:  # ties keep the smaller k
            best_score, best = score, labels
    return best


def cluster_steps(
    rows: npt.ArrayLike,
    num_clusters: int | Literal["auto"] = "auto",
    k_min: int = 2,
    k_max: int = 12,
    seed: int = 0,
    max_clusters: int | None = None,
) -> IntArray:
    """A cluster label per row (step), numbered in order of first appearance.

    ``max_clusters`` caps k from outside (e.g. the number of distinct input features); k is
    always capped by the number of distinct rows, so k-means never gets duplicate centres.
    """
    x = np.asarray(rows, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"rows must be a non-empty 2-D array, got shape {x.shape}")
    n = x.shape[0]
    cap = distinct_rows(x)
    if max_clusters is not None:
        cap = min(cap, max_clusters)
    if cap <= 1:
        return np.zeros(n, dtype=np.intp)
    if num_clusters == "auto":
        return auto_k_labels(x, k_min, k_max, seed, cap)
    if num_clusters < 1:
        raise ValueError(f"num_clusters must be >= 1 or 'auto', got {num_clusters}")
    k = min(num_clusters, cap)
    if k == 1:
        return np.zeros(n, dtype=np.intp)
    return kmeans_labels(x, k, seed)

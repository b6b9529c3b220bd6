"""Self-similarity matrices over the steps of a video, by registered name."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from pseudo.registry import Registry

FloatArray = npt.NDArray[np.float64]

#: ``fn(unit_rows, temperature) -> (T, T)`` where ``unit_rows`` are L2-normalised step features
SimilarityFn = Callable[[FloatArray, float], FloatArray]

SIMILARITIES: Registry[SimilarityFn] = Registry("similarity")


def l2_normalize(features: npt.ArrayLike, eps: float = 1e-12) -> FloatArray:
    """Rows scaled to unit length; all-zero rows stay zero."""
    x = np.asarray(features, dtype=np.float64)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    out: FloatArray = x / np.maximum(norms, eps)
    return out


@SIMILARITIES.register("cosine")
def cosine(unit: FloatArray, temperature: float) -> FloatArray:
    """Cosine similarity: symmetric, in [-1, 1], unit diagonal (``temperature`` is unused)."""
    s = unit @ unit.T
    s = 0.5 * (s + s.T)
    np.clip(s, -1.0, 1.0, out=s)
    np.fill_diagonal(s, 1.0)
    return s


@SIMILARITIES.register("euclidean_softmax")
def euclidean_softmax(unit: FloatArray, temperature: float) -> FloatArray:
    """Row softmax of ``-||x_i - x_j||^2 / temperature``: every row is a distribution over steps."""
    sq = np.sum(unit * unit, axis=1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2.0 * (unit @ unit.T), 0.0)
    logits = -d2 / temperature
    logits -= logits.max(axis=1, keepdims=True)
    e = np.exp(logits)
    out: FloatArray = e / e.sum(axis=1, keepdims=True)
    return out


def self_similarity(features: npt.ArrayLike, name: str = "cosine", temperature: float = 1.0) -> FloatArray:
    """The (T, T) self-similarity matrix of the L2-normalised rows of ``features``."""
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    fn = SIMILARITIES.get(name)
    return fn(l2_normalize(features), float(temperature))

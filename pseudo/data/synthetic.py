"""A small synthetic moment-retrieval task for smoke tests and the ``tiny_cpu`` recipe.

Each video is a few segments; each segment shows one concept (its feature is the concept's random
vector plus noise) and each query asks for one concept ("a person with a dog"), whose segment is
the answer. Videos have random lengths and segment layouts, so a position prior does poorly while
a model that reads the query does well.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pseudo.io import atomic_write_jsonl

CONCEPTS = (
    "a person with a dog",
    "someone cooking in the kitchen",
    "a car driving on a road",
    "people dancing at a party",
    "a man playing the guitar",
    "a woman swimming in a pool",
    "children playing football",
    "a cat sleeping on a sofa",
)


@dataclass(frozen=True)
class SyntheticPaths:
    features: Path
    train: Path
    eval: Path


def make_synthetic_dataset(
    out: str | Path,
    n_train: int = 160,
    n_eval: int = 40,
    dim: int = 32,
    seed: int = 0,
    noise: float = 0.6,
) -> SyntheticPaths:
    """Write ``features/<vid>.npy`` (1 s per step), ``train.jsonl`` (source: pseudo) and ``eval.jsonl``."""
    out = Path(out)
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(len(CONCEPTS), dim))
    feats_dir = out / "features"
    feats_dir.mkdir(parents=True, exist_ok=True)
    splits: dict[str, list[dict[str, object]]] = {"train": [], "eval": []}
    for i in range(n_train + n_eval):
        split = "train" if i < n_train else "eval"
        vid = f"{split}_{i:04d}"
        n_seg = int(rng.integers(3, 6))
        lengths = rng.integers(4, 16, size=n_seg)
        concepts = rng.choice(len(CONCEPTS), size=n_seg, replace=False)
        rows = np.concatenate([np.repeat(centres[c][None], n, axis=0) for c, n in zip(concepts, lengths, strict=True)])
        rows = rows + noise * rng.normal(size=rows.shape)
        np.save(feats_dir / f"{vid}.npy", rows.astype(np.float32))
        duration = float(len(rows))
        ends = np.cumsum(lengths)
        for j, (c, end, n) in enumerate(zip(concepts, ends, lengths, strict=True)):
            rec = {
                "qid": f"{vid}_{j}",
                "vid": vid,
                "query": CONCEPTS[c],
                "duration": duration,
                "relevant_windows": [[float(end - n), float(end)]],
            }
            if split == "train":
                rec["source"] = "pseudo"
            splits[split].append(rec)
    atomic_write_jsonl(out / "train.jsonl", splits["train"])
    atomic_write_jsonl(out / "eval.jsonl", splits["eval"])
    (out / "README.json").write_text(json.dumps({"seed": seed, "dim": dim, "noise": noise, "concepts": CONCEPTS}))
    return SyntheticPaths(feats_dir, out / "train.jsonl", out / "eval.jsonl")

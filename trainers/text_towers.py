"""Frozen text encoders that take input embeddings, so learned prompt vectors can be spliced in.

A tower tokenises, looks up word embeddings, and encodes a (possibly edited) embedding sequence.
Its own weights never train: they are frozen and the tower stays in eval mode even inside a
module that trains, but gradients flow through it back to the input embeddings (CoOp).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from functools import cache
from typing import Any, Self

import torch
from torch import Tensor, nn

from pseudo.backbones.base import BackboneConfig, quiet_hub
from pseudo.backbones.sentence import same_length_batches
from pseudo.errors import PseudoError
from pseudo.lru import LRU
from pseudo.registry import Registry
from pseudo.settings import settings_hash

TowerBuilder = Callable[[BackboneConfig], "TextTower"]
TEXT_TOWERS = Registry[TowerBuilder]("text tower")
#: how many texts a tower keeps the encodings of, per kind (prompted, plain), least recently used going
#: first: a prompted one is about 37 KB with MiniLM, so about 1.2 GB at most; the QVHighlights recipe
#: trains on at most 18,228 pseudo-queries (12 per val video), and a split's queries with their five
#: rephrasings are about 9,300 texts
MEMO_TEXTS = 32_768
#: texts per batch when a tower encodes many ahead (:meth:`TextTower.warm`); a batch holds one token count
WARM_BATCH = 128


class TextTower(nn.Module, ABC):
    """A frozen text encoder that accepts input embeddings.

    ``dim`` is the output width, ``embed_dim`` the width of the word embeddings and
    ``max_positions`` the longest sequence the encoder takes. Token sequences start with one
    special token ([CLS] or BOS) and end with one ([SEP] or EOS); padding is on the right.
    """

    dim: int
    embed_dim: int
    max_positions: int

    def __init__(self, tokenizer: Any) -> None:
        super().__init__()
        self.tokenizer = tokenizer
        #: the tower is frozen, so a text's encoding never changes: each is made once and kept (the
        #: least recently used past ``MEMO_TEXTS`` are dropped, and made again, to the same values if
        #: asked again), for every model built on this tower (:class:`TowerPool`)
        self._encoded: LRU[tuple[str, int], tuple[Tensor, Tensor]] = LRU(MEMO_TEXTS)
        self._plain: LRU[str, Tensor] = LRU(MEMO_TEXTS)

    def freeze(self) -> None:
        self.requires_grad_(False)
        super().train(False)

    def train(self, mode: bool = True) -> Self:
        """Always eval mode: a frozen tower must not apply dropout, whatever the parent does."""
        super().train(False)
        return self

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def tokenize(self, texts: Sequence[str], max_length: int) -> tuple[Tensor, Tensor]:
        """Token ids (B, L) long and a validity mask (B, L) bool, right-padded to the longest row."""
        if not texts:
            raise ValueError("tokenize needs at least one text")
        length = min(max_length, self.max_positions)
        tok = self.tokenizer(
            list(texts),
            padding="longest",
            truncation=True,
            max_length=length,
            padding_side="right",
            return_tensors="pt",
        )
        ids = tok["input_ids"].to(self.device, torch.long)
        mask = tok["attention_mask"].to(self.device).bool()
        return ids, mask

    def word_ids(self, text: str) -> list[int]:
        """The ids of ``text``'s own tokens, without special tokens."""
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return [int(i) for i in ids]

    @torch.no_grad()
    def embed_texts(self, texts: Sequence[str]) -> Tensor:
        """The tower's own sentence embeddings (B, dim) of plain texts (no prompt): for CLIP the
        projected end token, for a sentence encoder the mean of its last hidden states."""
        ids, mask = self.tokenize(texts, self.max_positions)
        _, pooled = self.encode(self.embed_tokens(ids), mask)
        return pooled

    def plain_embeddings(self, texts: Sequence[str]) -> Tensor:
        """:meth:`embed_texts` (B, dim) on the CPU in fp32, each distinct text through the tower once."""
        return torch.stack(self._plain.get_many(texts, lambda todo: self.embed_texts(todo).float().cpu()))

    def encoded(self, texts: Sequence[str], max_length: int) -> list[tuple[Tensor, Tensor]]:
        """Each text's valid tokens (L_i, dim) and pooled state (dim,) from :meth:`encode`, tokenised to at
        most ``max_length``; each distinct text through the tower once (right padding with a mask leaves
        a text's valid tokens unchanged, so a kept encoding equals a fresh one)."""

        def encode(todo: list[tuple[str, int]]) -> list[tuple[Tensor, Tensor]]:
            with torch.no_grad():
                ids, mask = self.tokenize([t for t, _ in todo], max_length)
                tokens, pooled = self.encode(self.embed_tokens(ids), mask)
            return [(tokens[i, : int(mask[i].sum())].detach(), pooled[i].detach()) for i in range(len(todo))]

        return self._encoded.get_many([(t, max_length) for t in texts], encode)

    def forget(self) -> None:
        """Drop every kept encoding (they are made again, to the same values, when asked)."""
        self._encoded.clear()
        self._plain.clear()

    def warm(
        self,
        texts: Sequence[str],
        max_length: int | None = None,
        plain: bool = False,
    ) -> int:
        """Encode ahead, and keep, the encodings that :meth:`encoded` (with ``max_length``, when given) and
        :meth:`plain_embeddings` (when ``plain``) will be asked for ``texts``: the ones not kept yet, in
        batches of one token count, shortest first, so no batch computes padding (a training run's
        batches are drawn at random, padded to their longest text). Nothing is done for more distinct
        texts than the tower keeps. Returns how many encodings were made."""
        distinct = list(dict.fromkeys(texts))
        if len(distinct) > MEMO_TEXTS:
            return 0
        made = 0
        if max_length is not None:
            todo = [t for t in distinct if (t, max_length) not in self._encoded]
            for batch in self._length_batches(todo, max_length):
                self.encoded(batch, max_length)
                made += len(batch)
        if plain:
            for batch in self._length_batches([t for t in distinct if t not in self._plain], self.max_positions):
                self.plain_embeddings(batch)
                made += len(batch)
        return made

    def _length_batches(self, texts: list[str], max_length: int) -> list[list[str]]:
        """``texts`` in batches of :data:`WARM_BATCH` at most that share one token count (as :meth:`tokenize`
        truncates them)."""
        if not texts:
            return []
        ids = self.tokenizer(texts, truncation=True, max_length=min(max_length, self.max_positions))["input_ids"]
        return [[texts[i] for i in rows] for rows in same_length_batches([len(x) for x in ids], WARM_BATCH)]

    @abstractmethod
    def embed_tokens(self, ids: Tensor) -> Tensor:
        """Word embeddings (B, L, embed_dim) of token ids (B, L), before any position embedding."""

    @abstractmethod
    def encode(self, embeds: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """Encode word embeddings (B, L, embed_dim) with mask (B, L): tokens (B, L, dim), pooled (B, dim)."""


def last_valid_index(mask: Tensor) -> Tensor:
    """Index of the last True in each row of a (B, L) mask (0 for an all-False row)."""
    positions = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
    return torch.where(mask, positions, torch.zeros_like(positions)).amax(dim=1)


@cache
def _cache_argument() -> str:
    """The name under which ``create_causal_mask`` takes its key/value cache (none here): transformers
    renamed it (past_key_values -> cache) in 5.x and removes the old name in 5.40. Asked once."""
    from inspect import signature

    from transformers.masking_utils import create_causal_mask

    return "cache" if "cache" in signature(create_causal_mask).parameters else "past_key_values"


class HFClipTextTower(TextTower):
    """The text side of a transformers CLIP: causal transformer, EOS pooling, ``text_projection``.

    The public ``CLIPTextModel.forward`` only takes ``input_ids``, so ``encode`` runs its pieces the
    way that forward does: ``embeddings(inputs_embeds=...)`` (adds position embeddings), the causal
    plus padding mask from ``transformers.masking_utils.create_causal_mask``, the encoder with
    ``is_causal=True``, and ``final_layer_norm``. The pooled state is taken at the last non-padding
    token (the EOS, wherever prompt tokens moved it), not at the argmax of the ids.
    """

    def __init__(self, text_model: Any, projection: nn.Linear, tokenizer: Any) -> None:
        super().__init__(tokenizer)
        self.text_model = text_model
        self.projection = projection
        self.dim = int(projection.out_features)
        self.embed_dim = int(text_model.config.hidden_size)
        self.max_positions = int(text_model.config.max_position_embeddings)
        self.freeze()

    @classmethod
    def from_config(cls, cfg: BackboneConfig) -> HFClipTextTower:
        from transformers import AutoTokenizer, CLIPModel

        quiet_hub()
        try:
            clip = CLIPModel.from_pretrained(cfg.model)
            tokenizer = AutoTokenizer.from_pretrained(cfg.model)
        except (OSError, ValueError) as exc:
            raise PseudoError(f"could not load CLIP text tower {cfg.model!r}: {exc}") from None
        return cls(clip.text_model, clip.text_projection, tokenizer)

    def embed_tokens(self, ids: Tensor) -> Tensor:
        out: Tensor = self.text_model.embeddings.token_embedding(ids)
        return out

    def encode(self, embeds: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        from transformers.masking_utils import create_causal_mask

        if embeds.shape[1] > self.max_positions:
            raise ValueError(f"sequence of {embeds.shape[1]} tokens exceeds the CLIP limit of {self.max_positions}")
        tm = self.text_model
        hidden = tm.embeddings(inputs_embeds=embeds)
        attn = create_causal_mask(
            config=tm.config, inputs_embeds=hidden, attention_mask=mask.long(), **{_cache_argument(): None}
        )
        hidden = tm.encoder(inputs_embeds=hidden, attention_mask=attn, is_causal=True).last_hidden_state
        hidden = tm.final_layer_norm(hidden)
        rows = torch.arange(hidden.shape[0], device=hidden.device)
        pooled = hidden[rows, last_valid_index(mask)]
        return self.projection(hidden), self.projection(pooled)


class SentenceTextTower(TextTower):
    """A BERT-style encoder (e.g. all-MiniLM-L6-v2): masked mean of the last hidden states.

    BERT adds its own position and token-type embeddings to ``inputs_embeds``.
    """

    def __init__(self, model: Any, tokenizer: Any) -> None:
        super().__init__(tokenizer)
        self.model = model
        self.dim = int(model.config.hidden_size)
        self.embed_dim = self.dim
        self.max_positions = int(model.config.max_position_embeddings)
        self.freeze()

    @classmethod
    def from_config(cls, cfg: BackboneConfig) -> SentenceTextTower:
        from pseudo.backbones.sentence import load_sentence_model

        return cls(*load_sentence_model(cfg.model))

    def embed_tokens(self, ids: Tensor) -> Tensor:
        out: Tensor = self.model.get_input_embeddings()(ids)
        return out

    def encode(self, embeds: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        hidden: Tensor = self.model(inputs_embeds=embeds, attention_mask=mask.long()).last_hidden_state
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
        return hidden, pooled


@TEXT_TOWERS.register("hf_clip")
def _build_hf_clip(cfg: BackboneConfig) -> TextTower:
    return HFClipTextTower.from_config(cfg)


@TEXT_TOWERS.register("sentence")
def _build_sentence(cfg: BackboneConfig) -> TextTower:
    return SentenceTextTower.from_config(cfg)


def build_text_tower(cfg: BackboneConfig) -> TextTower:
    """The frozen text tower named by ``cfg.name`` (``hf_clip`` or ``sentence``), on the CPU in fp32."""
    return TEXT_TOWERS.get(cfg.name)(cfg)


class TowerPool:
    """Frozen text towers, each built once per settings and shared, with the encodings it keeps, by every
    model built through the pool: the seeds and ablations of one recipe read the same texts through the
    same frozen encoder, so a second model encodes none of them again."""

    def __init__(self) -> None:
        self._towers: dict[str, TextTower] = {}

    def __len__(self) -> int:
        return len(self._towers)

    def get(self, cfg: BackboneConfig) -> TextTower:
        key = settings_hash(cfg)
        if key not in self._towers:
            self._towers[key] = build_text_tower(cfg)
        return self._towers[key]

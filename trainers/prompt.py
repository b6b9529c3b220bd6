"""Prompt learning for the frozen text tower: CoOp, CoCoOp and a hand-written prompt baseline.

CoOp (Zhou et al., IJCV 2022) learns M context vectors shared by all queries and puts them in
front of the query words: ``[CLS] v_1 ... v_M query words [SEP]``. CoCoOp (Zhou et al., CVPR 2022)
adds a small meta-net that maps the pooled video feature to a bias added to every context vector,
so the prompt depends on the instance. ``hand`` learns nothing: the ``ctx_init`` words are written
in front of the query as plain text.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pad_sequence

from pseudo.errors import PseudoError
from trainers.text_towers import TextTower

PromptMode = Literal["coop", "cocoop", "hand"]


class PromptLearner(nn.Module):
    """Builds the prompted query embeddings and runs them through the frozen tower.

    ``max_length`` is the longest sequence fed to the tower (special and context tokens included,
    capped by the tower's position limit); queries are truncated to fit what the context leaves.
    With ``ctx_init``, the context vectors start as the word embeddings of its tokens: when it has
    fewer tokens than ``n_ctx`` the extra vectors come first, drawn from N(0, 0.02), so the words
    stay next to the query ("X a video of <query>"); with more, only its first ``n_ctx`` are kept.
    """

    def __init__(
        self,
        tower: TextTower,
        n_ctx: int = 4,
        ctx_init: str | None = "a video of",
        mode: PromptMode = "coop",
        video_dim: int | None = None,
        max_length: int = 32,
    ) -> None:
        super().__init__()
        if mode not in ("coop", "cocoop", "hand"):
            raise PseudoError(f"unknown prompt mode {mode!r}; known: coop, cocoop, hand")
        self.tower = tower
        self.mode: PromptMode = mode
        self.ctx_init = ctx_init
        self.max_length = min(max_length, tower.max_positions)
        self.n_ctx = 0 if mode == "hand" else n_ctx
        if mode != "hand" and n_ctx < 1:
            raise PseudoError(f"n_ctx must be at least 1 for {mode} prompts, got {n_ctx}")
        if self.max_length - self.n_ctx < 3:
            raise PseudoError(
                f"max_length {self.max_length} leaves no room for a query after {self.n_ctx} context tokens"
            )
        self.ctx: nn.Parameter | None = None
        self.meta_net: nn.Sequential | None = None
        if mode == "hand":
            return
        self.ctx = nn.Parameter(self._initial_context(ctx_init))
        if mode == "cocoop":
            if video_dim is None or video_dim < 1:
                raise PseudoError("cocoop prompts need video_dim (the width of the pooled video feature)")
            hidden = max(1, video_dim // 16)
            self.meta_net = nn.Sequential(
                nn.Linear(video_dim, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, tower.embed_dim)
            )

    def _initial_context(self, ctx_init: str | None) -> Tensor:
        ctx = torch.randn(self.n_ctx, self.tower.embed_dim) * 0.02
        ids = self.tower.word_ids(ctx_init)[: self.n_ctx] if ctx_init else []
        if ids:
            with torch.no_grad():
                words = self.tower.embed_tokens(torch.tensor([ids], device=self.tower.device))[0]
            ctx[self.n_ctx - len(ids) :] = words.detach().float().cpu()
        return ctx

    def meta_bias(self, video_pooled: Tensor) -> Tensor:
        """CoCoOp's instance-conditional bias (B, embed_dim) for pooled video features (B, video_dim)."""
        if self.meta_net is None:
            raise PseudoError(f"{self.mode} prompts have no meta-net")
        out: Tensor = self.meta_net(video_pooled)
        return out

    def context(self, batch: int, video_pooled: Tensor | None = None) -> Tensor:
        """The context vectors for each query (B, n_ctx, embed_dim)."""
        if self.ctx is None:
            raise PseudoError("hand-written prompts have no learned context")
        ctx = self.ctx.unsqueeze(0).expand(batch, -1, -1)
        if self.meta_net is not None:
            if video_pooled is None:
                raise PseudoError("cocoop prompts need the pooled video feature (video_pooled)")
            if video_pooled.shape[0] != batch:
                raise ValueError(f"video_pooled has {video_pooled.shape[0]} rows for {batch} queries")
            ctx = ctx + self.meta_bias(video_pooled).unsqueeze(1)
        return ctx

    def kept_texts(self, texts: Sequence[str]) -> list[str] | None:
        """The prompted texts whose encodings the tower keeps for ``texts`` (the hand-written prompt's);
        None for learned prompts, whose encodings change as they train."""
        if self.mode != "hand":
            return None
        prefix = f"{self.ctx_init} " if self.ctx_init else ""
        return [prefix + t for t in texts]

    def _hand(self, texts: Sequence[str]) -> tuple[Tensor, Tensor, Tensor]:
        """The hand-written prompt's encodings: it learns nothing and the tower is frozen, so each text's
        encoding never changes, and the tower keeps it (:meth:`TextTower.encoded`)."""
        prompted = self.kept_texts(texts)
        assert prompted is not None
        rows = self.tower.encoded(prompted, self.max_length)
        padded = pad_sequence([tok for tok, _ in rows], batch_first=True)
        lengths = torch.tensor([len(tok) for tok, _ in rows], device=padded.device)
        valid = torch.arange(padded.shape[1], device=padded.device)[None, :] < lengths[:, None]
        return padded, valid, torch.stack([p for _, p in rows])

    def forward(self, texts: Sequence[str], video_pooled: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """Encoded prompted queries: tokens (B, L', dim), mask (B, L') bool, pooled (B, dim)."""
        if self.mode == "hand":
            return self._hand(texts)
        ids, mask = self.tower.tokenize(texts, self.max_length - self.n_ctx)
        words = self.tower.embed_tokens(ids)
        ctx = self.context(len(texts), video_pooled).to(words.dtype)
        embeds = torch.cat([words[:, :1], ctx, words[:, 1:]], dim=1)
        ctx_mask = torch.ones(len(texts), self.n_ctx, dtype=torch.bool, device=mask.device)
        mask = torch.cat([mask[:, :1], ctx_mask, mask[:, 1:]], dim=1)
        tokens, pooled = self.tower.encode(embeds, mask)
        return tokens, mask, pooled

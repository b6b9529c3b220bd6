"""A CLIP-style moment localizer (UnLoc / ActionFormer design) with a prompt-tuned text side.

Frozen, precomputed frame features (B, T, Dv) and a query go in; every point of a temporal
feature pyramid comes out with a relevance logit and distances to the moment's start and end.

Video steps are unit intervals: step ``t`` spans ``[t, t + 1)``. A pyramid point at level ``l``
(stride ``s = 2**l``) pools steps ``[i*s, (i+1)*s)`` and sits at their centre ``(i + 0.5) * s``.
All distances and windows are in input steps.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Literal, Self

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import Tensor, nn

from trainers.prompt import PromptLearner, PromptMode
from trainers.text_towers import TextTower


def default_regression_ranges(levels: int) -> list[tuple[float, float]]:
    """ActionFormer's scheme in input steps: level 0 takes moments whose longest point-to-boundary
    distance is in [0, 4), level l > 0 [2**(l+1), 2**(l+2)), and the top level everything above.
    For 3 levels: [0, 4), [4, 8), [8, inf)."""
    ranges = [(0.0 if lvl == 0 else float(2 ** (lvl + 1)), float(2 ** (lvl + 2))) for lvl in range(levels)]
    ranges[-1] = (ranges[-1][0], math.inf)
    return ranges


class LocalizerConfig(BaseModel):
    """Sizes of the localizer.

    ``regression_ranges``: one half-open ``[low, high)`` per level, in input steps, on the longest
    distance from a point to its moment's boundaries (None: ``default_regression_ranges``).
    ``max_query_tokens``: the query's token budget, special tokens included; the context tokens
    come on top of it.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    d_model: Annotated[int, Field(ge=1)] = 256
    n_heads: Annotated[int, Field(ge=1)] = 4
    n_layers: Annotated[int, Field(ge=0)] = 2
    fusion: Literal["cross_attention", "concat"] = "cross_attention"
    levels: Annotated[int, Field(ge=1)] = 3
    regression_ranges: list[tuple[float, float]] | None = None
    dropout: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.1
    prompt: PromptMode = "coop"
    n_ctx: Annotated[int, Field(ge=0)] = 4
    ctx_init: str | None = "a video of"
    max_query_tokens: Annotated[int, Field(ge=3)] = 32
    similarity_channel: bool = True
    #: also feed the cosine of each step with the plain (unprompted) query embedding, raw and min-max
    #: normalised over the video (VTG-GPT's relevance curve), when features share the tower's space
    plain_similarity: bool = False
    #: a per-step saliency head (is this step inside the moment?), trained with BCE (Moment-DETR style)
    saliency_head: bool = False

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model {self.d_model} is not divisible by n_heads {self.n_heads}")
        if self.regression_ranges is not None:
            if len(self.regression_ranges) != self.levels:
                raise ValueError(f"{len(self.regression_ranges)} regression ranges for {self.levels} levels")
            for lo, hi in self.regression_ranges:
                if not 0 <= lo < hi:
                    raise ValueError(f"regression range ({lo}, {hi}) must satisfy 0 <= low < high")
        return self

    def ranges(self) -> list[tuple[float, float]]:
        return self.regression_ranges if self.regression_ranges is not None else default_regression_ranges(self.levels)


@dataclass
class LocalizerOutput:
    """Per-point predictions over the whole pyramid (N = sum of the level lengths).

    logits: (B, N) pre-sigmoid relevance. offsets: (B, N, 2) non-negative distances from the point
    to the moment's start and end, in input steps. points: (N,) point centres in input steps.
    strides: (N,) level stride in input steps. ranges: (N, 2) regression range of the point's level,
    in input steps. mask: (B, N) bool, points over valid video. lengths: (B,) valid length in steps.
    saliency: (B, T) per-step "inside the moment" logits (with ``saliency_head``). similarity: (B, T)
    cosine of each step with the plain query embedding (with ``plain_similarity``).
    """

    logits: Tensor
    offsets: Tensor
    points: Tensor
    strides: Tensor
    ranges: Tensor
    mask: Tensor
    lengths: Tensor
    saliency: Tensor | None = None
    similarity: Tensor | None = None


def minmax(x: Tensor, mask: Tensor) -> Tensor:
    """Each row of ``x`` (B, T) scaled to [0, 1] over its valid steps (a flat row becomes 0)."""
    big = torch.finfo(x.dtype).max
    lo = x.masked_fill(~mask, big).min(dim=1, keepdim=True).values
    hi = x.masked_fill(~mask, -big).max(dim=1, keepdim=True).values
    out = (x - lo) / (hi - lo).clamp(min=1e-6)
    return out.masked_fill(~mask, 0.0)


def sinusoidal_positions(length: int, dim: int, device: torch.device) -> Tensor:
    """The transformer's fixed sin/cos position code (length, dim); works for any video length."""
    pos = torch.arange(length, device=device, dtype=torch.float32).unsqueeze(1)
    freq = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim))
    out = torch.zeros(length, dim, device=device)
    out[:, 0::2] = torch.sin(pos * freq)
    out[:, 1::2] = torch.cos(pos * freq[: dim // 2])
    return out


class ChannelNorm(nn.Module):
    """LayerNorm over the channels of a (B, C, L) sequence."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.norm(x.transpose(1, 2)).transpose(1, 2)
        return out


class Downsample(nn.Module):
    """Halve the length: a kernel-2 stride-2 conv over pairs of steps (odd lengths padded on the
    right), then LayerNorm and GELU; a point is valid when either of its two steps is."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(dim, dim, kernel_size=2, stride=2)
        self.norm = ChannelNorm(dim)

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        if x.shape[-1] % 2:
            x = F.pad(x, (0, 1))
            mask = F.pad(mask, (0, 1), value=False)
        mask = mask.view(mask.shape[0], -1, 2).any(-1)
        x = F.gelu(self.norm(self.conv(x))) * mask.unsqueeze(1).to(x.dtype)
        return x, mask


class Head(nn.Module):
    """Conv1d(3) - LayerNorm - ReLU - Conv1d(3), shared by all pyramid levels, masked."""

    def __init__(self, dim: int, out: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(dim, dim, 3, padding=1)
        self.norm = ChannelNorm(dim)
        self.conv2 = nn.Conv1d(dim, out, 3, padding=1)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        m = mask.unsqueeze(1).to(x.dtype)
        h = F.relu(self.norm(self.conv1(x * m))) * m
        out: Tensor = self.conv2(h)
        return out


class MomentLocalizer(nn.Module):
    """Frame features + query -> per-point relevance and boundary distances over a pyramid.

    Video: Linear(Dv, d_model) plus sinusoidal positions. Text: the prompt learner's output through
    the frozen tower. Fusion comes first (early fusion, as in UnLoc), so the temporal encoder sees
    query-aware steps: ``cross_attention`` lets every step attend to the query tokens (projected to
    d_model) with a residual and LayerNorm; ``concat`` appends the projected pooled query to every
    step and mixes with a Linear. Then a masked transformer encoder, the pyramid (``levels``, stride
    2 per level) and shared classification and regression heads. Offsets are softplus (never dead,
    unlike ReLU) times a learned per-level scale times the level stride.
    """

    def __init__(self, tower: TextTower, video_dim: int, cfg: LocalizerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.video_dim = video_dim
        d = cfg.d_model
        self.prompt = PromptLearner(
            tower,
            n_ctx=cfg.n_ctx,
            ctx_init=cfg.ctx_init,
            mode=cfg.prompt,
            video_dim=video_dim,
            max_length=cfg.max_query_tokens + (0 if cfg.prompt == "hand" else cfg.n_ctx),
        )
        self.video_proj = nn.Linear(video_dim, d)
        # when the video features live in the text tower's space (CLIP image/text, caption/MiniLM),
        # the cosine of each step with the prompted query is a strong cue: fed in as one channel
        self.sim_proj: nn.Linear | None = nn.Linear(1, d) if cfg.similarity_channel and tower.dim == video_dim else None
        self.plain_proj: nn.Linear | None = nn.Linear(2, d) if cfg.plain_similarity and tower.dim == video_dim else None
        self.saliency: Head | None = Head(d, 1) if cfg.saliency_head else None
        self.video_norm = nn.LayerNorm(d)
        self.dropout = nn.Dropout(cfg.dropout)
        self.text_proj = nn.Linear(tower.dim, d)
        self.cross_attn: nn.MultiheadAttention | None = None
        self.concat_proj: nn.Linear | None = None
        if cfg.fusion == "cross_attention":
            self.cross_attn = nn.MultiheadAttention(d, cfg.n_heads, dropout=cfg.dropout, batch_first=True)
        else:
            self.concat_proj = nn.Linear(2 * d, d)
        self.fusion_norm = nn.LayerNorm(d)
        layer = nn.TransformerEncoderLayer(
            d, cfg.n_heads, dim_feedforward=2 * d, dropout=cfg.dropout, batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, cfg.n_layers, enable_nested_tensor=False) if cfg.n_layers else None
        self.downsample = nn.ModuleList(Downsample(d) for _ in range(cfg.levels - 1))
        self.cls_head = Head(d, 1)
        self.reg_head = Head(d, 2)
        self.scales = nn.Parameter(torch.ones(cfg.levels))
        prior = 0.01  # ActionFormer / RetinaNet: start every point at p = 0.01
        bias = self.cls_head.conv2.bias
        assert bias is not None
        nn.init.constant_(bias, -math.log((1 - prior) / prior))
        self.level_ranges = cfg.ranges()

    @property
    def tower(self) -> TextTower:
        return self.prompt.tower

    def plain_embeddings(self, texts: Sequence[str]) -> Tensor:
        """The frozen tower's plain sentence embeddings (B, dim), each text through the tower once (the
        tower keeps them: :meth:`TextTower.plain_embeddings`)."""
        return self.tower.plain_embeddings(texts)

    def warm_texts(self, texts: Sequence[str], plain: bool = False) -> int:
        """Encode ahead, through the frozen tower, what :meth:`forward` will ask of it for ``texts`` (the
        hand-written prompt's encodings, the plain embeddings when the model compares them with the
        steps, or when ``plain``), in batches of one token count: :meth:`TextTower.warm`. Returns how
        many encodings were made."""
        prompted = self.prompt.kept_texts(texts)
        made = 0
        if prompted is not None:
            made += self.tower.warm(prompted, self.prompt.max_length)
        if plain or self.plain_proj is not None:
            made += self.tower.warm(texts, plain=True)
        return made

    def trainable_parameters(self) -> list[str]:
        """Names of the parameters that train (context vectors, meta-net, temporal/fusion/heads)."""
        return [name for name, p in self.named_parameters() if p.requires_grad]

    def _fuse(self, x: Tensor, tokens: Tensor, text_mask: Tensor, pooled: Tensor) -> Tensor:
        if self.cross_attn is not None:
            keys = self.text_proj(tokens)
            attended, _ = self.cross_attn(x, keys, keys, key_padding_mask=~text_mask, need_weights=False)
            fused: Tensor = self.fusion_norm(x + self.dropout(attended))
            return fused
        assert self.concat_proj is not None
        query = self.text_proj(pooled).unsqueeze(1).expand(-1, x.shape[1], -1)
        fused = self.fusion_norm(x + self.dropout(self.concat_proj(torch.cat([x, query], dim=-1))))
        return fused

    def forward(self, video: Tensor, video_mask: Tensor, texts: Sequence[str]) -> LocalizerOutput:
        if video.ndim != 3 or video.shape[-1] != self.video_dim:
            raise ValueError(f"video must be (B, T, {self.video_dim}), got {tuple(video.shape)}")
        batch, steps, _ = video.shape
        if video_mask.shape != (batch, steps):
            raise ValueError(f"video_mask must be {(batch, steps)}, got {tuple(video_mask.shape)}")
        if len(texts) != batch:
            raise ValueError(f"{len(texts)} queries for {batch} videos")
        video_mask = video_mask.bool()
        if not bool(video_mask.any(1).all()):
            raise ValueError("every video needs at least one valid step in video_mask")
        m = video_mask.unsqueeze(-1).to(video.dtype)
        video_pooled = (video * m).sum(1) / m.sum(1).clamp(min=1)

        tokens, text_mask, pooled = self.prompt(texts, video_pooled if self.cfg.prompt == "cocoop" else None)
        x = self.video_proj(video) + sinusoidal_positions(steps, self.cfg.d_model, video.device)
        if self.sim_proj is not None:
            sim = F.cosine_similarity(video, pooled.unsqueeze(1).to(video.dtype), dim=-1)  # (B, T)
            x = x + self.sim_proj(sim.unsqueeze(-1))
        plain_sim = None
        if self.plain_proj is not None:
            plain = self.plain_embeddings(texts).to(video.device)
            plain_sim = F.cosine_similarity(video, plain.unsqueeze(1).to(video.dtype), dim=-1)  # (B, T)
            x = x + self.plain_proj(torch.stack([plain_sim, minmax(plain_sim, video_mask)], dim=-1))
        x = self.dropout(self.video_norm(x))
        x = self._fuse(x, tokens, text_mask, pooled)
        if self.encoder is not None:
            x = self.encoder(x, src_key_padding_mask=~video_mask)
        feat = (x * m).transpose(1, 2)  # (B, d, T)
        saliency = self.saliency(feat, video_mask)[:, 0] if self.saliency is not None else None

        mask = video_mask
        logits, offsets, masks, points, strides, ranges = [], [], [], [], [], []
        for level in range(self.cfg.levels):
            if level:
                feat, mask = self.downsample[level - 1](feat, mask)
            stride = 2**level
            logits.append(self.cls_head(feat, mask)[:, 0])
            dist = F.softplus(self.scales[level] * self.reg_head(feat, mask)) * stride
            offsets.append(dist.transpose(1, 2))
            masks.append(mask)
            n = feat.shape[-1]
            points.append((torch.arange(n, device=video.device, dtype=torch.float32) + 0.5) * stride)
            strides.append(torch.full((n,), float(stride), device=video.device))
            ranges.append(torch.tensor([self.level_ranges[level]], device=video.device).expand(n, 2))
        return LocalizerOutput(
            logits=torch.cat(logits, 1),
            offsets=torch.cat(offsets, 1),
            points=torch.cat(points),
            strides=torch.cat(strides),
            ranges=torch.cat(ranges),
            mask=torch.cat(masks, 1),
            lengths=video_mask.sum(1).to(torch.float32),
            saliency=saliency,
            similarity=plain_sim,
        )

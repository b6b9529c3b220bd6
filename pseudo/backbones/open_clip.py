"""open_clip models: a model name plus a pretrained tag or a checkpoint file.

Needs the ``openclip`` extra (open_clip cannot import without its matching torchvision).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from pseudo.backbones.base import BackboneConfig, l2_normalise, resolve_device, resolve_dtype
from pseudo.backbones.preprocess import to_pixels
from pseudo.errors import PseudoError


class OpenClipBackbone:
    def __init__(self, model: Any, tokenizer: Any, cfg: BackboneConfig) -> None:
        self.cfg = cfg
        self.device = resolve_device(cfg.device)
        self.dtype = resolve_dtype(cfg.precision, self.device)
        self.model = model.to(self.device).eval()
        self.tokenizer = tokenizer
        vis = model.visual
        size = vis.image_size if isinstance(vis.image_size, int) else vis.image_size[0]
        self.size = int(size)
        mean = getattr(vis, "image_mean", None) or (0.48145466, 0.4578275, 0.40821073)
        std = getattr(vis, "image_std", None) or (0.26862954, 0.26130258, 0.27577711)
        self.mean = torch.tensor(mean, device=self.device)
        self.std = torch.tensor(std, device=self.device)
        self.dim = int(getattr(vis, "output_dim", 0) or model.text_projection.shape[1])

    @classmethod
    def from_config(cls, cfg: BackboneConfig) -> OpenClipBackbone:
        try:
            import open_clip
        except ImportError as exc:
            raise PseudoError(
                f"open_clip is not importable ({exc}); install the extra: pip install -e '.[openclip]' "
                "(it brings torch==2.14.1 with the matching torchvision==0.29.1)"
            ) from None
        model = open_clip.create_model(cfg.model, pretrained=cfg.pretrained)
        return cls(model, open_clip.get_tokenizer(cfg.model), cfg)

    def _pixels(self, frames: NDArray[np.uint8]) -> torch.Tensor:
        return to_pixels(frames, self.size, self.size, self.mean, self.std, self.device)

    @torch.inference_mode()
    def encode_images(self, frames: NDArray[np.uint8]) -> NDArray[np.float32]:
        outs = []
        for i in range(0, len(frames), self.cfg.batch_size):
            px = self._pixels(frames[i : i + self.cfg.batch_size])
            with torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype != torch.float32):
                outs.append(l2_normalise(self.model.encode_image(px)))
        return np.concatenate(outs) if outs else np.zeros((0, self.dim), np.float32)

    @torch.inference_mode()
    def encode_texts(self, texts: Sequence[str]) -> NDArray[np.float32]:
        outs = []
        for i in range(0, len(texts), self.cfg.batch_size):
            tok = self.tokenizer(list(texts[i : i + self.cfg.batch_size])).to(self.device)
            with torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype != torch.float32):
                outs.append(l2_normalise(self.model.encode_text(tok)))
        return np.concatenate(outs) if outs else np.zeros((0, self.dim), np.float32)

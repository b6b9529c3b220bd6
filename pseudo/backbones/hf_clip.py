"""CLIP from transformers: a Hugging Face id or a local directory (``save_pretrained`` layout)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from pseudo.backbones.base import BackboneConfig, l2_normalise, quiet_hub, resolve_device, resolve_dtype
from pseudo.backbones.preprocess import preprocessor_config, to_pixels
from pseudo.errors import PseudoError

# CLIP's published preprocessing, used when a model directory has no preprocessor_config.json
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class HFClipBackbone:
    """Batched CLIP image/text embeddings; preprocessing (resize shortest side, centre crop,
    normalise) runs in torch on the whole batch instead of image by image in PIL."""

    def __init__(self, model: Any, tokenizer: Any, preprocess: dict[str, Any], cfg: BackboneConfig) -> None:
        self.cfg = cfg
        self.device = resolve_device(cfg.device)
        self.dtype = resolve_dtype(cfg.precision, self.device)
        self.model = model.to(self.device).eval()
        self.tokenizer = tokenizer
        self.size = int(preprocess["size"])
        self.crop = int(preprocess["crop"])
        self.mean = torch.tensor(preprocess["mean"], device=self.device)
        self.std = torch.tensor(preprocess["std"], device=self.device)
        self.dim = int(model.config.projection_dim)

    @classmethod
    def from_config(cls, cfg: BackboneConfig) -> HFClipBackbone:
        from transformers import AutoTokenizer, CLIPModel

        quiet_hub()
        try:
            model = CLIPModel.from_pretrained(cfg.model)
        except OSError as exc:
            raise PseudoError(
                f"could not load CLIP model {cfg.model!r}: {str(exc).rstrip('.')}. Give a local directory made with "
                "save_pretrained, or a Hugging Face id on a machine with network access."
            ) from None
        try:
            tokenizer = AutoTokenizer.from_pretrained(cfg.model)
        except (OSError, ValueError):
            tokenizer = None  # image-only use needs no tokenizer
        image_size = int(getattr(model.config.vision_config, "image_size", 224))
        return cls(model, tokenizer, read_preprocess(cfg.model, image_size), cfg)

    def _pixels(self, frames: NDArray[np.uint8]) -> torch.Tensor:
        return to_pixels(frames, self.size, self.crop, self.mean, self.std, self.device)

    @torch.inference_mode()
    def encode_images(self, frames: NDArray[np.uint8]) -> NDArray[np.float32]:
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"frames must be (N, H, W, 3) uint8, got {frames.shape}")
        outs = []
        for i in range(0, len(frames), self.cfg.batch_size):
            px = self._pixels(frames[i : i + self.cfg.batch_size])
            with torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype != torch.float32):
                out = self.model.get_image_features(pixel_values=px)
            outs.append(l2_normalise(_pooled(out)))
        return np.concatenate(outs) if outs else np.zeros((0, self.dim), np.float32)

    @torch.inference_mode()
    def encode_texts(self, texts: Sequence[str]) -> NDArray[np.float32]:
        if self.tokenizer is None:
            raise PseudoError(f"CLIP model {self.cfg.model!r} has no tokenizer files; it can only embed images")
        outs = []
        max_len = int(self.model.config.text_config.max_position_embeddings)
        for i in range(0, len(texts), self.cfg.batch_size):
            tok = self.tokenizer(
                list(texts[i : i + self.cfg.batch_size]),
                padding=True,
                truncation=True,
                max_length=max_len,
                return_tensors="pt",
            ).to(self.device)
            with torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype != torch.float32):
                out = self.model.get_text_features(input_ids=tok["input_ids"], attention_mask=tok["attention_mask"])
            outs.append(l2_normalise(_pooled(out)))
        return np.concatenate(outs) if outs else np.zeros((0, self.dim), np.float32)


def _pooled(out: Any) -> torch.Tensor:
    """transformers 5 returns an output object from get_*_features; 4.x returned the tensor."""
    return out if isinstance(out, torch.Tensor) else out.pooler_output


def read_preprocess(model: str, image_size: int) -> dict[str, Any]:
    """Mean/std/resize/crop from the model's preprocessor_config.json (local dir or hub)."""
    cfg = preprocessor_config(model)
    size = cfg.get("size", image_size)
    crop = cfg.get("crop_size", image_size)
    return {
        "mean": tuple(cfg.get("image_mean", CLIP_MEAN)),
        "std": tuple(cfg.get("image_std", CLIP_STD)),
        "size": size.get("shortest_edge", image_size) if isinstance(size, dict) else size,
        "crop": crop.get("height", image_size) if isinstance(crop, dict) else crop,
    }

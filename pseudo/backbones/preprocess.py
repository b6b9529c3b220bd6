"""Image preprocessing shared by the CLIP and BLIP wrappers: batched, in torch, on the model's device."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray


def preprocessor_config(model: str) -> dict[str, Any]:
    """``preprocessor_config.json`` of a local model directory or a hub id (cached or fetched);
    empty when neither can be read (offline), so callers fall back to published values."""
    local = Path(model) / "preprocessor_config.json"
    if local.is_file():
        data: dict[str, Any] = json.loads(local.read_text())
        return data
    if Path(model).exists():
        return {}
    try:
        from huggingface_hub import hf_hub_download

        data = json.loads(Path(hf_hub_download(model, "preprocessor_config.json")).read_text())
        return data
    except Exception:  # offline, or the repo has no such file
        return {}


def to_pixels(
    frames: NDArray[np.uint8],
    resize: int | tuple[int, int],
    crop: int | None,
    mean: torch.Tensor,
    std: torch.Tensor,
    device: torch.device,
) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> normalised (N, 3, h, w): bicubic antialiased resize (an int resizes the
    shortest side, a pair resizes to exactly (height, width)), optional centre crop."""
    x = torch.from_numpy(np.ascontiguousarray(frames)).to(device).permute(0, 3, 1, 2).float() / 255.0
    h, w = x.shape[-2:]
    if isinstance(resize, int):
        scale = resize / min(h, w)
        floor = crop or 1
        size = (max(floor, round(h * scale)), max(floor, round(w * scale)))
    else:
        size = resize
    x = torch.nn.functional.interpolate(x, size=size, mode="bicubic", antialias=True, align_corners=False).clamp_(0, 1)
    if crop is not None:
        h, w = x.shape[-2:]
        top, left = (h - crop) // 2, (w - crop) // 2
        x = x[..., top : top + crop, left : left + crop]
    return (x - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)

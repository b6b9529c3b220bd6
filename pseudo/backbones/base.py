"""The backbone interface and its settings."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Literal, Protocol

import numpy as np
import torch
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field

Device = Literal["auto", "cpu", "cuda"]
Precision = Literal["auto", "fp32", "fp16", "bf16"]


class BackboneConfig(BaseModel):
    """Which encoder to build and how to run it.

    ``name`` is a registry name (``hf_clip``, ``open_clip``); ``model`` a Hugging Face id or local
    directory (``hf_clip``) or an open_clip model name (``open_clip``); ``pretrained`` an open_clip
    tag or checkpoint file.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = "hf_clip"
    model: str = "openai/clip-vit-base-patch32"
    pretrained: str | None = None
    device: Device = "auto"
    precision: Precision = "auto"
    batch_size: Annotated[int, Field(ge=1)] = 64

    def identity(self) -> dict[str, str | None]:
        """What determines the embeddings (not how fast they are computed)."""
        return {"name": self.name, "model": self.model, "pretrained": self.pretrained}


class Backbone(Protocol):
    """Embeds frames and/or texts into one space; rows are L2-normalised float32."""

    dim: int

    def encode_images(self, frames: NDArray[np.uint8]) -> NDArray[np.float32]: ...

    def encode_texts(self, texts: Sequence[str]) -> NDArray[np.float32]: ...


def resolve_device(device: Device) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        from pseudo.errors import PseudoError

        raise PseudoError("device 'cuda' was asked for but no CUDA GPU is available; use --device cpu or auto")
    return torch.device(device)


def resolve_dtype(precision: Precision, device: torch.device) -> torch.dtype:
    """fp32 on CPU; bf16 on a GPU that has it (else fp16) unless told otherwise."""
    if precision == "fp32" or (precision == "auto" and device.type == "cpu"):
        return torch.float32
    if precision == "fp16":
        return torch.float16
    if precision == "bf16" or torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16


def l2_normalise(x: torch.Tensor) -> NDArray[np.float32]:
    x = x.float()
    out: NDArray[np.float32] = torch.nn.functional.normalize(x, dim=-1).cpu().numpy().astype(np.float32)
    return out

"""BLIP image captioning through transformers: a Hugging Face id or a local ``save_pretrained`` directory."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field

from pseudo.backbones.base import Device, Precision, quiet_hub
from pseudo.backbones.preprocess import preprocessor_config, to_pixels
from pseudo.errors import PseudoError

if TYPE_CHECKING:
    import torch

# BLIP's published preprocessing (OpenAI CLIP statistics), used when a model has no preprocessor_config.json
BLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
BLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class BlipCaptionerConfig(BaseModel):
    """Which BLIP captioner to build and how to run it.

    ``prompt`` is a conditional-captioning prefix (``"a video of"``); every caption then starts with
    the prompt exactly as given here, followed by the generated words.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = "Salesforce/blip-image-captioning-base"
    prompt: str | None = None
    max_new_tokens: Annotated[int, Field(ge=1)] = 30
    num_beams: Annotated[int, Field(ge=1)] = 3
    batch_size: Annotated[int, Field(ge=1)] = 32
    device: Device = "auto"
    precision: Precision = "auto"

    def identity(self) -> dict[str, str | int | None]:
        """What determines the captions (not how fast they are computed)."""
        return {
            "model": self.model,
            "prompt": self.prompt,
            "max_new_tokens": self.max_new_tokens,
            "num_beams": self.num_beams,
        }


class BlipCaptioner:
    """Batched BLIP captions of RGB frames; preprocessing (resize to the model's square input,
    normalise) runs in torch on the whole batch instead of image by image in PIL."""

    def __init__(self, model: Any, tokenizer: Any, preprocess: dict[str, Any], cfg: BlipCaptionerConfig) -> None:
        import torch

        from pseudo.backbones.base import resolve_device, resolve_dtype

        self.cfg = cfg
        self.device = resolve_device(cfg.device)
        self.dtype = resolve_dtype(cfg.precision, self.device)
        self.model = model.to(self.device).eval()
        self.tokenizer = tokenizer
        self.height, self.width = int(preprocess["height"]), int(preprocess["width"])
        self.mean = torch.tensor(preprocess["mean"], device=self.device, dtype=torch.float32)
        self.std = torch.tensor(preprocess["std"], device=self.device, dtype=torch.float32)
        self.prompt = (cfg.prompt or "").strip()
        text_cfg = model.config.text_config
        prompt_ids: list[int] = tokenizer(self.prompt, add_special_tokens=False)["input_ids"] if self.prompt else []
        # what BLIP's generate builds from "[CLS] prompt [SEP]": bos replaces [CLS], the final [SEP] is cut
        self.prompt_ids = [int(text_cfg.bos_token_id), *prompt_ids, int(text_cfg.sep_token_id)]
        self.decoded_prompt = " ".join(str(tokenizer.decode(prompt_ids, skip_special_tokens=True)).split())

    @classmethod
    def from_config(cls, cfg: BlipCaptionerConfig) -> BlipCaptioner:
        from transformers import AutoTokenizer, BlipForConditionalGeneration

        hint = (
            "Give a local directory made with save_pretrained (BlipForConditionalGeneration and its tokenizer), "
            "or a Hugging Face id such as 'Salesforce/blip-image-captioning-base' on a machine with network access "
            "or with the model already in the Hugging Face cache."
        )
        quiet_hub()
        try:
            model = BlipForConditionalGeneration.from_pretrained(cfg.model)
        except (OSError, ValueError) as exc:
            raise PseudoError(f"could not load BLIP model {cfg.model!r}: {str(exc).rstrip('.')}. {hint}") from None
        try:
            tokenizer = AutoTokenizer.from_pretrained(cfg.model)
        except (OSError, ValueError) as exc:
            raise PseudoError(
                f"could not load the tokenizer of BLIP model {cfg.model!r}: {str(exc).rstrip('.')}. {hint}"
            ) from None
        image_size = getattr(model.config.vision_config, "image_size", 384)
        side = int(image_size if isinstance(image_size, int) else image_size[0])
        return cls(model, tokenizer, read_preprocess(cfg.model, side), cfg)

    def _pixels(self, frames: NDArray[np.uint8]) -> torch.Tensor:
        return to_pixels(frames, (self.height, self.width), None, self.mean, self.std, self.device)

    def caption(self, frames: NDArray[np.uint8]) -> list[str]:
        """One caption per frame of ``frames`` (N, H, W, 3) uint8 RGB, stripped, in order."""
        import torch

        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"frames must be (N, H, W, 3) uint8, got {frames.shape}")
        if frames.dtype != np.uint8:
            raise ValueError(f"frames must be uint8, got {frames.dtype}")
        out: list[str] = []
        with torch.inference_mode():
            for i in range(0, len(frames), self.cfg.batch_size):
                px = self._pixels(frames[i : i + self.cfg.batch_size])
                ids = torch.tensor([self.prompt_ids], dtype=torch.long, device=self.device).repeat(len(px), 1)
                with torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype != torch.float32):
                    gen = self.model.generate(
                        pixel_values=px,
                        input_ids=ids,
                        attention_mask=torch.ones_like(ids),
                        max_new_tokens=self.cfg.max_new_tokens,
                        num_beams=self.cfg.num_beams,
                        do_sample=False,
                    )
                texts = self.tokenizer.batch_decode(gen, skip_special_tokens=True)
                out.extend(self._with_prompt(t) for t in texts)
        return out

    def _with_prompt(self, text: str) -> str:
        """The decoded sequence repeats the prompt as the tokenizer spells it (lower-case for BERT
        uncased); it is cut and replaced by the prompt as configured, so it appears exactly once."""
        text = " ".join(text.split())
        if not self.prompt:
            return text
        if text.startswith(self.decoded_prompt):
            text = text[len(self.decoded_prompt) :].strip()
        return f"{self.prompt} {text}".strip()


def read_preprocess(model: str, image_size: int) -> dict[str, Any]:
    """Mean/std and the (height, width) BLIP resizes to, from the model's preprocessor_config.json
    (local dir or hub cache), else BLIP's published values at the vision tower's image size."""
    cfg = preprocessor_config(model)
    size = cfg.get("size", image_size)
    if isinstance(size, dict):
        height = size.get("height") or size.get("shortest_edge") or image_size
        width = size.get("width") or size.get("shortest_edge") or image_size
    else:
        height = width = size
    return {
        "mean": tuple(cfg.get("image_mean", BLIP_MEAN)),
        "std": tuple(cfg.get("image_std", BLIP_STD)),
        "height": int(height),
        "width": int(width),
    }


def save_random_blip(out: str | Path, seed: int = 0) -> Path:
    """Write a tiny random BLIP captioner (weights, MiniLM BERT tokenizer, preprocessor config) to ``out``.

    2-layer width-32 towers, 32x32 images in 8x8 patches, the 30522-word BERT uncased vocabulary;
    [CLS]=101 starts decoding, [SEP]=102 ends it, [PAD]=0. Its captions are random words.
    """
    import torch
    from transformers import AutoTokenizer, BlipConfig, BlipForConditionalGeneration

    from pseudo.testing import minilm_dir

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    side = 32
    text = {
        "vocab_size": 30522,
        "hidden_size": 32,
        "intermediate_size": 64,
        "projection_dim": 16,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "max_position_embeddings": 64,
        "bos_token_id": 101,
        "eos_token_id": 102,
        "sep_token_id": 102,
        "pad_token_id": 0,
    }
    vision = {
        "hidden_size": 32,
        "intermediate_size": 64,
        "projection_dim": 16,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "image_size": side,
        "patch_size": 8,
        "initializer_range": 0.02,  # BLIP's default 1e-10 would make every image look the same
    }
    cfg = BlipConfig(text_config=text, vision_config=vision, projection_dim=16, image_text_hidden_size=16)
    model = BlipForConditionalGeneration(cfg)
    with torch.no_grad():  # at init scale the decoder all but ignores the image: every caption would be the same
        for name, param in model.text_decoder.named_parameters():
            if ".crossattention." in name and name.endswith(".weight") and "LayerNorm" not in name:
                param.mul_(10.0)
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(minilm_dir()).save_pretrained(out)
    preprocess = {
        "image_processor_type": "BlipImageProcessor",
        "do_resize": True,
        "size": {"height": side, "width": side},
        "resample": 3,
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "image_mean": list(BLIP_MEAN),
        "image_std": list(BLIP_STD),
        "do_convert_rgb": True,
    }
    (out / "preprocessor_config.json").write_text(json.dumps(preprocess, indent=2) + "\n")
    return out

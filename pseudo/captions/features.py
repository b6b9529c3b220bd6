"""Caption tracks as frame features: each clip's caption embedded with a text encoder.

This is the feature source for videos that are known only through captions made elsewhere (the
QVHighlights MiniGPT-v2 clip captions): the rest of the pipeline (store, proposals, pseudo-queries,
localizer) is the same one that runs on CLIP frame features.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any, ClassVar

import numpy as np
from pydantic import Field

from pseudo.backbones import BackboneConfig, build_backbone
from pseudo.captions.external import ExternalCaptions
from pseudo.errors import PseudoError
from pseudo.features import FeatureStore, RunSummary, StoreSettings, VideoFeatures

DEFAULT_ENCODER = BackboneConfig(name="sentence", model="minilm", batch_size=256)


class CaptionFeaturesConfig(StoreSettings):
    """``pseudo features --captions PATH``: external captions embedded by a text encoder."""

    kind: ClassVar[str] = "captions"

    captions: str
    clip_seconds: Annotated[float, Field(gt=0)] = 2.0
    fingerprint: str = ""  # filled from the caption files, so edited captions invalidate the store
    encoder: BackboneConfig = DEFAULT_ENCODER

    def identity(self) -> dict[str, Any]:
        return {
            "captions": self.fingerprint or self.captions,
            "clip_seconds": self.clip_seconds,
            "encoder": self.encoder.identity(),
            "dtype": self.dtype,
        }

    def text_encoder(self) -> BackboneConfig | None:
        return self.encoder


def caption_features_config(
    captions: str | Path, clip_seconds: float = 2.0, encoder: BackboneConfig | None = None, dtype: str = "float32"
) -> CaptionFeaturesConfig:
    track = ExternalCaptions(captions, clip_seconds)
    return CaptionFeaturesConfig.model_validate(
        {
            "captions": str(captions),
            "clip_seconds": clip_seconds,
            "fingerprint": track.fingerprint(),
            "encoder": (encoder or DEFAULT_ENCODER).model_dump(),
            "dtype": dtype,
        }
    )


def build_caption_features(
    cfg: CaptionFeaturesConfig,
    out: str | Path,
    vids: Sequence[str] | None = None,
    durations: dict[str, float] | None = None,
    rebuild: bool = False,
    on_start: Callable[[int], None] | None = None,
    on_video: Callable[[str], None] | None = None,
) -> RunSummary:
    """Embed each video's caption track into the store at ``out`` (cached and resumable).

    A video's duration is ``durations[vid]`` when given (e.g. from a benchmark's metadata), else the
    end of its last caption.
    """
    t0 = time.perf_counter()
    track = ExternalCaptions(cfg.captions, cfg.clip_seconds)
    store = FeatureStore.open(out, cfg, rebuild=rebuild)
    todo = list(vids) if vids is not None else track.vids()
    missing = [v for v in todo if v not in track]
    if missing:
        raise PseudoError(f"{cfg.captions}: no captions for {len(missing)} video(s), e.g. {missing[:3]}")
    if on_start is not None:
        on_start(len(todo))
    summary = RunSummary()
    encoder = None
    for vid in todo:
        if store.has(vid):
            summary.skipped.append(vid)
        else:
            caps = track.captions(vid)
            if not caps:
                summary.failed[vid] = "no captions"
            else:
                encoder = encoder or build_backbone(cfg.encoder)
                emb = encoder.encode_texts([c.text for c in caps])
                times = np.array([(c.start + c.end) / 2 for c in caps], dtype=np.float64)
                duration = (durations or {}).get(vid, max(c.end for c in caps))
                store.put(VideoFeatures(vid, emb, times, float(duration)), source=f"{cfg.captions}:{vid}")
                summary.done.append(vid)
        if on_video is not None:
            on_video(vid)
    store._write_manifest(summary.failed)
    summary.seconds = time.perf_counter() - t0
    return summary

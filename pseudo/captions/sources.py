"""Where captions come from, by name: a captioner run on video frames, or captions made elsewhere.

Every source answers ``captions_at(vid, times)``: one caption per requested time (seconds).
"""

from __future__ import annotations

import bisect
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict

from pseudo.data.captions import Caption, ExternalCaptions
from pseudo.errors import PseudoError, stops_stage
from pseudo.io import atomic_write_json
from pseudo.registry import Registry
from pseudo.settings import settings_hash
from pseudo.video import SamplingConfig


class CaptionSource(Protocol):
    name: str

    def identity(self) -> dict[str, Any]: ...

    def captions_at(self, vid: str, times: Sequence[float]) -> list[str]: ...


class CaptionerConfig(BaseModel):
    """``name``: ``external`` (``captions``: a folder/zip of per-video caption files) or ``blip``
    (``video_dir`` plus the BLIP settings in ``blip``); ``cache`` keeps frame captions between runs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Literal["external", "blip"] | str = "external"
    captions: str | None = None
    clip_seconds: float = 2.0
    video_dir: str | None = None
    cache: str | None = None
    sampling: SamplingConfig = SamplingConfig(fps=1.0, max_side=384)
    blip: dict[str, Any] = {}


SourceBuilder = Callable[[CaptionerConfig], CaptionSource]
CAPTIONERS: Registry[SourceBuilder] = Registry("captioner")


class ExternalCaptionSource:
    """The caption whose clip contains each time (the nearest clip when none does)."""

    name = "external"

    def __init__(self, track: ExternalCaptions) -> None:
        self.track = track
        self._cache: dict[str, tuple[list[float], list[Caption]]] = {}

    def identity(self) -> dict[str, Any]:
        return {"name": self.name, "captions": str(self.track.path), "fingerprint": self.track.fingerprint()}

    def captions_at(self, vid: str, times: Sequence[float]) -> list[str]:
        if vid not in self._cache:
            caps = self.track.captions(vid)
            if not caps:
                raise PseudoError(f"{self.track.path}: video {vid!r} has no captions")
            self._cache = {vid: ([c.start for c in caps], caps)}  # one video at a time: bounded memory
        starts, caps = self._cache[vid]
        out = []
        for t in times:
            i = max(0, bisect.bisect_right(starts, t) - 1)
            if not caps[i].start <= t < caps[i].end and i + 1 < len(caps):
                i = min((i, i + 1), key=lambda j: min(abs(caps[j].start - t), abs(caps[j].end - t)))
            out.append(caps[i].text)
        return out


@CAPTIONERS.register("external")
def _external(cfg: CaptionerConfig) -> CaptionSource:
    if not cfg.captions:
        raise PseudoError("captioner 'external' needs captions: a folder or zip of <video>.jsonl files (--captions)")
    return ExternalCaptionSource(ExternalCaptions(cfg.captions, cfg.clip_seconds))


class FrameCaptionCache:
    """Captions of one video's frames, keyed by time, in ``<root>/<vid>.json`` with a settings hash."""

    def __init__(self, root: str | Path, identity: dict[str, Any]) -> None:
        self.root = Path(root)
        self.hash = settings_hash(identity)

    def load(self, vid: str) -> dict[str, str]:
        p = self.root / f"{vid}.json"
        if not p.is_file():
            return {}
        try:
            data = json.loads(p.read_text())
        except json.JSONDecodeError:
            return {}  # a damaged cache file is recomputed
        return dict(data["captions"]) if data.get("settings_hash") == self.hash else {}

    def save(self, vid: str, captions: dict[str, str]) -> None:
        atomic_write_json(self.root / f"{vid}.json", {"settings_hash": self.hash, "captions": captions})


def time_key(t: float) -> str:
    return f"{t:.3f}"


class BlipFrameSource:
    """Captions frames sampled on the feature grid with BLIP; only frames not in the cache are decoded
    into the captioner, and each video's captions are saved as soon as they are made."""

    name = "blip"

    def __init__(self, cfg: CaptionerConfig) -> None:
        from pseudo.captions.blip import BlipCaptionerConfig

        if not cfg.video_dir:
            raise PseudoError("captioner 'blip' needs the videos: --video-dir DIR")
        self.cfg = cfg
        self.blip_cfg = BlipCaptionerConfig.model_validate(cfg.blip)
        self.video_dir = Path(cfg.video_dir)
        self._model: Any = None
        self.cache = FrameCaptionCache(cfg.cache, self.identity()) if cfg.cache else None

    def identity(self) -> dict[str, Any]:
        return {"name": self.name, "blip": self.blip_cfg.identity(), "sampling": self.cfg.sampling.model_dump()}

    def _video(self, vid: str) -> Path:
        from pseudo.video import list_videos

        for p in list_videos(self.video_dir):
            if p.stem == vid:
                return p
        raise PseudoError(f"{self.video_dir}: no video file for {vid!r}")

    def captions_at(self, vid: str, times: Sequence[float]) -> list[str]:
        """Each time maps to the nearest frame of the sampling grid; frames are decoded and
        captioned only when some of the needed ones are not cached."""
        import numpy as np

        from pseudo.video import probe_video, sample_frames, target_times

        path = self._video(vid)
        grid = target_times(probe_video(path), self.cfg.sampling)
        keys = [time_key(float(grid[int(np.argmin(np.abs(grid - t)))])) for t in times]
        known = self.cache.load(vid) if self.cache else {}
        todo = sorted({k for k in keys if k not in known}, key=float)
        if todo:
            sampled = sample_frames(path, self.cfg.sampling)
            if self._model is None:
                from pseudo.captions.blip import BlipCaptioner

                with stops_stage("captioner"):
                    self._model = BlipCaptioner.from_config(self.blip_cfg)
            idx = [int(np.argmin(np.abs(sampled.timestamps - float(k)))) for k in todo]
            for k, text in zip(todo, self._model.caption(sampled.frames[idx]), strict=True):
                known[k] = text
            if self.cache is not None:
                self.cache.save(vid, known)
        return [known[k] for k in keys]


@CAPTIONERS.register("blip")
def _blip(cfg: CaptionerConfig) -> CaptionSource:
    return BlipFrameSource(cfg)


def build_caption_source(cfg: CaptionerConfig) -> CaptionSource:
    return CAPTIONERS.get(cfg.name)(cfg)

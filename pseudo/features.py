"""The feature store: one ``.npz`` per video plus a manifest of the settings that made them.

Layout of a store directory::

    manifest.json          settings, their hash, code version, and an index of the videos
    features/<vid>.npz     features (T, D), timestamps (T,), duration, settings_hash
    failures.jsonl         videos that could not be read, with the reason (rewritten each run)

Every ``.npz`` is written to a temporary file and renamed, so a killed run leaves only whole
files; a rerun skips videos whose file carries the current settings hash. A store made with other
settings is refused (or wiped with ``rebuild=True``), never mixed.

Existing per-video ``.npy``/``.npz`` arrays (I3D, CLIP, SlowFast features people already have) are
read by :class:`ArrayDirectory`, so proposals can run without videos.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict

from pseudo.backbones import Backbone, BackboneConfig
from pseudo.errors import PseudoError
from pseudo.io import atomic_write_bytes, atomic_write_json, atomic_write_jsonl
from pseudo.registry import Registry
from pseudo.settings import code_version, settings_hash
from pseudo.video import SamplingConfig, VideoError, sample_frames

MANIFEST = "manifest.json"
FORMAT = "pseudo-features/1"


class StaleStoreError(PseudoError):
    """The store on disk was made with other settings."""


class StoreSettings(BaseModel):
    """Settings a feature store is made with; ``kind`` names the registered subclass."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: ClassVar[str] = ""
    dtype: Literal["float16", "float32"] = "float16"

    def settings_hash(self) -> str:
        raise NotImplementedError

    def text_encoder(self) -> BackboneConfig | None:
        """The encoder whose text embeddings live in the same space as these features, if any."""
        return None


STORE_KINDS: Registry[Callable[[], type[StoreSettings]]] = Registry("feature store kind")


class FeaturesConfig(StoreSettings):
    """Stage settings for ``pseudo features`` on videos."""

    kind: ClassVar[str] = "video"

    sampling: SamplingConfig = SamplingConfig()
    backbone: BackboneConfig = BackboneConfig()

    def settings_hash(self) -> str:
        """What changes the stored arrays: sampling, the model, the storage dtype (not device/batch)."""
        return settings_hash(self.sampling, self.backbone.identity(), self.dtype)

    def text_encoder(self) -> BackboneConfig | None:
        return self.backbone


STORE_KINDS.add("video", lambda: FeaturesConfig)


def _caption_store_settings() -> type[StoreSettings]:
    from pseudo.captions.features import CaptionFeaturesConfig

    return CaptionFeaturesConfig


STORE_KINDS.add("captions", _caption_store_settings)


@dataclass
class VideoFeatures:
    vid: str
    features: NDArray[np.float32]  # (T, D)
    timestamps: NDArray[np.float64]  # (T,) seconds
    duration: float
    content_hash: str = ""
    meta: dict[str, Any] = field(default_factory=dict)


class FeatureSource(Protocol):
    """Anything proposals can read per-video features from."""

    def vids(self) -> list[str]: ...

    def get(self, vid: str) -> VideoFeatures: ...


@dataclass
class RunSummary:
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "done": len(self.done),
            "skipped": len(self.skipped),
            "failed": len(self.failed),
            "failures": self.failed,
            "seconds": round(self.seconds, 3),
        }


def _atomic_save_npz(path: Path, **arrays: Any) -> None:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


class FeatureStore:
    """A directory of per-video features made with one :class:`FeaturesConfig`."""

    def __init__(self, root: Path, cfg: StoreSettings) -> None:
        self.root = root
        self.cfg = cfg
        self.hash = cfg.settings_hash()

    @classmethod
    def open(cls, root: str | Path, cfg: StoreSettings, rebuild: bool = False) -> FeatureStore:
        """Create a store, or reopen one made with the same settings; refuse (or wipe) otherwise."""
        root = Path(root)
        manifest = root / MANIFEST
        if manifest.is_file():
            old = json.loads(manifest.read_text())
            if old.get("settings_hash") != cfg.settings_hash():
                if not rebuild:
                    raise StaleStoreError(
                        f"{root} holds features made with other settings (hash {old.get('settings_hash')}, "
                        f"now {cfg.settings_hash()}); use another --out directory, or --rebuild to replace them"
                    )
                shutil.rmtree(root / "features", ignore_errors=True)
        elif root.is_dir() and (root / "features").is_dir():
            raise StaleStoreError(f"{root} has a features/ folder but no {MANIFEST}; use another --out directory")
        store = cls(root, cfg)
        store._write_manifest()
        return store

    @classmethod
    def load(cls, root: str | Path) -> FeatureStore:
        """Reopen an existing store with the settings recorded in its manifest."""
        root = Path(root)
        manifest = root / MANIFEST
        if not manifest.is_file():
            raise PseudoError(f"{root} is not a feature store (no {MANIFEST})")
        data = json.loads(manifest.read_text())
        if data.get("format") != FORMAT:
            raise PseudoError(f"{manifest}: unknown format {data.get('format')!r}, expected {FORMAT}")
        settings_cls = STORE_KINDS.get(data.get("kind", "video"))()
        return cls(root, settings_cls.model_validate(data["settings"]))

    def path(self, vid: str) -> Path:
        return self.root / "features" / f"{vid}.npz"

    def has(self, vid: str) -> bool:
        p = self.path(vid)
        if not p.is_file():
            return False
        try:
            with np.load(p) as z:
                return str(z["settings_hash"]) == self.hash
        except (OSError, ValueError, KeyError):
            return False  # a damaged file is recomputed

    def put(self, feats: VideoFeatures, source: str = "") -> None:
        dtype = np.float16 if self.cfg.dtype == "float16" else np.float32
        _atomic_save_npz(
            self.path(feats.vid),
            features=feats.features.astype(dtype),
            timestamps=feats.timestamps.astype(np.float64),
            duration=np.float64(feats.duration),
            settings_hash=np.str_(self.hash),
            source=np.str_(source),
        )

    def get(self, vid: str) -> VideoFeatures:
        p = self.path(vid)
        if not p.is_file():
            raise PseudoError(f"{self.root}: no features for video {vid!r}")
        with np.load(p) as z:
            if str(z["settings_hash"]) != self.hash:
                raise StaleStoreError(f"{p} was made with other settings; rerun `pseudo features` on this store")
            return VideoFeatures(
                vid,
                z["features"].astype(np.float32),
                z["timestamps"].astype(np.float64),
                float(z["duration"]),
                content_hash=f"{self.hash}:{vid}",
                meta={"source": str(z["source"])},
            )

    def vids(self) -> list[str]:
        folder = self.root / "features"
        return sorted(p.stem for p in folder.glob("*.npz")) if folder.is_dir() else []

    def _write_manifest(self, failures: dict[str, str] | None = None) -> None:
        atomic_write_json(
            self.root / MANIFEST,
            {
                "format": FORMAT,
                "kind": self.cfg.kind,
                "settings_hash": self.hash,
                "settings": self.cfg.model_dump(mode="json"),
                "code_version": code_version(),
                "videos": self.vids(),
            },
        )
        if failures is not None:
            atomic_write_jsonl(self.root / "failures.jsonl", ({"vid": v, "error": e} for v, e in failures.items()))


class ArrayDirectory:
    """Per-video ``.npy``/``.npz`` arrays made elsewhere, one file per video named ``<vid>.npy|npz``.

    Arrays are (T, D); a ``.npz`` uses its ``features`` key, or its only array. Steps are taken to
    be ``clip_seconds`` long unless the ``.npz`` has ``timestamps``/``duration``; a ``durations``
    mapping (e.g. from a benchmark's annotations) overrides the duration.
    """

    def __init__(self, root: str | Path, clip_seconds: float = 1.0, durations: dict[str, float] | None = None) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise PseudoError(f"features directory {self.root} does not exist")
        self.clip_seconds = clip_seconds
        self.durations = durations or {}
        self._files = {p.stem: p for p in sorted(self.root.iterdir()) if p.suffix in (".npy", ".npz")}
        if not self._files:
            raise PseudoError(f"{self.root} has no .npy or .npz files (and no {MANIFEST})")

    def vids(self) -> list[str]:
        return sorted(self._files)

    def get(self, vid: str) -> VideoFeatures:
        p = self._files.get(vid)
        if p is None:
            raise PseudoError(f"{self.root}: no features for video {vid!r}")
        extra: dict[str, Any] = {}
        try:
            if p.suffix == ".npy":
                arr = np.load(p)
            else:
                with np.load(p) as z:
                    keys = list(z.keys())
                    key = "features" if "features" in keys else (keys[0] if len(keys) == 1 else None)
                    if key is None:
                        raise PseudoError(f"{p}: several arrays ({', '.join(keys)}) and none named 'features'")
                    arr = z[key]
                    extra = {k: z[k] for k in ("timestamps", "duration") if k in keys}
        except (OSError, ValueError) as exc:
            raise PseudoError(f"{p}: cannot read features: {exc}") from None
        arr = np.squeeze(np.asarray(arr, dtype=np.float32))
        if arr.ndim == 1:
            arr = arr[None, :]
        if arr.ndim != 2 or not np.isfinite(arr).all():
            raise PseudoError(f"{p}: expected a finite (T, D) array, got shape {arr.shape}")
        n = len(arr)
        duration = float(self.durations.get(vid, extra.get("duration", n * self.clip_seconds)))
        ts = extra.get("timestamps")
        timestamps = np.asarray(ts, np.float64) if ts is not None else (np.arange(n) + 0.5) * duration / n
        digest = hashlib.sha256(p.read_bytes()).hexdigest()[:12]
        return VideoFeatures(
            vid, arr, timestamps, duration, content_hash=f"{digest}:{duration}", meta={"source": str(p)}
        )


def open_features(root: str | Path, clip_seconds: float = 1.0) -> FeatureSource:
    """A pseudo feature store if the directory has a manifest, else a directory of arrays."""
    root = Path(root)
    if (root / MANIFEST).is_file():
        return FeatureStore.load(root)
    return ArrayDirectory(root, clip_seconds=clip_seconds)


ProgressHook = Callable[[str], None]


def extract_features(
    videos: Sequence[Path],
    store: FeatureStore,
    make_backbone: Callable[[], Backbone],
    on_video: ProgressHook | None = None,
) -> RunSummary:
    """Sample and embed every video not already in ``store``; bad videos are reported, not fatal.

    The backbone is built on first use, so nothing is loaded when every video is cached.
    """
    t0 = time.perf_counter()
    summary = RunSummary()
    model: Backbone | None = None
    for path in videos:
        vid = path.stem
        if store.has(vid):
            summary.skipped.append(vid)
        else:
            try:
                assert isinstance(store.cfg, FeaturesConfig)
                sampled = sample_frames(path, store.cfg.sampling)
                if model is None:
                    model = make_backbone()
                feats = model.encode_images(sampled.frames)
                store.put(VideoFeatures(vid, feats, sampled.timestamps, sampled.info.duration), source=str(path))
                summary.done.append(vid)
            except VideoError as exc:
                summary.failed[vid] = str(exc)
        if on_video is not None:
            on_video(vid)
    store._write_manifest(summary.failed)
    summary.seconds = time.perf_counter() - t0
    return summary


def build_features(
    video_dir: str | Path,
    out: str | Path,
    cfg: FeaturesConfig,
    rebuild: bool = False,
    on_start: Callable[[int], None] | None = None,
    on_video: ProgressHook | None = None,
) -> RunSummary:
    """``pseudo features``: every video under ``video_dir`` into the store at ``out``."""
    from pseudo.backbones import build_backbone
    from pseudo.video import list_videos

    videos = list_videos(video_dir)
    if not videos:
        raise PseudoError(f"{video_dir} has no video files")
    store = FeatureStore.open(out, cfg, rebuild=rebuild)
    if on_start is not None:
        on_start(len(videos))
    return extract_features(videos, store, lambda: build_backbone(cfg.backbone), on_video=on_video)

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
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict

from proposals.grid import step_boundaries
from pseudo.backbones import Backbone, BackboneConfig
from pseudo.errors import PseudoError
from pseudo.io import atomic_write_bytes, atomic_write_json, atomic_write_jsonl, check_writable, read_json
from pseudo.registry import Registry
from pseudo.settings import code_version, diff_settings, settings_hash
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

    def identity(self) -> dict[str, Any]:
        """What changes the stored arrays (not device or batch size); the hash covers exactly this."""
        raise NotImplementedError

    def settings_hash(self) -> str:
        return settings_hash(self.identity())

    def text_encoder(self) -> BackboneConfig | None:
        """The encoder whose text embeddings live in the same space as these features, if any."""
        return None


STORE_KINDS: Registry[Callable[[], type[StoreSettings]]] = Registry("feature store kind")


class FeaturesConfig(StoreSettings):
    """Stage settings for ``pseudo features`` on videos."""

    kind: ClassVar[str] = "video"

    sampling: SamplingConfig = SamplingConfig()
    backbone: BackboneConfig = BackboneConfig()

    def identity(self) -> dict[str, Any]:
        """What changes the stored arrays: sampling, the model, the storage dtype (not device/batch)."""
        return {
            "sampling": self.sampling.model_dump(mode="json"),
            "backbone": self.backbone.identity(),
            "dtype": self.dtype,
        }

    def text_encoder(self) -> BackboneConfig | None:
        return self.backbone


STORE_KINDS.add("video", lambda: FeaturesConfig)


def _caption_store_settings() -> type[StoreSettings]:
    from pseudo.captions.features import CaptionFeaturesConfig

    return CaptionFeaturesConfig


STORE_KINDS.add("captions", _caption_store_settings)


@dataclass
class VideoFeatures:
    """One video's step features and the seconds each row was taken at.

    ``duration`` is the whole video's length; the rows may cover less of it (``truncated``: the file
    ends early, decodable up to ``decoded_end``; or a sampling window). Everything built on the rows
    places them by ``timestamps`` (see :meth:`boundaries`), never by spreading them over the duration.
    """

    vid: str
    features: NDArray[np.float32]  # (T, D)
    timestamps: NDArray[np.float64]  # (T,) seconds
    duration: float
    content_hash: str = ""
    meta: dict[str, Any] = field(default_factory=dict)
    truncated: bool = False
    decoded_end: float | None = None

    def boundaries(self) -> NDArray[np.float64]:
        """``(T + 1,)`` seconds where each row's step starts and ends."""
        return step_boundaries(self.timestamps, self.duration)


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
    #: inputs that were used but are suspect (e.g. truncated videos), with what is wrong
    warnings: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "done": len(self.done),
            "skipped": len(self.skipped),
            "failed": len(self.failed),
            "failures": self.failed,
            "warnings": self.warnings,
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
        root = check_writable(root, "dir")
        manifest = root / MANIFEST
        if manifest.is_file():
            old = read_json(manifest)
            if old.get("settings_hash") != cfg.settings_hash():
                if not rebuild:
                    changed = diff_settings(old.get("identity", old.get("settings", {})), cfg.identity())
                    raise StaleStoreError(
                        f"{root} holds features made with other settings ({changed}); use another --out "
                        "directory, or --rebuild to replace them"
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
        data = read_json(manifest)
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
            truncated=np.bool_(feats.truncated),
            decoded_end=np.float64(np.nan if feats.decoded_end is None else feats.decoded_end),
        )

    def get(self, vid: str) -> VideoFeatures:
        p = self.path(vid)
        if not p.is_file():
            raise PseudoError(f"{self.root}: no features for video {vid!r}")
        with np.load(p) as z:
            if str(z["settings_hash"]) != self.hash:
                raise StaleStoreError(f"{p} was made with other settings; rerun `pseudo features` on this store")
            end = float(z["decoded_end"]) if "decoded_end" in z else float("nan")
            return VideoFeatures(
                vid,
                z["features"].astype(np.float32),
                z["timestamps"].astype(np.float64),
                float(z["duration"]),
                content_hash=f"{self.hash}:{vid}",
                meta={"source": str(z["source"])},
                truncated=bool(z["truncated"]) if "truncated" in z else False,
                decoded_end=None if np.isnan(end) else end,
            )

    def vids(self) -> list[str]:
        folder = self.root / "features"
        return sorted(p.stem for p in folder.glob("*.npz")) if folder.is_dir() else []

    def truncated(self) -> dict[str, dict[str, float]]:
        """Videos whose file ends early: ``{vid: {"decoded_end": s, "duration": s}}``."""
        out = {}
        for vid in self.vids():
            try:
                with np.load(self.path(vid)) as z:  # lazy: only these small members are read
                    if "truncated" in z and bool(z["truncated"]):
                        out[vid] = {"decoded_end": float(z["decoded_end"]), "duration": float(z["duration"])}
            except (OSError, ValueError, KeyError):
                continue
        return out

    def _write_manifest(self, failures: dict[str, str] | None = None) -> None:
        atomic_write_json(
            self.root / MANIFEST,
            {
                "format": FORMAT,
                "kind": self.cfg.kind,
                "settings_hash": self.hash,
                "identity": self.cfg.identity(),
                "settings": self.cfg.model_dump(mode="json"),
                "code_version": code_version(),
                "videos": self.vids(),
                "truncated": self.truncated(),
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


def check_unique_ids(videos: Sequence[Path]) -> None:
    """Refuse two files that would be stored as the same video (``dup.mp4`` and ``dup.mkv``)."""
    seen: dict[str, Path] = {}
    for p in videos:
        if p.stem in seen:
            raise PseudoError(
                f"{seen[p.stem]} and {p} would both be stored as video {p.stem!r}; rename or move one of them"
            )
        seen[p.stem] = p


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
                record = VideoFeatures(
                    vid,
                    feats,
                    sampled.timestamps,
                    sampled.info.duration,
                    truncated=sampled.truncated,
                    decoded_end=sampled.decoded_end,
                )
                store.put(record, source=str(path))
                summary.done.append(vid)
                if sampled.truncated:
                    summary.warnings[vid] = (
                        f"truncated: decodable video ends at {sampled.decoded_end:.1f} s of "
                        f"{sampled.info.duration:.1f} s; features (and proposals) cover only that part"
                    )
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
    check_unique_ids(videos)
    store = FeatureStore.open(out, cfg, rebuild=rebuild)
    if on_start is not None:
        on_start(len(videos))
    return extract_features(videos, store, lambda: build_backbone(cfg.backbone), on_video=on_video)

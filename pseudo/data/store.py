"""The feature store: one ``.npz`` per video, written by any number of processes at once.

Layout of a store directory::

    manifest.json            kind, settings, their hash and identity, code version (written once)
    features/<ab>/<vid>.npz  features (T, D), timestamps (T,), duration, settings_hash, truncation
    failed/<ab>/<vid>.json   a video that could not be read, with the reason and the settings hash
    index.json               the compacted listing: videos, truncated ones, failures (refreshed at the
                             end of a run; a cache, never the truth)

``<ab>`` is the first two hex digits of the sha1 of the video id: 256 shard folders keep a folder
small at a million videos. Every file is written to a temporary file and renamed, so a killed
writer leaves only whole files, and writers need no lock: each video has its own files, a
rerun skips videos whose ``.npz`` carries the current settings hash, and a store made with other
settings is refused (its differing settings named) or wiped with ``rebuild=True``, never mixed.
A failed video is recorded and skipped by later runs with the same settings (unless retried).

Per-video ``.npy``/``.npz`` arrays made elsewhere (I3D, CLIP, SlowFast features people already have)
are read by :class:`ArrayDirectory`.
"""

from __future__ import annotations

import hashlib
import io
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from pseudo.errors import PseudoError
from pseudo.io import atomic_write_bytes, atomic_write_json, check_writable, read_json
from pseudo.settings import code_version, diff_settings
from pseudo.timeline import step_boundaries

MANIFEST = "manifest.json"
INDEX = "index.json"
FORMAT = "pseudo-features/2"


class StaleStoreError(PseudoError):
    """The store on disk was made with other settings."""


class StoreSpec(Protocol):
    """What a store needs of its settings: a kind, a storage dtype, and what the arrays depend on."""

    @property
    def kind(self) -> str: ...

    @property
    def dtype(self) -> str: ...

    def identity(self) -> dict[str, Any]: ...

    def settings_hash(self) -> str: ...

    def model_dump(self, *, mode: str = ...) -> dict[str, Any]: ...


@dataclass(frozen=True)
class RecordedSpec:
    """The settings of an existing store, as its manifest records them."""

    kind: str
    dtype: str
    settings: dict[str, Any]
    recorded_identity: dict[str, Any]
    recorded_hash: str

    def identity(self) -> dict[str, Any]:
        return self.recorded_identity

    def settings_hash(self) -> str:
        return self.recorded_hash

    def model_dump(self, *, mode: str = "json") -> dict[str, Any]:
        return dict(self.settings)


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
    """Anything per-video features can be read from."""

    def vids(self) -> list[str]: ...

    def get(self, vid: str) -> VideoFeatures: ...

    def content_hash(self, vid: str) -> str:
        """What identifies ``vid``'s features (equal hashes, equal arrays); cheap to ask."""
        ...


class SingleVideo:
    """One video's features as a feature source."""

    def __init__(self, feats: VideoFeatures) -> None:
        self.feats = feats

    def vids(self) -> list[str]:
        return [self.feats.vid]

    def get(self, vid: str) -> VideoFeatures:
        if vid != self.feats.vid:
            raise PseudoError(f"no features for video {vid!r} (only {self.feats.vid!r})")
        return self.feats

    def content_hash(self, vid: str) -> str:
        return self.feats.content_hash


def shard(vid: str) -> str:
    return hashlib.sha1(vid.encode("utf-8")).hexdigest()[:2]


def _npz_bytes(**arrays: Any) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


class FeatureStore:
    """A directory of per-video features made with one set of settings (a :class:`StoreSpec`)."""

    def __init__(self, root: Path, cfg: StoreSpec) -> None:
        self.root = root
        self.cfg = cfg
        self.hash = cfg.settings_hash()

    @property
    def kind(self) -> str:
        return self.cfg.kind

    @classmethod
    def open(cls, root: str | Path, cfg: StoreSpec, rebuild: bool = False) -> FeatureStore:
        """Create a store, or reopen one made with the same settings; refuse (or wipe) otherwise.

        Safe to call from several processes at once: the manifest of a new store is written once
        with the same content by whoever comes first."""
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
                for sub in ("features", "failed"):
                    shutil.rmtree(root / sub, ignore_errors=True)
                (root / INDEX).unlink(missing_ok=True)
            elif old.get("format") == FORMAT:
                return cls(root, cfg)
        elif (root / "features").is_dir():
            raise StaleStoreError(f"{root} has a features/ folder but no {MANIFEST}; use another --out directory")
        store = cls(root, cfg)
        atomic_write_json(
            manifest,
            {
                "format": FORMAT,
                "kind": cfg.kind,
                "settings_hash": store.hash,
                "identity": cfg.identity(),
                "settings": cfg.model_dump(mode="json"),
                "code_version": code_version(),
            },
        )
        return store

    @classmethod
    def load(cls, root: str | Path) -> FeatureStore:
        """Reopen an existing store with the settings recorded in its manifest."""
        root = Path(root)
        manifest = root / MANIFEST
        if not manifest.is_file():
            raise PseudoError(f"{root} is not a feature store (no {MANIFEST}); make one with `pseudo features`")
        data = read_json(manifest)
        if data.get("format") != FORMAT:
            raise PseudoError(
                f"{manifest}: format {data.get('format')!r} is not {FORMAT} (made by another version); rebuild it"
            )
        settings = data.get("settings", {})
        spec = RecordedSpec(
            str(data.get("kind", "")),
            str(settings.get("dtype", "float32")),
            settings,
            data.get("identity", {}),
            str(data["settings_hash"]),
        )
        return cls(root, spec)

    # --- one video -------------------------------------------------------------------------------

    def path(self, vid: str) -> Path:
        return self.root / "features" / shard(vid) / f"{vid}.npz"

    def failure_path(self, vid: str) -> Path:
        return self.root / "failed" / shard(vid) / f"{vid}.json"

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
        atomic_write_bytes(
            self.path(feats.vid),
            _npz_bytes(
                features=feats.features.astype(dtype),
                timestamps=feats.timestamps.astype(np.float64),
                duration=np.float64(feats.duration),
                settings_hash=np.str_(self.hash),
                source=np.str_(source),
                truncated=np.bool_(feats.truncated),
                decoded_end=np.float64(np.nan if feats.decoded_end is None else feats.decoded_end),
            ),
        )
        self.failure_path(feats.vid).unlink(missing_ok=True)

    def get(self, vid: str) -> VideoFeatures:
        p = self.path(vid)
        if not p.is_file():
            raise PseudoError(f"{self.root}: no features for video {vid!r}")
        with np.load(p) as z:
            if str(z["settings_hash"]) != self.hash:
                raise StaleStoreError(f"{p} was made with other settings; rerun `pseudo features` on this store")
            end = float(z["decoded_end"])
            return VideoFeatures(
                vid,
                z["features"].astype(np.float32),
                z["timestamps"].astype(np.float64),
                float(z["duration"]),
                content_hash=self.content_hash(vid),
                meta={"source": str(z["source"])},
                truncated=bool(z["truncated"]),
                decoded_end=None if np.isnan(end) else end,
            )

    def content_hash(self, vid: str) -> str:
        return f"{self.hash}:{vid}"

    def fail(self, vid: str, error: str) -> None:
        """Record that ``vid`` cannot be made with these settings (later runs skip it)."""
        atomic_write_json(self.failure_path(vid), {"vid": vid, "error": error, "settings_hash": self.hash})

    def failure(self, vid: str) -> str | None:
        """The recorded error of ``vid`` under the current settings, if any."""
        p = self.failure_path(vid)
        if not p.is_file():
            return None
        try:
            rec = read_json(p)
        except PseudoError:
            return None
        return str(rec.get("error")) if rec.get("settings_hash") == self.hash else None

    # --- listings --------------------------------------------------------------------------------

    def _walk(self, sub: str, suffix: str) -> Iterator[Path]:
        folder = self.root / sub
        if folder.is_dir():
            for part in sorted(folder.iterdir()):
                if part.is_dir():
                    yield from sorted(part.glob(f"*{suffix}"))

    def vids(self) -> list[str]:
        return sorted(p.stem for p in self._walk("features", ".npz") if not p.name.startswith("."))

    def failures(self) -> dict[str, str]:
        out = {}
        for p in self._walk("failed", ".json"):
            error = self.failure(p.stem)
            if error is not None:
                out[p.stem] = error
        return out

    def truncated(self) -> dict[str, dict[str, float]]:
        """Videos whose file ends early: ``{vid: {"decoded_end": s, "duration": s}}``."""
        out = {}
        for p in self._walk("features", ".npz"):
            try:
                with np.load(p) as z:  # lazy: only these small members are read
                    if bool(z["truncated"]):
                        out[p.stem] = {"decoded_end": float(z["decoded_end"]), "duration": float(z["duration"])}
            except (OSError, ValueError, KeyError):
                continue
        return out

    def write_index(self) -> dict[str, Any]:
        """Compact the per-video files into ``index.json`` (call when writers are done)."""
        index = {
            "settings_hash": self.hash,
            "videos": self.vids(),
            "truncated": self.truncated(),
            "failed": self.failures(),
            "code_version": code_version(),
        }
        atomic_write_json(self.root / INDEX, index)
        return index


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
        duration = self._duration(vid, extra.get("duration", n * self.clip_seconds))
        ts = extra.get("timestamps")
        timestamps = np.asarray(ts, np.float64) if ts is not None else (np.arange(n) + 0.5) * duration / n
        return VideoFeatures(
            vid, arr, timestamps, duration, content_hash=self.content_hash(vid), meta={"source": str(p)}
        )

    def _duration(self, vid: str, fallback: Any) -> float:
        return float(self.durations.get(vid, fallback))

    def content_hash(self, vid: str) -> str:
        p = self._files.get(vid)
        if p is None:
            raise PseudoError(f"{self.root}: no features for video {vid!r}")
        digest = hashlib.sha256(p.read_bytes()).hexdigest()[:12]
        return f"{digest}:{self.clip_seconds}:{self.durations.get(vid, '')}"


def open_features(root: str | Path, clip_seconds: float = 1.0) -> FeatureSource:
    """A pseudo feature store if the directory has a manifest, else a directory of arrays."""
    root = Path(root)
    if (root / MANIFEST).is_file():
        return FeatureStore.load(root)
    return ArrayDirectory(root, clip_seconds=clip_seconds)

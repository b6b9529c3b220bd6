"""The features stage: every video of a set into a feature store, cached and resumable.

Two sources, by their settings' ``kind``:

* ``video``: frames sampled with PyAV and embedded by an image backbone (CLIP);
* ``captions``: a caption track made elsewhere (one caption per clip, e.g. the MiniGPT-v2
  QVHighlights clip captions), each caption embedded by a text encoder (MiniLM). The rest of the
  pipeline (proposals, pseudo-queries, localizer) is the same on both.

Caption embedding is batched across videos: identical captions are embedded once (a worker remembers
the captions of its earlier passes, :class:`pseudo.backbones.memo.TextMemo`), and batches are sorted by
length (see :meth:`pseudo.backbones.sentence.SentenceBackbone.encode_texts`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from pseudo.backbones import Backbone, BackboneConfig, build_backbone
from pseudo.backbones.memo import TextMemo
from pseudo.data.captions import ExternalCaptions
from pseudo.data.store import FeatureSource, FeatureStore, VideoFeatures
from pseudo.errors import PseudoError, stops_stage
from pseudo.registry import Registry
from pseudo.settings import settings_hash
from pseudo.stages.per_video import Engine, Outcome, RunSummary, run_per_video
from pseudo.video import SampledVideo, SamplingConfig, list_videos, sample_frames

#: the sentence encoder that embeds caption tracks unless told otherwise
DEFAULT_ENCODER = BackboneConfig(name="sentence", model="minilm", batch_size=64)
#: videos whose captions are embedded in one pass
CAPTION_BATCH_VIDEOS = 32
#: caption embeddings a worker remembers across passes (about 75 MB of 384-d float32); on QVHighlights
#: val it embeds 97,942 captions of 113,620 against 100,324 when each pass of 32 videos is on its own
CAPTION_MEMO_TEXTS = 50_000


class FeaturesConfig(BaseModel):
    """``pseudo features --video-dir``: frames sampled from each video, embedded by a backbone."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: ClassVar[str] = "video"

    sampling: SamplingConfig = SamplingConfig()
    backbone: BackboneConfig = BackboneConfig()
    dtype: Literal["float16", "float32"] = "float16"

    def identity(self) -> dict[str, Any]:
        """What changes the stored arrays: sampling, the model, the storage dtype (not device/batch)."""
        return {
            "sampling": self.sampling.model_dump(mode="json"),
            "backbone": self.backbone.identity(),
            "dtype": self.dtype,
        }

    def settings_hash(self) -> str:
        return settings_hash(self.identity())

    def text_encoder(self) -> BackboneConfig:
        """CLIP embeds texts into the same space as its frames."""
        return self.backbone


class CaptionFeaturesConfig(BaseModel):
    """``pseudo features --captions``: a caption track embedded by a text encoder."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: ClassVar[str] = "captions"

    captions: str
    clip_seconds: Annotated[float, Field(gt=0)] = 2.0
    fingerprint: str = ""  # filled from the caption files, so edited captions invalidate the store
    encoder: BackboneConfig = DEFAULT_ENCODER
    dtype: Literal["float16", "float32"] = "float32"

    def identity(self) -> dict[str, Any]:
        return {
            "captions": self.fingerprint or self.captions,
            "clip_seconds": self.clip_seconds,
            "encoder": self.encoder.identity(),
            "dtype": self.dtype,
        }

    def settings_hash(self) -> str:
        return settings_hash(self.identity())

    def text_encoder(self) -> BackboneConfig:
        """The encoder whose text embeddings are the features."""
        return self.encoder


StoreConfig = FeaturesConfig | CaptionFeaturesConfig
STORE_KINDS: Registry[type[StoreConfig]] = Registry("feature store kind")
STORE_KINDS.add(FeaturesConfig.kind, FeaturesConfig)
STORE_KINDS.add(CaptionFeaturesConfig.kind, CaptionFeaturesConfig)


def store_config(store: FeatureStore) -> StoreConfig:
    """The typed settings a store was made with, as its manifest records them."""
    return STORE_KINDS.get(store.kind).model_validate(store.cfg.model_dump(mode="json"))


def text_encoder_of(features: FeatureSource | None) -> BackboneConfig | None:
    """The encoder whose text embeddings share the features' space (CLIP's text tower, MiniLM), or
    None for arrays made elsewhere."""
    if isinstance(features, FeatureStore):
        return store_config(features).text_encoder()
    return None


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


def check_unique_ids(videos: Sequence[Path]) -> None:
    """Refuse two files that would be stored as the same video (``dup.mp4`` and ``dup.mkv``)."""
    seen: dict[str, Path] = {}
    for p in videos:
        if p.stem in seen:
            raise PseudoError(
                f"{seen[p.stem]} and {p} would both be stored as video {p.stem!r}; rename or move one of them"
            )
        seen[p.stem] = p


class _StoreTask:
    """What the two sources share: done and failed videos live in the store."""

    errors: tuple[type[BaseException], ...] = (PseudoError,)

    def __init__(self, store: FeatureStore) -> None:
        self.store = store

    def is_done(self, vid: str) -> bool:
        return self.store.has(vid)

    def known_failure(self, vid: str) -> str | None:
        return self.store.failure(vid)

    def record_failure(self, vid: str, error: str) -> None:
        self.store.fail(vid, error)


class VideoFeaturesTask(_StoreTask):
    """Sample and embed frames; the backbone is built on first use (nothing loads when all is cached)."""

    def __init__(self, store: FeatureStore, cfg: FeaturesConfig, paths: dict[str, Path]) -> None:
        super().__init__(store)
        self.cfg = cfg
        self.paths = paths
        self.model: Backbone | None = None

    def prepare(self, vid: str) -> SampledVideo:
        """The CPU part: decode and sample the video's frames (a damaged file, or a sampling window
        outside the video, raises PseudoError)."""
        return sample_frames(self.paths[vid], self.cfg.sampling)

    def finish(self, vid: str, sampled: SampledVideo) -> Outcome:
        """The model part: embed the frames and store them."""
        if self.model is None:
            with stops_stage("features"):
                self.model = build_backbone(self.cfg.backbone)
        feats = VideoFeatures(
            vid,
            self.model.encode_images(sampled.frames),
            sampled.timestamps,
            sampled.info.duration,
            truncated=sampled.truncated,
            decoded_end=sampled.decoded_end,
        )
        self.store.put(feats, source=str(self.paths[vid]))
        if sampled.truncated:
            return (
                f"truncated: decodable video ends at {sampled.decoded_end:.1f} s of {sampled.info.duration:.1f} s; "
                "features (and proposals) cover only that part"
            )
        return None

    def run(self, vids: Sequence[str]) -> dict[str, Outcome | BaseException]:
        out: dict[str, Outcome | BaseException] = {}
        for vid in vids:
            try:
                sampled = self.prepare(vid)
            except PseudoError as exc:
                out[vid] = exc
                continue
            out[vid] = self.finish(vid, sampled)
        return out


class CaptionFeaturesTask(_StoreTask):
    """Embed each video's caption track; a batch of videos shares one embedding pass."""

    def __init__(self, store: FeatureStore, cfg: CaptionFeaturesConfig, durations: dict[str, float] | None) -> None:
        super().__init__(store)
        self.cfg = cfg
        self.track = ExternalCaptions(cfg.captions, cfg.clip_seconds)
        self.durations = durations or {}
        # captions recur across a job's videos (clips cut from one source video, stock phrases): each
        # distinct caption is embedded once per worker, remembered across passes up to a bound
        self.encoder = TextMemo(cfg.encoder, max_texts=CAPTION_MEMO_TEXTS)

    def run(self, vids: Sequence[str]) -> dict[str, Outcome | BaseException]:
        out: dict[str, Outcome | BaseException] = {}
        tracks = {}
        for vid in vids:
            caps = self.track.captions(vid)
            if caps:
                tracks[vid] = caps
            else:
                out[vid] = PseudoError("no captions")
        if not tracks:
            return out
        texts = [c.text for caps in tracks.values() for c in caps]
        emb = self.encoder.encode_texts(texts)
        lo = 0
        for vid, caps in tracks.items():
            rows = emb[lo : lo + len(caps)]
            lo += len(caps)
            times = np.array([(c.start + c.end) / 2 for c in caps], dtype=np.float64)
            duration = self.durations.get(vid, max(c.end for c in caps))
            self.store.put(VideoFeatures(vid, rows, times, float(duration)), source=f"{self.cfg.captions}:{vid}")
            out[vid] = None
        return out


def build_features(
    video_dir: str | Path,
    out: str | Path,
    cfg: FeaturesConfig,
    rebuild: bool = False,
    shard: tuple[int, int] | None = None,
    engine: Engine | None = None,
    retry_failed: bool = False,
    on_start: Callable[[int], None] | None = None,
    on_video: Callable[[str], None] | None = None,
    vids: Sequence[str] | None = None,
) -> RunSummary:
    """``pseudo features --video-dir``: every video under ``video_dir`` (or those of ``vids``) into the
    store at ``out``."""
    videos = list_videos(video_dir)
    if not videos:
        raise PseudoError(f"{video_dir} has no video files")
    check_unique_ids(videos)
    if vids is not None:
        wanted = set(vids)
        videos = [p for p in videos if p.stem in wanted]
        if not videos:
            raise PseudoError(f"{video_dir} has none of the {len(wanted)} requested videos (e.g. {sorted(wanted)[:3]})")
    store = FeatureStore.open(out, cfg, rebuild=rebuild)
    task = VideoFeaturesTask(store, cfg, {p.stem: p for p in videos})
    summary = run_per_video(
        task,
        sorted(task.paths),
        shard=shard,
        retry_failed=retry_failed,
        on_start=on_start,
        on_video=on_video,
        engine=engine,
    )
    if shard is None:
        store.write_index()
    return summary


def caption_track_of(features: FeatureSource | None) -> ExternalCaptions | None:
    """The captions a caption-track store was made from (its rows are their embeddings, in time order)."""
    if isinstance(features, FeatureStore):
        cfg = store_config(features)
        if isinstance(cfg, CaptionFeaturesConfig):
            return ExternalCaptions(cfg.captions, cfg.clip_seconds)
    return None


def caption_texts(features: FeatureSource | None) -> Callable[[str], list[str]] | None:
    """For caption-track features, the caption behind each feature row of a video (``step_texts`` of
    :meth:`trainers.localizer.Localizer.predict`); None for other features. The captions are read only
    when asked for, so a store whose captions have moved still predicts without caption feedback."""
    if not isinstance(features, FeatureStore) or not isinstance(store_config(features), CaptionFeaturesConfig):
        return None
    opened: list[ExternalCaptions] = []  # the captions are opened at the first call: none unless asked for
    last: dict[str, list[str]] = {}  # the last video's captions: a video's queries come one after another

    def texts(vid: str) -> list[str]:
        if vid in last:
            return list(last[vid])
        if not opened:
            track = caption_track_of(features)
            assert track is not None
            opened.append(track)
        last.clear()
        last[vid] = [c.text for c in opened[0].captions(vid)]
        return list(last[vid])

    return texts


def build_caption_features(
    cfg: CaptionFeaturesConfig,
    out: str | Path,
    vids: Sequence[str] | None = None,
    durations: dict[str, float] | None = None,
    rebuild: bool = False,
    shard: tuple[int, int] | None = None,
    engine: Engine | None = None,
    on_start: Callable[[int], None] | None = None,
    on_video: Callable[[str], None] | None = None,
) -> RunSummary:
    """``pseudo features --captions``: each video's caption track into the store at ``out``.

    A video's duration is ``durations[vid]`` when given (e.g. from a benchmark's metadata), else the
    end of its last caption."""
    store = FeatureStore.open(out, cfg, rebuild=rebuild)
    task = CaptionFeaturesTask(store, cfg, durations)
    todo = list(vids) if vids is not None else task.track.vids()
    missing = [v for v in todo if v not in task.track]
    if missing:
        raise PseudoError(f"{cfg.captions}: no captions for {len(missing)} video(s), e.g. {missing[:3]}")
    summary = run_per_video(
        task, todo, batch_size=CAPTION_BATCH_VIDEOS, shard=shard, on_start=on_start, on_video=on_video, engine=engine
    )
    if shard is None:
        store.write_index()
    return summary


def video_set_fingerprint(video_dir: str | Path) -> str:
    """Changes when a video is added, removed or replaced (names, sizes, modification times)."""
    h = hashlib.sha256()
    for p in list_videos(video_dir):
        st = p.stat()
        h.update(f"{p.name}:{st.st_size}:{int(st.st_mtime)}".encode())
    return h.hexdigest()[:12]

"""Frame sampling from video files with PyAV, robust to broken and unusual files.

`sample_frames` decodes a video once, front to back, and keeps for every target time the decoded frame whose real
presentation timestamp (pts) is nearest. Because it works on real pts, variable-frame-rate files are sampled at the
right moments. Frames are converted to RGB and downscaled in the same step (the longer side is capped at
``SamplingConfig.max_side``; nothing is ever upscaled).

Every failure that comes from the file itself (missing, damaged, audio only, no frames, a codec this FFmpeg build
cannot decode) is raised as `VideoError`, whose ``reason`` says which of these it is.

Timestamps are in seconds from the start of the video stream (its first frame is at ~0 s, even for formats such as
MPEG-TS whose raw timestamps start later).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal, Self

import av
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from pseudo.errors import DataNotFoundError, PseudoError

logger = logging.getLogger(__name__)

VideoErrorReason = Literal["not_found", "corrupt", "no_video_stream", "empty", "unsupported_codec"]

VIDEO_EXTENSIONS: tuple[str, ...] = (".mp4", ".mkv", ".avi", ".mov", ".webm", ".m4v")

# Exceptions PyAV/FFmpeg raise for bad input. FFmpegError covers av.error.*; the rest are what PyAV raises outside
# FFmpeg calls (e.g. undecodable metadata, odd pixel formats).
_AV_ERRORS: tuple[type[BaseException], ...] = (av.error.FFmpegError, OSError, EOFError, ValueError, RuntimeError)
# Errors that mean "this build cannot decode the codec", not "the data is bad".
_CODEC_ERRORS: tuple[type[BaseException], ...] = (
    av.error.DecoderNotFoundError,
    av.error.PatchWelcomeError,
    av.error.ExperimentalError,
)

_VFR_PROBE_PACKETS = 240  # packets read by probe_video to decide whether the frame rate is variable
_SEEK_MARGIN_S = 1.0  # a late window start seeks to (start - margin) and decodes forward from the keyframe before
_MIN_SEEK_START_S = 2.0  # windows starting earlier than this are decoded from the beginning


class SamplingConfig(BaseModel):
    """Which frames to take from a video, and at what size.

    Exactly one of ``fps`` (frames per second of video) and ``num_frames`` (a fixed count, evenly spread) is set.
    Passing ``num_frames`` alone switches the default ``fps`` off. ``start``/``end`` (seconds) restrict sampling to a
    window of the video; ``end`` past the end of the video is clipped.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    fps: float | None = Field(default=1.0, gt=0, allow_inf_nan=False)
    num_frames: int | None = Field(default=None, ge=1)
    max_side: int | None = Field(default=224, ge=1)
    start: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    end: float | None = Field(default=None, gt=0, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _num_frames_replaces_default_fps(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("num_frames") is not None and "fps" not in data:
            return {**data, "fps": None}
        return data

    @model_validator(mode="after")
    def _check_consistent(self) -> Self:
        if self.fps is not None and self.num_frames is not None:
            raise ValueError(
                f"fps={self.fps} and num_frames={self.num_frames} are both set; set exactly one of them "
                "(fps samples at a rate, num_frames takes a fixed count; pass fps=None to use num_frames)"
            )
        if self.fps is None and self.num_frames is None:
            raise ValueError("neither fps nor num_frames is set; set exactly one of them")
        if self.start is not None and self.end is not None and self.end <= self.start:
            raise ValueError(f"end={self.end} must be greater than start={self.start}")
        return self

    def settings_hash(self) -> str:
        """A short, stable id of these settings (first 12 hex digits of a sha256), e.g. for cache file names."""
        text = json.dumps(self.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


class VideoError(PseudoError):
    """A video file cannot be used. ``reason`` is one of:

    ``not_found`` (missing, a directory or unreadable), ``corrupt`` (damaged or not a video), ``no_video_stream``
    (e.g. audio only), ``empty`` (0 bytes, or a video stream without any frames), ``unsupported_codec`` (this
    FFmpeg build has no decoder for it).
    """

    def __init__(self, path: str | Path, reason: VideoErrorReason, detail: str) -> None:
        self.path = Path(path)
        self.reason: VideoErrorReason = reason
        self.detail = detail
        super().__init__(f"{self.path}: {reason}: {detail}")

    def __reduce__(self) -> tuple[type[VideoError], tuple[Path, VideoErrorReason, str]]:
        # Keeps the error intact when it crosses process boundaries (e.g. from DataLoader workers).
        return (type(self), (self.path, self.reason, self.detail))


@dataclass(frozen=True)
class VideoInfo:
    """Container/stream metadata of a video. ``duration`` is in seconds, ``fps`` the average real frame rate."""

    path: str
    duration: float
    fps: float
    width: int
    height: int
    variable_frame_rate: bool


@dataclass
class SampledVideo:
    """Sampled frames: ``timestamps`` (N,) float64 seconds (real pts), ``frames`` (N, H, W, 3) uint8 RGB.

    ``truncated``: the decodable video ends (at ``decoded_end`` seconds) well before the duration the
    container states (``info.duration``), so later requested frames are missing."""

    info: VideoInfo
    timestamps: np.ndarray
    frames: np.ndarray
    truncated: bool = False
    decoded_end: float | None = None


# --------------------------------------------------------------------------------------------------- opening files


def _describe(exc: BaseException) -> str:
    strerror = getattr(exc, "strerror", None)
    if isinstance(strerror, str) and strerror:
        return strerror
    return str(exc) or type(exc).__name__


def _translate(path: Path, exc: BaseException) -> VideoError:
    """Turn an exception raised while opening a file into a VideoError with the right reason."""
    if isinstance(exc, FileNotFoundError):
        return VideoError(path, "not_found", "no such file")
    if isinstance(exc, IsADirectoryError):
        return VideoError(path, "not_found", "is a directory, not a video file")
    if isinstance(exc, PermissionError):
        return VideoError(path, "not_found", "permission denied (the file exists but cannot be read)")
    if isinstance(exc, _CODEC_ERRORS):
        return VideoError(path, "unsupported_codec", f"{_describe(exc)}; re-encode the video (e.g. to H.264)")
    if isinstance(exc, EOFError):
        return VideoError(path, "empty", "the file ends right after its header, with no frames (truncated or empty)")
    return VideoError(
        path, "corrupt", f"cannot be read as a video ({_describe(exc)}); the file is damaged or not a video file"
    )


def _check_file(path: Path) -> None:
    if not path.exists():
        raise VideoError(path, "not_found", "no such file")
    if path.is_dir():
        raise VideoError(path, "not_found", "is a directory, not a video file")
    if not os.access(path, os.R_OK):
        raise VideoError(path, "not_found", "permission denied (the file exists but cannot be read)")
    if path.stat().st_size == 0:
        raise VideoError(path, "empty", "the file is 0 bytes")


@contextmanager
def _open_input(path: Path) -> Iterator[Any]:
    _check_file(path)
    try:
        container = av.open(str(path), mode="r", metadata_errors="ignore")
    except _AV_ERRORS as exc:
        raise _translate(path, exc) from exc
    try:
        yield container
    finally:
        container.close()


def _video_stream(container: Any, path: Path) -> Any:
    """The first real video stream (cover images of audio files do not count)."""
    streams = list(container.streams)
    if not streams:
        raise VideoError(path, "empty", "the container has no streams (no frames were ever written)")
    videos = [s for s in container.streams.video if not s.disposition & av.stream.Disposition.attached_pic]
    if not videos:
        covers = len(container.streams.video)
        kinds = sorted({str(s.type) for s in streams if s.type != "video"})
        extra = (" and " if kinds else "") + "a cover image" if covers else ""
        raise VideoError(path, "no_video_stream", f"the file has no video stream (only {', '.join(kinds)}{extra})")
    stream = videos[0]
    if stream.codec_context is None:
        raise VideoError(
            path, "unsupported_codec", "this FFmpeg build has no decoder for the video codec; re-encode it (e.g. H.264)"
        )
    return stream


def _time_base(stream: Any) -> Fraction | None:
    tb = stream.time_base
    return Fraction(tb) if tb else None


def _stream_origin(stream: Any) -> float:
    """Raw time (s) of the video stream's start; reported timestamps are relative to it."""
    tb = _time_base(stream)
    if stream.start_time is not None and tb is not None:
        return float(stream.start_time * tb)
    return 0.0


# --------------------------------------------------------------------------------------------------- probing


@dataclass
class _PacketScan:
    times: list[float] = field(default_factory=list)  # pts (s, relative to the stream start) in demux order
    end: float | None = None  # max(pts + duration) over the packets read
    count: int = 0


def _scan_packets(container: Any, stream: Any, limit: int | None) -> _PacketScan:
    """Demux (no decoding) up to ``limit`` packets of ``stream``; stops quietly at damage."""
    scan = _PacketScan()
    tb = _time_base(stream)
    origin = _stream_origin(stream)
    packets = container.demux(stream)
    while limit is None or scan.count < limit:
        try:
            packet = next(packets)
        except StopIteration:
            break
        except _AV_ERRORS:
            break
        if packet.size == 0:  # the flush packet at the end of the stream
            continue
        scan.count += 1
        if packet.pts is None or tb is None:
            continue
        t = float(packet.pts * tb) - origin
        scan.times.append(t)
        end = t + (float(packet.duration * tb) if packet.duration else 0.0)
        scan.end = end if scan.end is None else max(scan.end, end)
    return scan


def _decoded_end(container: Any, stream: Any, fps: float | None) -> tuple[float | None, int, int, int]:
    """Decode everything: (end time, frame count, width, height). For files whose packets carry no timestamps."""
    origin = _stream_origin(stream)
    end: float | None = None
    count, width, height = 0, 0, 0
    for frame in _iter_decoded(container, stream, _DecodeLog()):
        count += 1
        width, height = int(frame.width), int(frame.height)
        if frame.pts is not None and frame.time_base:
            t = float(frame.pts * frame.time_base) - origin
            dur = float(frame.duration * frame.time_base) if frame.duration else (1.0 / fps if fps else 0.0)
            end = t + dur if end is None else max(end, t + dur)
    if end is None and count and fps:
        end = count / fps
    return end, count, width, height


def _is_variable_rate(times: Sequence[float], time_base: Fraction | None) -> bool:
    """Whether packet pts gaps vary more than timestamp rounding explains (a dropped frame counts as variable)."""
    diffs = np.diff(np.unique(np.asarray(times, dtype=np.float64)))
    if diffs.size < 2:
        return False
    tick = float(time_base) if time_base else 0.0
    spread = float(diffs.max() - diffs.min())
    return spread > max(0.1 * float(np.median(diffs)), 2.5 * tick)


def _rate(value: Any) -> float | None:
    try:
        rate = float(value) if value is not None else None
    except (TypeError, ZeroDivisionError, ValueError):
        return None
    return rate if rate is not None and math.isfinite(rate) and rate > 0 else None


def _probe_open(container: Any, stream: Any, path: Path) -> VideoInfo:
    tb = _time_base(stream)
    origin = _stream_origin(stream)

    duration: float | None = None
    if stream.duration and tb is not None:
        duration = float(stream.duration * tb)
    elif container.duration:
        start = container.start_time / av.time_base if container.start_time is not None else origin
        duration = start + container.duration / av.time_base - origin
    if duration is not None and (not math.isfinite(duration) or duration <= 0):
        duration = None

    fps = _rate(stream.average_rate) or _rate(stream.guessed_rate) or _rate(stream.base_rate)
    width = int(stream.codec_context.width or 0)
    height = int(stream.codec_context.height or 0)

    # Packet timestamps: the first few decide whether the frame rate varies; all of them give the duration when the
    # metadata has none.
    scan = _scan_packets(container, stream, None if duration is None else _VFR_PROBE_PACKETS)
    vfr = _is_variable_rate(scan.times[:_VFR_PROBE_PACKETS], tb)
    if duration is None:
        if scan.end is not None and scan.end > 0:
            duration = scan.end
        elif scan.count == 0:
            raise VideoError(path, "empty", "the video stream contains no frames")
    if duration is None or width <= 0 or height <= 0:
        # Last resort (no timestamps or no size in the headers): decode the whole stream, from a fresh handle.
        with _open_input(path) as fresh:
            end, count, dec_w, dec_h = _decoded_end(fresh, _video_stream(fresh, path), fps)
        if count == 0:
            raise VideoError(path, "empty", "the video stream contains no decodable frames")
        duration = duration if duration is not None else end
        width, height = (width, height) if width > 0 and height > 0 else (dec_w, dec_h)
    if duration is None or duration <= 0:
        raise VideoError(path, "empty", "the video has zero duration")
    if fps is None:
        fps = scan.count / duration if scan.count else 1.0
    return VideoInfo(path=str(path), duration=duration, fps=fps, width=width, height=height, variable_frame_rate=vfr)


def probe_video(path: str | Path) -> VideoInfo:
    """Metadata of a video file, read from the container/stream headers.

    The duration comes from the video stream, else the container; when neither has one it is the end of the last
    packet (or, when packets carry no timestamps either, of the last decoded frame). ``variable_frame_rate`` is a
    heuristic from the first packets' timestamps. Raises `VideoError`.
    """
    p = Path(path)
    with _open_input(p) as container:
        try:
            stream = _video_stream(container, p)
            return _probe_open(container, stream, p)
        except VideoError:
            raise
        except _AV_ERRORS as exc:
            raise _translate(p, exc) from exc


# --------------------------------------------------------------------------------------------------- sampling


def target_times(info: VideoInfo, cfg: SamplingConfig) -> np.ndarray:
    """The times (s) to sample: bin centres over the window ``[start, end)`` of the video.

    fps mode: bins of ``1/fps`` seconds from ``start``; a last, partial bin gets the centre of its covered part
    (a 10 s video at 1 fps gives 0.5, 1.5, ..., 9.5). num_frames mode: ``num_frames`` equal bins over the window.
    Raises `PseudoError` when the window lies outside the video.
    """
    lo = cfg.start if cfg.start is not None else 0.0
    hi = info.duration if cfg.end is None else min(cfg.end, info.duration)
    if hi <= lo:
        raise PseudoError(
            f"{info.path}: the sampling window start={lo:g}s end={cfg.end if cfg.end is not None else 'None'} "
            f"is outside the video (duration {info.duration:.3f}s)"
        )
    span = hi - lo
    if cfg.num_frames is not None:
        n = cfg.num_frames
        return lo + (np.arange(n, dtype=np.float64) + 0.5) * (span / n)
    assert cfg.fps is not None  # guaranteed by SamplingConfig's validator
    step = 1.0 / cfg.fps
    n = max(1, math.ceil(span * cfg.fps - 1e-6))
    left = lo + np.arange(n, dtype=np.float64) * step
    right = np.minimum(left + step, hi)
    return (left + right) / 2.0


def resized_size(width: int, height: int, max_side: int | None) -> tuple[int, int]:
    """(width, height) with the longer side capped at ``max_side``, keeping the aspect ratio; never upscales."""
    longer = max(width, height)
    if max_side is None or longer <= max_side:
        return width, height
    if width >= height:
        return max_side, max(1, round(height * max_side / width))
    return max(1, round(width * max_side / height)), max_side


@dataclass
class _DecodeLog:
    bad_packets: int = 0
    last_error: str | None = None
    demux_error: str | None = None


def _iter_decoded(container: Any, stream: Any, log: _DecodeLog) -> Iterator[Any]:
    """Decoded frames of ``stream`` in presentation order. Undecodable packets are skipped; damage that stops the
    demuxer ends the iteration (after flushing the frames the decoder still holds). Both are recorded in ``log``."""
    packets = container.demux(stream)
    while True:
        try:
            packet = next(packets)
        except StopIteration:
            return
        except _AV_ERRORS as exc:
            log.demux_error = _describe(exc)
            break
        try:
            frames = packet.decode()
        except _CODEC_ERRORS:
            raise
        except _AV_ERRORS as exc:
            log.bad_packets += 1
            log.last_error = _describe(exc)
            continue
        yield from frames
    try:
        frames = stream.codec_context.decode(None)
    except _AV_ERRORS:
        return
    yield from frames


class _Converter:
    """RGB conversion at the output size, caching the last frame (several targets may pick the same frame)."""

    def __init__(self, width: int, height: int, resize: bool) -> None:
        self.width = width
        self.height = height
        self.interpolation = "AREA" if resize else None
        self._last: tuple[Any, np.ndarray] | None = None

    def __call__(self, frame: Any) -> np.ndarray:
        if self._last is not None and self._last[0] is frame:
            return self._last[1]
        rgb = frame.reformat(
            width=self.width, height=self.height, format="rgb24", interpolation=self.interpolation
        ).to_ndarray()
        array = np.asarray(rgb, dtype=np.uint8)
        self._last = (frame, array)
        return array


def _decode_targets(
    path: Path, info: VideoInfo, targets: np.ndarray, out_size: tuple[int, int], seek_to: float | None
) -> SampledVideo | None:
    """One decode pass picking the nearest-pts frame for each target. None: the seek overshot; retry without."""
    n = int(targets.size)
    out_w, out_h = out_size
    timestamps = np.full(n, np.nan, dtype=np.float64)
    frames = np.zeros((n, out_h, out_w, 3), dtype=np.uint8)
    truncated, decoded_end = False, None
    convert = _Converter(out_w, out_h, resize=(out_w, out_h) != (info.width, info.height))
    log = _DecodeLog()

    with _open_input(path) as container:
        stream = _video_stream(container, path)
        stream.thread_type = "AUTO"
        tb = _time_base(stream)
        origin = _stream_origin(stream)
        if seek_to is not None:
            if tb is None:
                return None
            try:
                container.seek(int((seek_to + origin) / tb), stream=stream, backward=True, any_frame=False)
            except _AV_ERRORS:
                return None

        def take(index: int, t: float, frame: Any) -> None:
            timestamps[index] = t
            frames[index] = convert(frame)

        step = 1.0 / info.fps
        prev_t: float | None = None
        prev_frame: Any = None
        prev_dur = step
        i = 0
        try:
            for frame in _iter_decoded(container, stream, log):
                if frame.pts is not None and frame.time_base:
                    t = float(frame.pts * frame.time_base) - origin
                else:  # no timestamp (e.g. raw elementary streams): continue at the nominal rate
                    t = 0.0 if prev_t is None else prev_t + step
                if prev_t is None:
                    if seek_to is not None and t > targets[0]:
                        return None
                elif t <= prev_t:  # duplicate or out-of-order pts: keep the first frame shown at that time
                    continue
                while i < n and targets[i] <= t:
                    if prev_t is not None and targets[i] - prev_t <= t - targets[i]:
                        take(i, prev_t, prev_frame)
                    else:
                        take(i, t, frame)
                    i += 1
                if i == n:
                    break
                prev_t, prev_frame = t, frame
                prev_dur = float(frame.duration * frame.time_base) if frame.duration and frame.time_base else step
            else:
                if i < n:
                    if prev_t is None:
                        if log.demux_error is not None or log.bad_packets:
                            error = log.demux_error or log.last_error
                            raise VideoError(path, "corrupt", f"no frame could be decoded ({error})")
                        raise VideoError(path, "empty", "the video stream contains no decodable frames")
                    covered = prev_t + prev_dur
                    tolerance = max(1.0, 2.0 * step)
                    truncated = covered < info.duration - tolerance
                    decoded_end = covered
                    if truncated:
                        reachable = max(i, int(np.searchsorted(targets, covered, side="left")))
                        if reachable == 0:
                            raise VideoError(
                                path,
                                "corrupt",
                                f"the file is truncated or damaged: decodable video ends at {covered:.2f}s of "
                                f"{info.duration:.2f}s, before the first requested frame at {targets[0]:.2f}s",
                            )
                        logger.warning(
                            "%s: truncated or damaged: decodable video ends at %.2fs of %.2fs; returning %d of %d "
                            "frames%s",
                            path,
                            covered,
                            info.duration,
                            reachable,
                            n,
                            f" ({log.demux_error or log.last_error})" if log.demux_error or log.last_error else "",
                        )
                    else:
                        reachable = n
                    for j in range(i, reachable):
                        take(j, prev_t, prev_frame)
                    i = reachable
        except VideoError:
            raise
        except _CODEC_ERRORS as exc:
            raise _translate(path, exc) from exc
        except _AV_ERRORS as exc:  # pixel formats swscale cannot convert, and the like
            raise VideoError(path, "unsupported_codec", f"cannot convert frames to RGB ({_describe(exc)})") from exc

    if log.bad_packets:
        logger.warning("%s: skipped %d undecodable packet(s) (%s)", path, log.bad_packets, log.last_error)
    return SampledVideo(
        info=info, timestamps=timestamps[:i], frames=frames[:i], truncated=truncated, decoded_end=decoded_end
    )


def sample_frames(path: str | Path, cfg: SamplingConfig | None = None) -> SampledVideo:
    """Sample RGB frames from a video (see `target_times` for which times), resized to ``cfg.max_side``.

    One sequential decode pass (a window starting after a few seconds seeks once to just before it); each target
    time gets the decoded frame whose real pts is nearest, so variable-frame-rate videos are handled, and a frame
    may be repeated when sampling faster than the video's frame rate. ``timestamps`` are the chosen frames' pts.

    Damaged files: packets the decoder rejects are skipped (logged). A truncated file (or one whose demuxing
    fails midway) returns the frames decoded before the damage: targets up to the end of the last decodable frame
    are kept, later ones are dropped (so fewer than the requested frames come back) and a warning is logged. If no
    requested frame lies before the damage, or the file cannot be opened at all (e.g. an MP4 cut before its index,
    which MP4 writers put at the end), `VideoError` with reason ``corrupt`` is raised.
    """
    p = Path(path)
    cfg = cfg if cfg is not None else SamplingConfig()
    info = probe_video(p)
    targets = target_times(info, cfg)
    out_size = resized_size(info.width, info.height, cfg.max_side)
    seek_to: float | None = None
    if cfg.start is not None and cfg.start >= _MIN_SEEK_START_S:
        seek_to = float(targets[0]) - _SEEK_MARGIN_S
    result = _decode_targets(p, info, targets, out_size, seek_to)
    if result is None:  # the seek failed or landed after the first target: decode from the beginning instead
        result = _decode_targets(p, info, targets, out_size, None)
    assert result is not None
    return result


def list_videos(directory: str | Path, extensions: Sequence[str] = VIDEO_EXTENSIONS) -> list[Path]:
    """Video files directly inside ``directory`` (not recursive), sorted; extensions match case-insensitively.

    Hidden files (names starting with ".", e.g. macOS "._clip.mp4" resource forks) are skipped.
    """
    d = Path(directory)
    if not d.exists():
        raise DataNotFoundError(f"{d}: video directory does not exist")
    if not d.is_dir():
        raise PseudoError(f"{d}: is not a directory (expected a folder of videos)")
    wanted = {e.lower() if e.startswith(".") else f".{e.lower()}" for e in extensions}
    return sorted(p for p in d.iterdir() if p.suffix.lower() in wanted and not p.name.startswith(".") and p.is_file())

"""Synthetic test videos written with PyAV (no ffmpeg command line needed).

A video is a list of scenes: ``(colour, seconds)`` with an RGB tuple for a solid colour, or an int seed for a static
noise texture (see `texture`). `make_video` returns the cut times, so tests can check what was sampled where.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

Scene = tuple[int, int, int] | int
Segment = tuple[Scene, float]

_EPS = 1e-9
_FORMATS = {
    ".mkv": "matroska",
    ".webm": "webm",
    ".mp4": "mp4",
    ".m4v": "mp4",
    ".mov": "mov",
    ".avi": "avi",
    ".ts": "mpegts",
}
_VFR_TIME_BASE = Fraction(1, 1000)  # VFR files are written with millisecond pts


def texture(seed: int, size: tuple[int, int] = (64, 48), block: int = 8) -> np.ndarray:
    """The (height, width, 3) uint8 texture for a seed: random colours in ``block``-pixel squares."""
    width, height = size
    rng = np.random.default_rng(seed)
    cells = rng.integers(0, 256, size=(math.ceil(height / block), math.ceil(width / block), 3), dtype=np.uint8)
    big = np.repeat(np.repeat(cells, block, axis=0), block, axis=1)
    return np.ascontiguousarray(big[:height, :width])


def scene_image(scene: Scene, size: tuple[int, int]) -> np.ndarray:
    """The (height, width, 3) uint8 image of one scene."""
    width, height = size
    if isinstance(scene, int):
        return texture(scene, size)
    return np.full((height, width, 3), scene, dtype=np.uint8)


def frame_times(duration: float, fps: float = 10, vfr: bool = False) -> list[float]:
    """The presentation times (s) of the frames `make_video` writes for a video of ``duration`` seconds.

    Constant rate: ``i / fps``. Variable rate: gaps alternate between 0.5/fps and 1.5/fps (same average rate),
    rounded to whole milliseconds, which is what the file stores.
    """
    if not vfr:
        return [i / fps for i in range(math.ceil(duration * fps - _EPS))]
    times: list[float] = []
    ms, k = 0, 0
    while ms / 1000 < duration - _EPS:
        times.append(ms / 1000)
        ms += round((0.5 if k % 2 == 0 else 1.5) * 1000 / fps)
        k += 1
    return times


class _NonSeekable(io.RawIOBase):
    """A write-only file wrapper that cannot seek, so muxers cannot go back to write durations or indexes."""

    def __init__(self, raw: io.BufferedWriter) -> None:
        super().__init__()
        self._raw = raw

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        return self._raw.write(data)


def _pix_fmt(codec: str) -> str:
    return "yuvj420p" if codec == "mjpeg" else "yuv420p"


def _codec_options(codec: str) -> dict[str, str]:
    if codec == "libx264":
        return {"crf": "12"}
    if codec == "libvpx":
        return {"crf": "4", "b": "2M"}
    if codec in ("mpeg4", "mjpeg"):
        return {"b": "4M"}
    return {}


def make_video(
    path: str | Path,
    segments: Sequence[Segment],
    fps: float = 10,
    size: tuple[int, int] = (64, 48),
    codec: str = "libx264",
    vfr: bool = False,
    container: str | None = None,
    gop_size: int | None = None,
    seekable: bool = True,
) -> list[float]:
    """Write a video of solid-colour / textured scenes and return the cut times (s) between consecutive scenes.

    ``size`` is (width, height); ``container`` a muxer name (default: from the file extension); ``gop_size`` the
    keyframe interval in frames; ``vfr`` writes irregular pts (see `frame_times`); ``seekable=False`` writes like
    a stream, so the file carries no duration/index metadata. A frame at time t shows the scene whose interval
    ``[cut_before, cut_after)`` contains t.
    """
    ends = np.cumsum([seconds for _, seconds in segments]).tolist()
    total = ends[-1] if ends else 0.0
    rate = Fraction(fps).limit_denominator(1001)
    images = [scene_image(scene, size) for scene, _ in segments]

    if container is None and not seekable:
        container = _FORMATS.get(Path(path).suffix.lower())
    with open(path, "wb") as raw:
        target: str | io.RawIOBase = str(path) if seekable else _NonSeekable(raw)
        out = av.open(target, mode="w", format=container)
        try:
            stream = out.add_stream(codec, rate=rate, options=_codec_options(codec))
            assert isinstance(stream, av.video.stream.VideoStream)
            stream.width, stream.height = size
            stream.pix_fmt = _pix_fmt(codec)
            if gop_size is not None:
                stream.codec_context.gop_size = gop_size
            time_base = _VFR_TIME_BASE if vfr else 1 / rate
            if vfr:
                stream.time_base = time_base
                stream.codec_context.time_base = time_base
            out.start_encoding()  # writes the header even when there are no frames
            for index, t in enumerate(frame_times(total, fps, vfr)):
                scene = next(k for k, end in enumerate(ends) if t < end - _EPS)
                frame = av.VideoFrame.from_ndarray(images[scene], format="rgb24")
                frame.pts = round(t / time_base) if vfr else index
                frame.time_base = time_base
                for packet in stream.encode(frame):
                    out.mux(packet)
            for packet in stream.encode():
                out.mux(packet)
        finally:
            out.close()
    return [float(t) for t in ends[:-1]]


def make_empty_video(path: str | Path, codec: str = "libx264", container: str | None = None) -> None:
    """A container with a video stream header but no frames."""
    make_video(path, [], codec=codec, container=container)


def make_audio_only(path: str | Path, seconds: float = 1.0, codec: str | None = None) -> None:
    """A file with only an audio stream (a 440 Hz tone); the codec defaults from the extension (AAC for .mp4)."""
    suffix = Path(path).suffix.lower()
    if codec is None:
        codec = {".wav": "pcm_s16le", ".mp2": "mp2", ".opus": "libopus", ".ogg": "libopus"}.get(suffix, "aac")
    sample_rate = 48000
    out = av.open(str(path), mode="w")
    try:
        stream = out.add_stream(codec, rate=sample_rate)
        assert isinstance(stream, av.audio.stream.AudioStream)
        chunk = 960
        total = int(seconds * sample_rate)
        for start in range(0, total, chunk):
            t = (np.arange(start, min(start + chunk, total)) / sample_rate).astype(np.float32)
            samples = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None, :]
            frame = av.AudioFrame.from_ndarray(samples, format="flt", layout="mono")
            frame.sample_rate = sample_rate
            frame.pts = start
            frame.time_base = Fraction(1, sample_rate)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    finally:
        out.close()


def make_corrupt(path: str | Path, size: int = 4096, seed: int = 0) -> None:
    """Random bytes (no container can parse them)."""
    Path(path).write_bytes(np.random.default_rng(seed).integers(0, 256, size=size, dtype=np.uint8).tobytes())


def truncate(path: str | Path, fraction: float) -> int:
    """Cut the file to its first ``fraction`` of bytes, as an interrupted download would; returns the new size."""
    p = Path(path)
    data = p.read_bytes()
    keep = int(len(data) * fraction)
    p.write_bytes(data[:keep])
    return keep


def make_unknown_codec(path: str | Path) -> None:
    """An AVI whose video codec tag is unknown to FFmpeg (an MPEG-4 file with its FourCC renamed)."""
    p = Path(path)
    make_video(p, [((200, 0, 0), 1.0)], codec="mpeg4", container="avi")
    data = p.read_bytes()
    assert data.count(b"FMP4") >= 1, "expected the MPEG-4 FourCC in the AVI headers"
    p.write_bytes(data.replace(b"FMP4", b"QQQQ"))

"""Frame sampling (pseudo.video) on small synthetic videos written by tests/videos.py."""

from __future__ import annotations

import logging
import pickle
from pathlib import Path

import av
import numpy as np
import pytest
from pydantic import ValidationError
from videos import (
    frame_times,
    make_audio_only,
    make_corrupt,
    make_empty_video,
    make_unknown_codec,
    make_video,
    texture,
    truncate,
)

from pseudo.errors import PseudoError
from pseudo.video import (
    SamplingConfig,
    VideoError,
    VideoInfo,
    list_videos,
    probe_video,
    resized_size,
    sample_frames,
    target_times,
)

RED = (230, 20, 20)
GREEN = (20, 230, 20)
BLUE = (20, 20, 230)
TOL = 12  # max per-channel error of a solid colour after lossy coding + YUV round trip


def centre(frame: np.ndarray) -> np.ndarray:
    h, w = frame.shape[:2]
    return np.asarray(frame[h // 2, w // 2], dtype=np.int64)


def assert_colour(frame: np.ndarray, colour: tuple[int, int, int]) -> None:
    got = centre(frame)
    assert np.abs(got - np.array(colour)).max() <= TOL, f"centre pixel {got.tolist()} is not {colour}"


def nearest_times(times: list[float], target: float) -> set[float]:
    """The frame time(s) nearest to target (two on an exact tie)."""
    arr = np.asarray(times)
    dist = np.abs(arr - target)
    return {float(t) for t in arr[dist <= dist.min() + 1e-6]}


@pytest.fixture(scope="module")
def ten_seconds(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[float]]:
    """10 s at 10 fps, 64x48: red 3 s, texture(7) 4 s, blue 3 s."""
    path = tmp_path_factory.mktemp("videos") / "ten.mp4"
    cuts = make_video(path, [(RED, 3.0), (7, 4.0), (BLUE, 3.0)])
    return path, cuts


# ----------------------------------------------------------------------------------------------- sampling modes


def test_probe_reports_metadata(ten_seconds: tuple[Path, list[float]]) -> None:
    path, cuts = ten_seconds
    assert cuts == [3.0, 7.0]
    info = probe_video(path)
    assert info.path == str(path)
    assert info.duration == pytest.approx(10.0, abs=1e-3)
    assert info.fps == pytest.approx(10.0, abs=1e-3)
    assert (info.width, info.height) == (64, 48)
    assert info.variable_frame_rate is False


def test_fps_mode_gives_bin_centres(ten_seconds: tuple[Path, list[float]]) -> None:
    path, _ = ten_seconds
    out = sample_frames(path, SamplingConfig(fps=1.0))
    assert out.timestamps.dtype == np.float64
    np.testing.assert_allclose(out.timestamps, np.arange(10) + 0.5, atol=1e-6)
    assert out.frames.shape == (10, 48, 64, 3)
    assert out.frames.dtype == np.uint8
    assert out.info.duration == pytest.approx(10.0, abs=1e-3)


def test_fps_faster_than_video_repeats_real_frames(ten_seconds: tuple[Path, list[float]]) -> None:
    path, _ = ten_seconds
    out = sample_frames(path, SamplingConfig(fps=25.0))
    assert len(out.timestamps) == 250
    real = np.round(out.timestamps * 10)  # every timestamp is a real frame time (multiple of 0.1 s)
    np.testing.assert_allclose(out.timestamps, real / 10, atol=1e-6)
    targets = target_times(out.info, SamplingConfig(fps=25.0))
    inside = targets <= 9.9  # the last frame is at 9.9 s; later targets can only get that frame
    assert np.abs(out.timestamps - targets)[inside].max() <= 0.05 + 1e-6
    np.testing.assert_allclose(out.timestamps[~inside], 9.9, atol=1e-6)
    assert np.all(np.diff(out.timestamps) >= 0)


def test_num_frames_mode(ten_seconds: tuple[Path, list[float]]) -> None:
    path, _ = ten_seconds
    cfg = SamplingConfig(num_frames=5)
    assert cfg.fps is None
    out = sample_frames(path, cfg)
    np.testing.assert_allclose(out.timestamps, [1.0, 3.0, 5.0, 7.0, 9.0], atol=1e-6)
    assert out.frames.shape == (5, 48, 64, 3)
    np.testing.assert_allclose(target_times(out.info, SamplingConfig(num_frames=4)), [1.25, 3.75, 6.25, 8.75])


def test_target_times_partial_last_bin_and_window() -> None:
    info = VideoInfo(path="x.mp4", duration=2.5, fps=30.0, width=64, height=48, variable_frame_rate=False)
    np.testing.assert_allclose(target_times(info, SamplingConfig(fps=1.0)), [0.5, 1.5, 2.25])
    np.testing.assert_allclose(target_times(info, SamplingConfig(fps=2.0, start=1.0, end=2.0)), [1.25, 1.75])
    np.testing.assert_allclose(target_times(info, SamplingConfig(num_frames=2, start=0.5, end=9.0)), [1.0, 2.0])
    with pytest.raises(PseudoError, match="outside the video"):
        target_times(info, SamplingConfig(start=3.0))


def test_resize_keeps_aspect_and_caps_longer_side(tmp_path: Path) -> None:
    wide = tmp_path / "wide.mp4"
    make_video(wide, [(GREEN, 1.0)], size=(320, 180))
    out = sample_frames(wide, SamplingConfig(max_side=64))
    assert out.frames.shape == (1, 36, 64, 3)
    assert_colour(out.frames[0], GREEN)
    assert sample_frames(wide, SamplingConfig(max_side=1000)).frames.shape == (1, 180, 320, 3)  # never upscaled
    assert sample_frames(wide, SamplingConfig(max_side=None)).frames.shape == (1, 180, 320, 3)

    tall = tmp_path / "tall.mkv"
    make_video(tall, [(BLUE, 1.0)], size=(48, 96))
    out = sample_frames(tall, SamplingConfig(max_side=32))
    assert out.frames.shape == (1, 32, 16, 3)
    assert_colour(out.frames[0], BLUE)

    assert resized_size(1920, 1080, 224) == (224, 126)
    assert resized_size(1080, 1920, 224) == (126, 224)
    assert resized_size(100, 50, 224) == (100, 50)
    assert resized_size(1000, 1, 10) == (10, 1)


def test_window(ten_seconds: tuple[Path, list[float]]) -> None:
    path, _ = ten_seconds
    out = sample_frames(path, SamplingConfig(start=2.0, end=5.0))
    np.testing.assert_allclose(out.timestamps, [2.5, 3.5, 4.5], atol=1e-6)
    assert_colour(out.frames[0], RED)
    planted = texture(7, (64, 48)).astype(int)
    assert np.abs(out.frames[1:].astype(int) - planted).mean() < 8  # 3.5 s and 4.5 s lie in the textured scene
    out = sample_frames(path, SamplingConfig(start=8.0, end=50.0))  # end is clipped to the video
    np.testing.assert_allclose(out.timestamps, [8.5, 9.5], atol=1e-6)
    assert_colour(out.frames[1], BLUE)
    with pytest.raises(PseudoError, match="outside the video"):
        sample_frames(path, SamplingConfig(start=12.0))


@pytest.mark.parametrize(("name", "vfr"), [("late.mp4", False), ("late.mkv", True)])
def test_late_window_matches_nearest_frames(tmp_path: Path, name: str, vfr: bool) -> None:
    """A window deep into the video (decoded after one seek) picks the same frames a full decode would."""
    path = tmp_path / name
    cuts = make_video(path, [(RED, 10.0), (GREEN, 10.0), (BLUE, 10.0)], gop_size=10, vfr=vfr)
    cfg = SamplingConfig(fps=2.0, start=19.0, end=22.0)
    out = sample_frames(path, cfg)
    times = frame_times(30.0, 10, vfr)
    targets = target_times(out.info, cfg)
    np.testing.assert_allclose(targets, [19.25, 19.75, 20.25, 20.75, 21.25, 21.75])
    assert len(out.timestamps) == len(targets)
    for t, target, frame in zip(out.timestamps, targets, out.frames, strict=True):
        assert round(float(t), 3) in nearest_times(times, float(target))
        assert_colour(frame, GREEN if t < cuts[1] else BLUE)


def test_sampled_colours_match_planted_scenes(ten_seconds: tuple[Path, list[float]]) -> None:
    path, cuts = ten_seconds
    out = sample_frames(path, SamplingConfig(fps=2.0))
    assert len(out.frames) == 20
    planted = texture(7, (64, 48)).astype(int)
    other = texture(8, (64, 48)).astype(int)
    for t, frame in zip(out.timestamps, out.frames, strict=True):
        if t < cuts[0]:
            assert_colour(frame, RED)
        elif t < cuts[1]:
            err = np.abs(frame.astype(int) - planted).mean()
            assert err < 8, f"frame at {t:.2f}s differs from the planted texture by {err:.1f}"
            assert np.abs(frame.astype(int) - other).mean() > 40
        else:
            assert_colour(frame, BLUE)


@pytest.mark.parametrize("name", ["vfr.mp4", "vfr.mkv"])
def test_variable_frame_rate_uses_real_timestamps(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    cuts = make_video(path, [(RED, 5.0), (BLUE, 5.0)], vfr=True)
    times = frame_times(10.0, 10, vfr=True)
    assert times[:4] == [0.0, 0.05, 0.2, 0.25]  # the irregular gaps the sampler has to cope with
    info = probe_video(path)
    assert info.variable_frame_rate is True
    assert info.fps == pytest.approx(10.0, abs=0.2)
    assert info.duration == pytest.approx(10.0, abs=0.1)

    cfg = SamplingConfig(fps=2.0)
    out = sample_frames(path, cfg)
    targets = target_times(info, cfg)
    assert len(out.timestamps) == len(targets) == 20
    for t, target, frame in zip(out.timestamps, targets, out.frames, strict=True):
        assert round(float(t), 3) in nearest_times(times, float(target)), (t, target)
        assert_colour(frame, RED if t < cuts[0] else BLUE)
    # A sampler assuming a constant rate would report the bin centres; the real pts differ from them.
    assert np.abs(out.timestamps - targets).max() >= 0.04


@pytest.mark.parametrize(
    ("codec", "suffix"),
    [
        ("mpeg4", ".avi"),
        ("mjpeg", ".avi"),
        ("mjpeg", ".mkv"),
        ("ffv1", ".mkv"),
        ("libvpx", ".webm"),
        ("libx264", ".mov"),
    ],
)
def test_other_codecs_and_containers(tmp_path: Path, codec: str, suffix: str) -> None:
    path = tmp_path / f"clip{suffix}"
    cuts = make_video(path, [(RED, 2.0), (GREEN, 2.0)], codec=codec)
    info = probe_video(path)
    assert (info.width, info.height) == (64, 48)
    assert info.duration == pytest.approx(4.0, abs=0.05)
    assert info.fps == pytest.approx(10.0, abs=0.01)
    assert info.variable_frame_rate is False
    out = sample_frames(path, SamplingConfig(fps=1.0))
    np.testing.assert_allclose(out.timestamps, [0.5, 1.5, 2.5, 3.5], atol=1e-3)
    for t, frame in zip(out.timestamps, out.frames, strict=True):
        assert_colour(frame, RED if t < cuts[0] else GREEN)


def test_duration_falls_back_when_metadata_is_missing(tmp_path: Path) -> None:
    path = tmp_path / "stream.webm"
    make_video(path, [(RED, 3.0)], codec="libvpx", seekable=False)
    with av.open(str(path)) as container:  # precondition: the headers really carry no duration
        assert container.duration is None
        assert container.streams.video[0].duration is None
    info = probe_video(path)
    assert info.duration == pytest.approx(3.0, abs=0.01)
    out = sample_frames(path, SamplingConfig(fps=1.0))
    np.testing.assert_allclose(out.timestamps, [0.5, 1.5, 2.5], atol=1e-3)


# ----------------------------------------------------------------------------------------------- bad files


def _video_error(path: Path) -> VideoError:
    """Both entry points must fail the same way; returns sample_frames' error."""
    with pytest.raises(VideoError) as probed:
        probe_video(path)
    with pytest.raises(VideoError) as sampled:
        sample_frames(path, SamplingConfig())
    assert probed.value.reason == sampled.value.reason
    assert sampled.value.path == path
    assert str(sampled.value).startswith(f"{path}: {sampled.value.reason}: ")
    assert isinstance(sampled.value, PseudoError)
    return sampled.value


def test_corrupt_file(tmp_path: Path) -> None:
    path = tmp_path / "junk.mp4"
    make_corrupt(path)
    err = _video_error(path)
    assert err.reason == "corrupt"
    assert "damaged" in str(err)
    copy = pickle.loads(pickle.dumps(err))  # survives worker processes
    assert (copy.path, copy.reason, str(copy)) == (err.path, err.reason, str(err))


def test_audio_only(tmp_path: Path) -> None:
    path = tmp_path / "speech.mp4"
    make_audio_only(path)
    err = _video_error(path)
    assert err.reason == "no_video_stream"
    assert "audio" in str(err)


@pytest.mark.parametrize(("name", "codec"), [("none.avi", "mpeg4"), ("none.mkv", "libx264"), ("none.mp4", "libx264")])
def test_video_stream_without_frames_is_empty(tmp_path: Path, name: str, codec: str) -> None:
    path = tmp_path / name
    make_empty_video(path, codec=codec)
    assert path.stat().st_size > 0
    assert _video_error(path).reason == "empty"


def test_zero_byte_file_is_empty(tmp_path: Path) -> None:
    path = tmp_path / "zero.mp4"
    path.touch()
    err = _video_error(path)
    assert err.reason == "empty"
    assert "0 bytes" in str(err)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    err = _video_error(tmp_path / "nope.mp4")
    assert err.reason == "not_found"
    assert "no such file" in str(err)
    folder = tmp_path / "folder.mp4"
    folder.mkdir()
    assert _video_error(folder).reason == "not_found"


def test_unknown_codec(tmp_path: Path) -> None:
    path = tmp_path / "alien.avi"
    make_unknown_codec(path)
    err = _video_error(path)
    assert err.reason == "unsupported_codec"
    assert "re-encode" in str(err)


def test_truncated_file_returns_frames_before_the_damage(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "cut.mkv"
    cuts = make_video(path, [(RED, 5.0), (BLUE, 5.0)], codec="ffv1")  # intra-only: bytes ~ proportional to time
    full = sample_frames(path, SamplingConfig(fps=1.0))
    assert len(full.timestamps) == 10
    truncate(path, 0.5)
    with caplog.at_level(logging.WARNING, logger="pseudo.video"):
        part = sample_frames(path, SamplingConfig(fps=1.0))
    assert 2 <= len(part.timestamps) <= 8
    np.testing.assert_allclose(part.timestamps, full.timestamps[: len(part.timestamps)], atol=1e-6)
    np.testing.assert_array_equal(part.frames, full.frames[: len(part.frames)])
    for t, frame in zip(part.timestamps, part.frames, strict=True):
        assert_colour(frame, RED if t < cuts[0] else BLUE)
    assert part.info.duration == pytest.approx(10.0, abs=0.01)  # what the header claims
    assert any("truncated" in r.getMessage() and str(path) in r.getMessage() for r in caplog.records)


def test_truncated_file_without_usable_frames_is_corrupt(tmp_path: Path) -> None:
    mp4 = tmp_path / "cut.mp4"  # the MP4 index (moov) is written last, so a cut file cannot be opened
    make_video(mp4, [(RED, 4.0)])
    truncate(mp4, 0.5)
    assert _video_error(mp4).reason == "corrupt"

    mkv = tmp_path / "early.mkv"  # the damage comes before the first requested frame
    make_video(mkv, [(RED, 10.0)], codec="ffv1")
    truncate(mkv, 0.02)
    with pytest.raises(VideoError) as err:
        sample_frames(mkv, SamplingConfig(fps=1.0))
    assert err.value.reason == "corrupt"
    assert "truncated" in str(err.value)


# ----------------------------------------------------------------------------------------------- config


def test_sampling_config_validation() -> None:
    with pytest.raises(ValidationError) as both:
        SamplingConfig(fps=2.0, num_frames=8)
    assert "fps" in str(both.value)
    assert "num_frames" in str(both.value)
    with pytest.raises(ValidationError, match="neither fps nor num_frames"):
        SamplingConfig(fps=None)
    assert SamplingConfig(num_frames=8).fps is None
    assert SamplingConfig().fps == 1.0
    for bad in ({"fps": 0}, {"fps": -1}, {"num_frames": 0}, {"max_side": 0}, {"start": -1.0}, {"fps": float("inf")}):
        with pytest.raises(ValidationError):
            SamplingConfig.model_validate(bad)
    with pytest.raises(ValidationError, match="greater than start"):
        SamplingConfig(start=5.0, end=5.0)
    with pytest.raises(ValidationError, match="max_sidee"):
        SamplingConfig.model_validate({"max_sidee": 3})
    cfg = SamplingConfig()
    with pytest.raises(ValidationError):
        cfg.fps = 2.0


def test_settings_hash() -> None:
    base = SamplingConfig()
    h = base.settings_hash()
    assert len(h) == 12
    assert int(h, 16) >= 0
    assert SamplingConfig(fps=1).settings_hash() == h  # same settings, same hash
    variants = [
        SamplingConfig(fps=2.0),
        SamplingConfig(num_frames=16),
        SamplingConfig(max_side=336),
        SamplingConfig(max_side=None),
        SamplingConfig(start=1.0),
        SamplingConfig(end=30.0),
    ]
    hashes = {v.settings_hash() for v in variants}
    assert len(hashes) == len(variants)
    assert h not in hashes


# ----------------------------------------------------------------------------------------------- listing


def test_list_videos(tmp_path: Path) -> None:
    for name in ["b.mkv", "a.MP4", "d.webm", "notes.txt", "._a.mp4", "c.Mov"]:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "e.mp4").write_bytes(b"x")
    (tmp_path / "dir.mp4").mkdir()
    assert [p.name for p in list_videos(tmp_path)] == ["a.MP4", "b.mkv", "c.Mov", "d.webm"]
    assert list_videos(tmp_path, extensions=("MKV", "webm")) == [tmp_path / "b.mkv", tmp_path / "d.webm"]
    with pytest.raises(PseudoError, match="does not exist"):
        list_videos(tmp_path / "missing")
    with pytest.raises(PseudoError, match="not a directory"):
        list_videos(tmp_path / "b.mkv")

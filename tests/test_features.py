from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pseudo.backbones import BackboneConfig, build_backbone
from pseudo.data.store import ArrayDirectory, FeatureStore, StaleStoreError, VideoFeatures, open_features
from pseudo.errors import PseudoError
from pseudo.stages.features import FeaturesConfig
from pseudo.video import SamplingConfig


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from pseudo.testing import save_random_clip

    return save_random_clip(tmp_path_factory.mktemp("clip") / "tiny")


def _feats(vid: str, n: int = 6, d: int = 4) -> VideoFeatures:
    rng = np.random.default_rng(0)
    return VideoFeatures(
        vid, rng.normal(size=(n, d)).astype(np.float32), np.arange(n, dtype=np.float64) + 0.5, float(n)
    )


def test_store_roundtrip_resume_and_stale(tmp_path: Path) -> None:
    cfg = FeaturesConfig(dtype="float32")
    store = FeatureStore.open(tmp_path / "s", cfg)
    assert not store.has("a")
    f = _feats("a")
    store.put(f, source="a.mp4")
    assert store.has("a") and store.vids() == ["a"]
    got = FeatureStore.load(tmp_path / "s").get("a")
    assert np.array_equal(got.features, f.features) and got.duration == 6.0 and got.meta["source"] == "a.mp4"
    # reopening with the same settings keeps the work
    assert FeatureStore.open(tmp_path / "s", cfg).has("a")
    # device and batch size do not change the features, so they do not change the hash
    same = FeaturesConfig(dtype="float32", backbone=BackboneConfig(device="cpu", batch_size=3))
    assert same.settings_hash() == cfg.settings_hash()
    other = FeaturesConfig(dtype="float32", sampling=SamplingConfig(fps=2.0))
    with pytest.raises(StaleStoreError, match=r"other settings.*--rebuild"):
        FeatureStore.open(tmp_path / "s", other)
    rebuilt = FeatureStore.open(tmp_path / "s", other, rebuild=True)
    assert rebuilt.vids() == [] and not rebuilt.has("a")


def test_store_ignores_a_damaged_file(tmp_path: Path) -> None:
    store = FeatureStore.open(tmp_path, FeaturesConfig())
    store.path("x").parent.mkdir(parents=True, exist_ok=True)
    store.path("x").write_bytes(b"not an npz")
    assert not store.has("x")  # recomputed on the next run rather than trusted
    assert not list(tmp_path.glob("features/.*.tmp"))


def test_array_directory_reads_real_univtg_features(data_root: Path, tmp_path: Path) -> None:
    src = data_root / "samples/univtg/vid.npz"
    (tmp_path / "charades.npz").write_bytes(src.read_bytes())
    np.save(tmp_path / "other.npy", np.ones((3, 8), np.float32))
    d = ArrayDirectory(tmp_path, clip_seconds=2.0)
    assert d.vids() == ["charades", "other"]
    f = d.get("charades")
    assert f.features.shape == (15, 512) and f.duration == 30.0
    assert f.timestamps[0] == pytest.approx(1.0)
    assert open_features(tmp_path, clip_seconds=2.0).get("other").features.shape == (3, 8)


def test_array_directory_errors(tmp_path: Path) -> None:
    with pytest.raises(PseudoError, match=r"no \.npy or \.npz"):
        ArrayDirectory(tmp_path)
    np.savez(tmp_path / "two.npz", a=np.ones((2, 2)), b=np.ones((2, 2)))
    np.save(tmp_path / "nan.npy", np.full((2, 2), np.nan))
    d = ArrayDirectory(tmp_path)
    with pytest.raises(PseudoError, match="none named 'features'"):
        d.get("two")
    with pytest.raises(PseudoError, match="finite"):
        d.get("nan")


def test_tiny_clip_backbone(tiny_clip: Path) -> None:
    frames = np.random.default_rng(0).integers(0, 255, (5, 48, 64, 3), dtype=np.uint8)
    big = build_backbone(BackboneConfig(model=str(tiny_clip), batch_size=64))
    small = build_backbone(BackboneConfig(model=str(tiny_clip), batch_size=2))
    a, b = big.encode_images(frames), small.encode_images(frames)
    assert a.shape == (5, 16) and a.dtype == np.float32
    assert np.allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    assert np.allclose(a, b, atol=1e-5)  # batching does not change results
    t = big.encode_texts(["a person opens the door", "a dog"])
    assert t.shape == (2, 16) and not np.allclose(t[0], t[1])


def test_unknown_backbone_and_missing_model(tmp_path: Path) -> None:
    with pytest.raises(PseudoError, match="unknown backbone 'vjepa'; known: hf_clip, open_clip"):
        build_backbone(BackboneConfig(name="vjepa"))
    with pytest.raises(PseudoError, match="could not load CLIP model"):
        build_backbone(BackboneConfig(model=str(tmp_path / "nothing")))


def test_text_memo_remembers_up_to_its_bound() -> None:
    """Each text is encoded once while remembered; past ``max_texts`` the least recently used goes."""
    from pseudo.backbones.memo import TextMemo

    calls: list[list[str]] = []

    class Letters:
        dim = 2

        def encode_texts(self, texts: list[str]) -> np.ndarray:
            calls.append(list(texts))
            return np.array([[ord(t[0]), len(t)] for t in texts], np.float32)

    memo = TextMemo(BackboneConfig(), max_texts=2)
    memo._encoder = Letters()  # type: ignore[assignment]
    np.testing.assert_array_equal(memo.encode_texts(["a", "bb", "a"]), [[97, 1], [98, 2], [97, 1]])
    assert calls == [["a", "bb"]]
    memo.encode_texts(["a"])  # a is now the most recent
    memo.encode_texts(["ccc"])  # bb goes
    assert list(memo.known) == ["a", "ccc"] and memo.hits == 1 and memo.encoded == 3
    np.testing.assert_array_equal(memo.encode_texts(["bb", "a"]), [[98, 2], [97, 1]])
    assert calls[-1] == ["bb"]
    assert memo.encode_texts([]).shape == (0, 2)
    with pytest.raises(ValueError, match="max_texts"):
        TextMemo(BackboneConfig(), max_texts=0)

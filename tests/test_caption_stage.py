"""Captions -> pseudo-queries: real QVHighlights clip captions (a shipped slice) with the real
MiniLM encoder, and the BLIP path on synthetic videos with tiny random models."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner
from videos import make_video

import pseudo
from proposals import ProposalConfig
from pseudo.backbones import BackboneConfig
from pseudo.captions.queries import QueryConfig
from pseudo.captions.sources import CaptionerConfig
from pseudo.cli import app
from pseudo.data import load_dataset
from pseudo.data.benchmarks import load_qvh_jsonl
from pseudo.data.captions import ExternalCaptions
from pseudo.data.store import FeatureStore, VideoFeatures
from pseudo.errors import DataFormatError
from pseudo.metrics.iou import iou_cross
from pseudo.similarity import contrast_scores
from pseudo.stages.features import FeaturesConfig, build_caption_features, build_features, caption_features_config
from pseudo.stages.labels import LabelsConfig, label_stats, run_captions, run_weak
from pseudo.stages.proposals import read_proposals, run_proposals
from pseudo.video import SamplingConfig

SLICE = Path(pseudo.__file__).parent / "assets" / "demo" / "qvhighlights_val_slice"
runner = CliRunner()


@pytest.fixture(scope="module")
def slice_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Caption features (real MiniLM) and proposals of the 8 shipped QVHighlights val videos."""
    root = tmp_path_factory.mktemp("qvh")
    durations = {q.vid: q.duration for q in load_qvh_jsonl([SLICE / "gt.jsonl"])}
    cfg = caption_features_config(SLICE / "captions")
    summary = build_caption_features(cfg, root / "store", durations=durations)
    assert len(summary.done) == 8
    run_proposals(
        FeatureStore.load(root / "store"), ProposalConfig(resample_steps=None, num_proposals=30), root / "p.jsonl"
    )
    return root / "store", root / "p.jsonl"


def test_external_captions_from_dir_and_zip(tmp_path: Path) -> None:
    track = ExternalCaptions(SLICE / "captions")
    vid = "NUsG9BgSes0_210.0_360.0"
    caps = track.captions(vid)
    assert len(caps) == 75 and (caps[0].start, caps[0].end) == (0.0, 2.0) and caps[-1].end == 150.0
    archive = tmp_path / "val.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for f in (SLICE / "captions").iterdir():
            z.write(f, f"val/{f.name}")
    zipped = ExternalCaptions(archive)
    assert zipped.vids() == track.vids() and zipped.captions(vid) == caps
    assert zipped.fingerprint() != ExternalCaptions(archive, clip_seconds=1.0).fingerprint()
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "v.jsonl").write_text('{"moment": 0, "description": "ok"}\n{"moment": 1}\n')
    with pytest.raises(DataFormatError, match=r"v\.jsonl:2: needs a 'description'"):
        ExternalCaptions(bad).captions("v")


def test_caption_features_embed_each_caption_once_across_passes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Passes of 2 videos: a caption met in an earlier pass (the slice's videos share some) is not
    embedded again, and the stored features are those of a run that remembers nothing across passes."""
    from pseudo.backbones.sentence import SentenceBackbone
    from pseudo.stages import features

    sent: list[str] = []
    encode = SentenceBackbone.encode_texts

    def counting(self: SentenceBackbone, texts: Any) -> Any:
        sent.extend(texts)
        return encode(self, texts)

    monkeypatch.setattr(SentenceBackbone, "encode_texts", counting)
    monkeypatch.setattr(features, "CAPTION_BATCH_VIDEOS", 2)
    track = ExternalCaptions(SLICE / "captions")
    per_pass = [
        {c.text for v in track.vids()[i : i + 2] for c in track.captions(v)} for i in range(0, len(track.vids()), 2)
    ]
    distinct = set().union(*per_pass)
    assert sum(len(p) for p in per_pass) > len(distinct)  # the slice has captions shared across passes
    build_caption_features(caption_features_config(SLICE / "captions"), tmp_path / "memo")
    assert len(sent) == len(set(sent)) == len(distinct)
    sent.clear()
    monkeypatch.setattr(features, "CAPTION_MEMO_TEXTS", 1)
    build_caption_features(caption_features_config(SLICE / "captions"), tmp_path / "plain")
    assert len(sent) == sum(len(p) for p in per_pass)
    a, b = FeatureStore.load(tmp_path / "memo"), FeatureStore.load(tmp_path / "plain")
    for vid in track.vids():
        np.testing.assert_allclose(a.get(vid).features, b.get(vid).features, atol=1e-5)


def test_caption_store_is_refused_when_captions_change(tmp_path: Path) -> None:
    src = tmp_path / "caps"
    src.mkdir()
    (src / "a.jsonl").write_text('{"moment": 0, "description": "a dog runs"}\n{"moment": 1, "description": "a cat"}\n')
    build_caption_features(caption_features_config(src), tmp_path / "s")
    (src / "a.jsonl").write_text('{"moment": 0, "description": "a dog runs on the beach"}\n')
    from pseudo.data.store import StaleStoreError

    with pytest.raises(StaleStoreError):
        build_caption_features(caption_features_config(src), tmp_path / "s")


def test_real_captions_become_pseudo_annotations(tmp_path: Path, slice_store: tuple[Path, Path]) -> None:
    store_dir, props = slice_store
    out = tmp_path / "pseudo.jsonl"
    cfg = LabelsConfig(captioner=CaptionerConfig(name="external", captions=str(SLICE / "captions")))
    summary, queries = run_captions(props, out, cfg, FeatureStore.load(store_dir))
    assert len(summary.done) == 8 and not summary.failed
    loaded = load_dataset("jsonl", "custom", files=[out])  # the same loader as real annotations
    assert len(loaded) == len(queries) > 8 * 5
    track = ExternalCaptions(SLICE / "captions")
    for q in loaded:
        assert q.source == "pseudo"
        ((s, e),) = q.windows
        assert 0 <= s < e <= q.duration
        caps = track.captions(q.vid)
        assert q.query in {c.text for c in caps}  # a real caption of this video ...
        inside = {c.text for c in caps if c.start < e and c.end > s}
        assert q.query in inside  # ... taken from inside the window
        prov = q.meta["provenance"]
        assert prov["captioner"] == "external" and len(prov["frames"]) == 3
        assert q.meta["query_simple"] and q.meta["query_simple"] != q.query
        # the shortened style: a sub-sequence of the caption's own words, never longer
        short = q.meta["query_short"].split()
        assert short and len(short) <= len(q.query.split())
        words = iter(q.query.replace(",", " ").replace(".", " ").split())
        assert all(w in words for w in short)
    assert sum(len(q.meta["query_short"]) < len(q.query) for q in loaded) > len(loaded) // 3
    assert "code_version" in (tmp_path / "pseudo.jsonl.config.yaml").read_text()
    # per video, no query text is repeated
    per_vid: dict[str, list[str]] = {}
    for q in loaded:
        per_vid.setdefault(q.vid, []).append(q.query.lower())
    assert all(len(v) == len(set(v)) for v in per_vid.values())
    stats = label_stats(queries, load_qvh_jsonl([SLICE / "gt.jsonl"]))
    assert stats["queries"] == len(queries) and stats["reference"]["queries"] == 8
    assert sum(stats["moment_seconds_hist"].values()) == pytest.approx(100.0, abs=0.5)


def test_simple_queries_and_centre_selection(tmp_path: Path, slice_store: tuple[Path, Path]) -> None:
    _store_dir, props = slice_store
    cfg = LabelsConfig(
        captioner=CaptionerConfig(name="external", captions=str(SLICE / "captions")),
        queries=QueryConfig(selection="centre", query_type="simple", frames="centre"),
    )
    _, queries = run_captions(props, tmp_path / "s.jsonl", cfg, None)
    assert queries and all(q.query == q.meta["query_simple"] for q in queries)
    assert all(len(q.meta["provenance"]["frames"]) == 1 for q in queries)
    assert np.mean([len(q.query.split()) for q in queries]) < np.mean(
        [len(q.meta["query_natural"].split()) for q in queries]
    )


def test_contrastive_selection_downweights_global_captions() -> None:
    # steps 0-9 and 10-19 are two scenes; the "global" text matches both, the "local" one only the first
    a, b = np.eye(4)[0], np.eye(4)[1]
    feats = VideoFeatures(
        "v", np.stack([a] * 10 + [b] * 10).astype(np.float32), np.arange(20, dtype=np.float64) + 0.5, 20.0
    )
    glob = (a + b) / np.linalg.norm(a + b)
    local = 0.9 * a + 0.1 * b
    local = local / np.linalg.norm(local)
    texts = np.stack([glob, local]).astype(np.float32)
    with_contrast = contrast_scores(texts, feats, [(0.0, 10.0)], outside_weight=1.0)[:, 0]
    without = contrast_scores(texts, feats, [(0.0, 10.0)], outside_weight=0.0)[:, 0]
    assert int(np.argmax(with_contrast)) == 1  # the local caption wins once the outside counts
    assert with_contrast[0] == pytest.approx(0.0)  # the global caption fits in and out alike
    assert without[1] > without[0]


def test_weak_labels_beat_random_assignment(tmp_path: Path, slice_store: tuple[Path, Path]) -> None:
    store_dir, props = slice_store
    gts = load_qvh_jsonl([SLICE / "gt.jsonl"])
    sentences = [type(q)(q.qid, q.vid, q.duration, q.query, ()) for q in gts]  # spans removed
    _summary, weak = run_weak(sentences, props, FeatureStore.load(store_dir), tmp_path / "weak.jsonl")
    assert len(weak) == len(gts) and all(q.source == "weak" for q in weak)
    assert all(0 < q.meta["confidence"] <= 1 for q in weak)
    by_video = read_proposals(props)
    gt_by_qid = {q.qid: q for q in gts}
    weak_iou, random_iou = [], []
    for q in weak:
        gt_windows = np.array(gt_by_qid[q.qid].windows)
        weak_iou.append(iou_cross(np.array(q.windows), gt_windows).max())
        cands = np.array([[p.start, p.end] for p in by_video[q.vid]])
        random_iou.append(iou_cross(cands, gt_windows).max(axis=1).mean())
    print(f"weak mean IoU {np.mean(weak_iou):.3f} vs random proposal {np.mean(random_iou):.3f}")
    assert np.mean(weak_iou) > np.mean(random_iou)
    assert load_dataset("jsonl", "custom", files=[tmp_path / "weak.jsonl"])[0].source == "weak"


def test_blip_path_from_frames_to_jsonl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pseudo.captions.blip import BlipCaptioner, save_random_blip
    from pseudo.testing import save_random_clip

    videos = tmp_path / "videos"
    videos.mkdir()
    make_video(videos / "a.mp4", [(1, 6.0), ((200, 30, 30), 6.0), (2, 6.0)], fps=5)
    make_video(videos / "b.mp4", [((20, 200, 20), 5.0), (3, 7.0)], fps=5)
    clip = save_random_clip(tmp_path / "clip")
    blip = save_random_blip(tmp_path / "blip")
    fcfg = FeaturesConfig(sampling=SamplingConfig(fps=1.0, max_side=64), backbone=BackboneConfig(model=str(clip)))
    build_features(videos, tmp_path / "store", fcfg)
    store = FeatureStore.load(tmp_path / "store")
    run_proposals(store, ProposalConfig(num_proposals=5), tmp_path / "p.jsonl")
    cap_cfg = CaptionerConfig(
        name="blip",
        video_dir=str(videos),
        cache=str(tmp_path / "cache"),
        sampling=SamplingConfig(fps=1.0, max_side=64),
        blip={"model": str(blip), "max_new_tokens": 6, "num_beams": 1},
    )
    cfg = LabelsConfig(captioner=cap_cfg)
    _, first = run_captions(tmp_path / "p.jsonl", tmp_path / "out.jsonl", cfg, store)
    assert {q.vid for q in first} == {"a", "b"} and all(q.query for q in first)
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["a.json", "b.json"]

    def boom(self: Any, frames: Any) -> list[str]:
        raise AssertionError("captions should come from the cache")

    monkeypatch.setattr(BlipCaptioner, "caption", boom)
    _, again = run_captions(tmp_path / "p.jsonl", tmp_path / "out2.jsonl", cfg, store)
    assert [q.query for q in again] == [q.query for q in first]
    assert load_dataset("jsonl", "custom", files=[tmp_path / "out.jsonl"])[0].meta["provenance"]["captioner"] == "blip"


def test_cli_caption_pipeline(tmp_path: Path) -> None:
    store, props, out = tmp_path / "store", tmp_path / "p.jsonl", tmp_path / "pseudo.jsonl"
    res = runner.invoke(app, ["features", "--captions", str(SLICE / "captions"), "--out", str(store), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["done"] == 8
    res = runner.invoke(app, ["proposals", "--features-dir", str(store), "--out", str(props), "--steps", "0"])
    assert res.exit_code == 0, res.output
    captions = [
        "captions",
        "--proposals",
        str(props),
        "--features-dir",
        str(store),
        "--captions",
        str(SLICE / "captions"),
    ]
    res = runner.invoke(app, [*captions, "--out", str(out), "--compare", "jsonl:custom", "--json"])
    # --compare with the custom jsonl dataset has no default file: a clear error, nothing half-written
    assert res.exit_code == 2 and "no default files" in res.stderr and not out.exists()
    res = runner.invoke(app, [*captions, "--out", str(out), "--json"])
    assert res.exit_code == 0, res.output
    stats = json.loads(res.stdout)["stats"]
    assert stats["videos"] == 8 and "query length" in res.stderr
    res = runner.invoke(
        app,
        [
            "weak",
            "--proposals",
            str(props),
            "--features-dir",
            str(store),
            "--sentences",
            str(SLICE / "gt.jsonl"),
            "--out",
            str(tmp_path / "weak.jsonl"),
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["labels"] == 8

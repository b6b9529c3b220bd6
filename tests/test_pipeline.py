"""The video -> features -> proposals path, through the library and the CLI, on synthetic videos
made with PyAV and a tiny random CLIP built in code."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner
from videos import make_corrupt, make_video

from proposals import ProposalConfig
from pseudo.backbones import BackboneConfig
from pseudo.cli import app
from pseudo.data.store import ArrayDirectory, FeatureStore
from pseudo.stages.features import FeaturesConfig, build_features
from pseudo.stages.proposals import read_proposals, run_proposals
from pseudo.video import SamplingConfig

runner = CliRunner()

# scenes: textured (int seed) or solid colour; lengths in seconds vary per video
SCENES: dict[str, list[tuple[tuple[int, int, int] | int, float]]] = {
    "v1": [(1, 6.0), ((200, 30, 30), 9.0), (2, 5.0), ((30, 30, 220), 8.0)],
    "v2": [(3, 12.0), (4, 7.0), ((30, 200, 30), 10.0)],
    "v3": [((240, 240, 240), 5.0), (5, 5.0), ((10, 10, 10), 6.0), (6, 9.0), (7, 7.0)],
}


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from pseudo.testing import save_random_clip

    return save_random_clip(tmp_path_factory.mktemp("clip") / "tiny", size="tiny")


@pytest.fixture(scope="module")
def video_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, list[float]]]:
    d = tmp_path_factory.mktemp("videos")
    cuts = {vid: make_video(d / f"{vid}.mp4", scenes, fps=10) for vid, scenes in SCENES.items()}
    make_corrupt(d / "broken.mp4")
    return d, cuts


def _cfg(tiny_clip: Path) -> FeaturesConfig:
    return FeaturesConfig(sampling=SamplingConfig(fps=1.0, max_side=64), backbone=BackboneConfig(model=str(tiny_clip)))


def test_atomic_boundaries_land_on_true_cuts(
    tmp_path: Path, tiny_clip: Path, video_dir: tuple[Path, dict[str, list[float]]]
) -> None:
    videos, cuts = video_dir
    summary = build_features(videos, tmp_path / "store", _cfg(tiny_clip))
    assert sorted(summary.done) == ["v1", "v2", "v3"]
    assert list(summary.failed) == ["broken"] and "corrupt" in summary.failed["broken"]
    store = FeatureStore.load(tmp_path / "store")
    cfg = ProposalConfig(resample_steps=None, num_clusters="auto", min_event_steps=2)
    from proposals import generate_proposals

    hits = total = extra = 0
    for vid, true_cuts in cuts.items():
        feats = store.get(vid)
        assert abs(feats.duration - sum(s for _, s in SCENES[vid])) < 0.2
        found = [a.start for a in generate_proposals(feats.features, feats.duration, cfg).atoms[1:]]
        for c in true_cuts:
            total += 1
            hits += any(abs(b - c) <= 1.0 for b in found)  # within one 1-fps sampling step
        extra += max(0, len(found) - len(true_cuts))
    print(f"recovered {hits}/{total} cuts, {extra} extra boundaries")
    assert hits / total >= 0.9, f"{hits}/{total} cuts recovered"
    assert extra <= total // 2


def test_resume_skips_finished_work_and_rebuilds_stale(
    tmp_path: Path, tiny_clip: Path, video_dir: tuple[Path, dict[str, list[float]]]
) -> None:
    videos, _ = video_dir
    store_dir, out = tmp_path / "store", tmp_path / "props.jsonl"
    build_features(videos, store_dir, _cfg(tiny_clip))
    again = build_features(videos, store_dir, _cfg(tiny_clip))
    assert sorted(again.skipped) == ["v1", "v2", "v3"] and not again.done
    source = FeatureStore.load(store_dir)
    first = run_proposals(source, ProposalConfig(num_proposals=5), out)
    assert sorted(first.done) == ["v1", "v2", "v3"]
    before = read_proposals(out)
    second = run_proposals(source, ProposalConfig(num_proposals=5), out)
    assert sorted(second.skipped) == ["v1", "v2", "v3"] and read_proposals(out) == before
    changed = run_proposals(source, ProposalConfig(num_proposals=3), out)
    assert sorted(changed.done) == ["v1", "v2", "v3"]  # stale settings are recomputed, not reused
    after = read_proposals(out)
    assert all(len(recs) <= 3 for recs in after.values())
    assert len({r.settings_hash for recs in after.values() for r in recs}) == 3  # one per video's features
    meta = (tmp_path / "props.jsonl.config.yaml").read_text()
    assert "num_proposals: 3" in meta and "code_version" in meta


def test_cli_proposals_from_videos_and_show(
    tmp_path: Path, tiny_clip: Path, video_dir: tuple[Path, dict[str, list[float]]]
) -> None:
    videos, _ = video_dir
    out = tmp_path / "p.jsonl"
    args = ["proposals", "--video-dir", str(videos), "--out", str(out), "--model", str(tiny_clip), "--json"]
    res = runner.invoke(app, [*args, "--max-side", "64", "--steps", "32", "--num-proposals", "10"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["done"] == 3 and summary["failed"] == 0  # the broken video failed at the features stage
    assert "broken" in res.stderr and "corrupt" in res.stderr
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    assert {r["video"] for r in recs} == {"v1", "v2", "v3"}
    for r in recs:
        assert 0 <= r["start"] < r["end"] <= r["duration"] + 1e-6 and 0 <= r["score"] <= 1
        assert set(r) >= {"video", "duration", "start", "end", "score", "method", "atoms", "settings_hash"}
    png = tmp_path / "v1.png"
    res = runner.invoke(app, ["show", "v1", "--features-dir", str(tmp_path / "p_features"), "--out", str(png)])
    assert res.exit_code == 0, res.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_cli_features_refuses_other_settings(
    tmp_path: Path, tiny_clip: Path, video_dir: tuple[Path, dict[str, list[float]]]
) -> None:
    videos, _ = video_dir
    base = ["features", "--video-dir", str(videos), "--out", str(tmp_path / "s"), "--model", str(tiny_clip)]
    assert runner.invoke(app, [*base, "--max-side", "64"]).exit_code == 0
    res = runner.invoke(app, [*base, "--max-side", "32"])
    assert res.exit_code == 2 and "--rebuild" in res.stderr
    res = runner.invoke(app, [*base, "--max-side", "32", "--rebuild", "--json"])
    assert res.exit_code == 0 and json.loads(res.stdout)["done"] == 3


def test_cli_proposals_from_precomputed_arrays(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    d = tmp_path / "i3d"
    d.mkdir()
    centres = rng.normal(size=(3, 64))
    np.save(d / "vidA.npy", np.repeat(centres, [10, 20, 10], axis=0) + 0.05 * rng.normal(size=(40, 64)))
    out = tmp_path / "p.jsonl"
    res = runner.invoke(
        app, ["proposals", "--features-dir", str(d), "--out", str(out), "--clip-seconds", "2", "--steps", "0", "--json"]
    )
    assert res.exit_code == 0, res.output
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    assert recs and all(r["duration"] == 80.0 for r in recs)
    atoms_starts = {r["start"] for r in recs}
    assert {0.0, 20.0, 60.0} <= atoms_starts  # the planted segments start at steps 0, 10, 30 of 2 s
    assert ArrayDirectory(d, clip_seconds=2.0).get("vidA").duration == 80.0


def test_cli_config_errors_name_the_key(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("proposals:\n  temprature: 2\n")
    d = tmp_path / "f"
    d.mkdir()
    np.save(d / "a.npy", np.ones((4, 4)))
    res = runner.invoke(app, ["proposals", "--features-dir", str(d), "--config", str(cfg)])
    assert res.exit_code == 2
    assert "proposals.temprature: unknown key" in res.stderr
    res = runner.invoke(app, ["proposals", "--out", str(tmp_path / "x.jsonl")])
    assert res.exit_code == 2 and "exactly one of --video-dir or --features-dir" in res.stderr


def test_real_charades_clip_gives_proposals_and_png(tmp_path: Path, tiny_clip: Path, data_root: Path) -> None:
    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / "charades.mp4").symlink_to(data_root / "samples/univtg/charades.mp4")
    out = tmp_path / "props.jsonl"
    res = runner.invoke(app, ["proposals", "--video-dir", str(videos), "--out", str(out), "--model", str(tiny_clip)])
    assert res.exit_code == 0, res.output
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    assert recs and all(r["video"] == "charades" for r in recs)
    assert abs(recs[0]["duration"] - 30.7) < 0.1  # SOURCES.md: 30.744 s
    png = tmp_path / "charades.png"
    video = str(videos / "charades.mp4")
    res = runner.invoke(app, ["show", video, "--model", str(tiny_clip), "--out", str(png)])
    assert res.exit_code == 0, res.output
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_a_recipe_on_video_files_runs_every_stage(
    tmp_path: Path, tiny_clip: Path, video_dir: tuple[Path, dict[str, list[float]]]
) -> None:
    """Frames -> tiny CLIP features -> proposals -> tiny BLIP pseudo-queries -> localizer -> eval, from
    one recipe; then weak labels with one setting changed reuse the features and proposals."""
    from pseudo.captions.blip import save_random_blip
    from pseudo.pipeline import Pipeline
    from pseudo.recipe import load_recipe

    videos, cuts = video_dir
    blip = save_random_blip(tmp_path / "blip")
    gt = tmp_path / "gt.jsonl"
    gt.write_text(
        "".join(
            json.dumps({"qid": vid, "vid": vid, "query": "a red wall", "duration": sum(s for _, s in SCENES[vid]),
                        "relevant_windows": [[c[0], c[1]]]}) + "\n"
            for vid, c in cuts.items()
        )
    )  # fmt: skip
    recipe = tmp_path / "videos.yaml"
    recipe.write_text(
        f"""name: videos
device: cpu
videos: {{train: {{video_dir: {videos}}}}}
features: {{sampling: {{fps: 1.0, max_side: 64}}, backbone: {{model: {tiny_clip}}}}}
proposals: {{resample_steps: null, num_proposals: 5}}
labels:
  kind: pseudo
  captioner:
    name: blip
    sampling: {{fps: 1.0, max_side: 64}}
    blip: {{model: {blip}, max_new_tokens: 6, num_beams: 1}}
text: {{name: hf_clip, model: {tiny_clip}}}
model: {{d_model: 32, n_heads: 2, n_layers: 1, levels: 2, max_query_tokens: 16}}
optim: {{epochs: 1, batch_size: 4, warmup_steps: 1}}
eval: [{{dataset: jsonl, split: custom, gt: [{gt}]}}]
"""
    )
    work = tmp_path / "work"
    result = Pipeline(load_recipe(recipe), work).run()
    assert [s.status for s in result.steps] == ["built"] * 6
    assert result.steps[0].summary["failed"] == 1  # broken.mp4: recorded, the others go on
    assert sorted(p.name for p in (work / "caption_cache").iterdir()) == ["v1.json", "v2.json", "v3.json"]
    assert set(result.metrics["jsonl_custom"]) >= {"R1@0.5", "mIoU"}
    weak = load_recipe(
        recipe, {"labels.kind": "weak", "labels.sentences": {"dataset": "jsonl", "split": "custom", "files": [str(gt)]}}
    )
    again = Pipeline(weak, work).run()
    status = {s.key: s.status for s in again.steps}
    assert status["features:train"] == status["proposals:train"] == "current"
    assert status["labels"] == status["train"] == "built"
    labels = [json.loads(line) for line in Path(again.steps[2].out).read_text().splitlines()]
    assert {r["source"] for r in labels} == {"weak"} and len(labels) == 3

"""The Ray engine of the per-video stages (a local Ray instance, 2 CPUs) against the local path: the
same files, bitwise; a worker that raises on one video loses only that video; ``--shard I/N`` over N
runs covers every video once."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner
from videos import make_corrupt, make_video

import pseudo
from proposals import ProposalConfig
from pseudo.backbones import BackboneConfig
from pseudo.captions.sources import CaptionerConfig
from pseudo.cli import app
from pseudo.data.benchmarks import load_qvh_jsonl
from pseudo.data.store import FeatureStore
from pseudo.stages.features import FeaturesConfig, build_caption_features, build_features, caption_features_config
from pseudo.stages.labels import LabelsConfig, run_captions
from pseudo.stages.per_video import Engine, Outcome
from pseudo.stages.proposals import ProposalsTask, run_proposals
from pseudo.video import SamplingConfig

if not os.environ.get("CI"):  # CI installs the ray extra (make test), so there the test must run
    pytest.importorskip("ray")

SLICE = Path(pseudo.__file__).parent / "assets" / "demo" / "qvhighlights_val_slice"
RAY = Engine(name="ray", workers=2, cpus_per_worker=0.5)  # 1 of the 2 CPUs left for decoding
SCENES: dict[str, list[tuple[tuple[int, int, int] | int, float]]] = {
    "a": [(1, 5.0), ((200, 30, 30), 6.0), (2, 4.0)],
    "b": [((30, 30, 220), 7.0), (3, 6.0)],
    "c": [(4, 4.0), ((30, 200, 30), 5.0), (5, 5.0)],
}


@pytest.fixture(scope="module", autouse=True)
def ray_instance() -> Iterator[None]:
    import ray

    path = os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])
    ray.init(  # the workers import this module (its PoisonTask) too
        num_cpus=2, include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": {"PYTHONPATH": path}}
    )
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("videos")
    for vid, scenes in SCENES.items():
        make_video(d / f"{vid}.mp4", scenes, fps=10)
    make_corrupt(d / "broken.mp4")
    return d


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from pseudo.testing import save_random_clip

    return save_random_clip(tmp_path_factory.mktemp("clip") / "tiny", size="tiny")


def assert_same_store(a: Path, b: Path) -> None:
    """Every video's arrays equal bit for bit, and the same videos failed."""
    sa, sb = FeatureStore.load(a), FeatureStore.load(b)
    assert sa.vids() == sb.vids() and sa.vids()
    assert sa.failures().keys() == sb.failures().keys()
    for vid in sa.vids():
        with np.load(sa.path(vid)) as za, np.load(sb.path(vid)) as zb:
            assert sorted(za.files) == sorted(zb.files)
            for k in za.files:
                x, y = za[k], zb[k]
                assert x.dtype == y.dtype and x.tobytes() == y.tobytes(), (vid, k)


def test_video_features_proposals_and_blip_captions_match_the_local_path(
    tmp_path: Path, videos: Path, tiny_clip: Path
) -> None:
    from pseudo.captions.blip import save_random_blip

    cfg = FeaturesConfig(sampling=SamplingConfig(fps=1.0, max_side=64), backbone=BackboneConfig(model=str(tiny_clip)))
    pcfg = ProposalConfig(resample_steps=None, num_proposals=5)
    blip = save_random_blip(tmp_path / "blip")
    outs = {}
    for name, engine in (("local", None), ("ray", RAY)):
        root = tmp_path / name
        summary = build_features(videos, root / "store", cfg, engine=engine)
        assert sorted(summary.done) == ["a", "b", "c"] and list(summary.failed) == ["broken"]
        run_proposals(FeatureStore.load(root / "store"), pcfg, root / "p.jsonl", engine=engine)
        captioner = CaptionerConfig(
            name="blip",
            video_dir=str(videos),
            sampling=SamplingConfig(fps=1.0, max_side=64),
            blip={"model": str(blip), "max_new_tokens": 5, "num_beams": 1},
        )
        summary, queries = run_captions(
            root / "p.jsonl", root / "q.jsonl", LabelsConfig(captioner=captioner), FeatureStore.load(root / "store"),
            engine=engine,
        )  # fmt: skip
        assert queries and not summary.failed
        outs[name] = root
    assert_same_store(outs["local"] / "store", outs["ray"] / "store")
    for f in ("p.jsonl", "q.jsonl"):
        assert (outs["local"] / f).read_bytes() == (outs["ray"] / f).read_bytes(), f


def test_caption_slice_matches_the_local_path(tmp_path: Path) -> None:
    """The shipped caption slice (real MiniLM): caption features in batches of videos, proposals, and
    pseudo-queries with contrastive selection, each through both engines."""
    durations = {q.vid: q.duration for q in load_qvh_jsonl([SLICE / "gt.jsonl"])}
    ccfg = caption_features_config(SLICE / "captions")
    labels = LabelsConfig(captioner=CaptionerConfig(name="external", captions=str(SLICE / "captions")))
    for name, engine in (("local", None), ("ray", RAY)):
        root = tmp_path / name
        assert len(build_caption_features(ccfg, root / "s", durations=durations, engine=engine).done) == 8
        store = FeatureStore.load(root / "s")
        run_proposals(store, ProposalConfig(resample_steps=None, num_proposals=20), root / "p.jsonl", engine=engine)
        _, queries = run_captions(root / "p.jsonl", root / "q.jsonl", labels, store, engine=engine)
        assert len(queries) > 8
    assert_same_store(tmp_path / "local/s", tmp_path / "ray/s")
    for f in ("p.jsonl", "q.jsonl"):
        assert (tmp_path / "local" / f).read_bytes() == (tmp_path / "ray" / f).read_bytes(), f


class PoisonTask(ProposalsTask):
    """Proposals whose worker fails on one video: it raises an error that is not the stage's (the kind
    that stops a local run), or its process dies."""

    def __init__(self, *args: Any, poison: str, how: str) -> None:
        super().__init__(*args)
        self.poison, self.how = poison, how

    def run(self, vids: Sequence[str]) -> dict[str, Outcome | BaseException]:
        if self.poison in vids:
            if self.how == "exit":
                os._exit(1)
            raise RuntimeError(f"worker failed on {self.poison}")
        return super().run(vids)


def _cpus_come_back(seconds: float = 30.0) -> bool:
    """Whether all the cluster's CPUs are free again within ``seconds`` (actors end asynchronously)."""
    import time

    import ray

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        free, total = ray.available_resources(), ray.cluster_resources()  # type: ignore[no-untyped-call]
        if free.get("CPU", 0) >= total["CPU"]:
            return True
        time.sleep(0.5)
    return False


@pytest.mark.parametrize("how", ["raise", "exit"])
def test_a_worker_failing_on_one_video_loses_only_that_video(tmp_path: Path, monkeypatch: Any, how: str) -> None:
    import pseudo.stages.proposals as stage

    durations = {q.vid: q.duration for q in load_qvh_jsonl([SLICE / "gt.jsonl"])}
    build_caption_features(caption_features_config(SLICE / "captions"), tmp_path / "s", durations=durations)
    store = FeatureStore.load(tmp_path / "s")
    poison = store.vids()[3]
    monkeypatch.setattr(stage, "ProposalsTask", lambda *a: PoisonTask(*a, poison=poison, how=how))
    cfg = ProposalConfig(resample_steps=None, num_proposals=20)
    summary = run_proposals(store, cfg, tmp_path / "p.jsonl", engine=RAY)
    assert list(summary.failed) == [poison] and "Ray worker" in summary.failed[poison]
    assert sorted(summary.done) == sorted(v for v in store.vids() if v != poison)
    written = {rec["video"] for rec in map(json.loads, (tmp_path / "p.jsonl").read_text().splitlines())}
    assert written == set(summary.done), "the output holds every other video"
    assert _cpus_come_back(), "every actor of the pass (a restarted one too) has ended: none holds a CPU"
    monkeypatch.setattr(stage, "ProposalsTask", lambda *a: PoisonTask(*a, poison="nobody", how=how))
    again = run_proposals(store, cfg, tmp_path / "p.jsonl", engine=RAY)  # the fault is gone: only it reruns
    assert again.done == [poison] and len(again.skipped) == len(store.vids()) - 1
    done = {rec["video"] for rec in map(json.loads, (tmp_path / "p.jsonl").read_text().splitlines())}
    assert done == set(store.vids())


def test_shards_cover_every_video_once(tmp_path: Path) -> None:
    """``--shard I/3`` three times (as a SLURM array would) into one store: each run adds exactly the
    videos it reports, no video twice, and together they are all 8; a run without shards then has
    nothing left to do."""
    captions = str(SLICE / "captions")
    runner = CliRunner()
    seen: list[str] = []
    for i in range(3):
        args = ["features", "--captions", captions, "--out", str(tmp_path / "s"), "--shard", f"{i}/3", "--json"]
        res = runner.invoke(app, args)
        assert res.exit_code == 0, res.output
        new = [v for v in FeatureStore.load(tmp_path / "s").vids() if v not in seen]
        assert json.loads(res.stdout)["done"] == len(new) and json.loads(res.stdout)["skipped"] == 0
        seen += new
    assert len(seen) == len(set(seen)) == 8
    res = runner.invoke(app, ["features", "--captions", captions, "--out", str(tmp_path / "s"), "--json"])
    assert (json.loads(res.stdout)["done"], json.loads(res.stdout)["skipped"]) == (0, 8)


def test_engine_flags_need_ray_engine(tmp_path: Path) -> None:
    res = CliRunner().invoke(
        app, ["features", "--captions", str(SLICE / "captions"), "--out", str(tmp_path / "s"), "--workers", "2"]
    )
    assert res.exit_code != 0 and "--engine ray" in res.output


def test_a_zipped_caption_track_travels_to_the_workers(tmp_path: Path) -> None:
    """The QVHighlights tracks are zip archives: the task (with its open archive) must reach the
    workers, where the archive is opened again."""
    import zipfile

    archive = tmp_path / "captions.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for f in sorted((SLICE / "captions").iterdir()):
            z.write(f, f.name)
    cfg = caption_features_config(archive)
    local = build_caption_features(cfg, tmp_path / "local")
    on_ray = build_caption_features(cfg, tmp_path / "ray", engine=Engine(name="ray", workers=1))
    assert len(local.done) == len(on_ray.done) == 8 and not on_ray.failed
    assert_same_store(tmp_path / "local", tmp_path / "ray")

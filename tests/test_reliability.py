"""No silent wrong answers and no tracebacks: one test (or more) per finding of the bad-input probe
(issue 11), on real files where there are any: the real Charades clip cut in half, the shipped
QVHighlights caption slice, a read-only directory."""

from __future__ import annotations

import gzip
import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from unittest.mock import patch

import av
import numpy as np
import pytest
from rich.console import Console
from typer.testing import CliRunner
from videos import make_corrupt, make_video

import pseudo
from proposals import ProposalConfig, generate_proposals
from pseudo.backbones import BackboneConfig
from pseudo.captions.sources import CaptionerConfig, build_caption_source
from pseudo.cli import app
from pseudo.data.benchmarks import load_qvh_jsonl
from pseudo.data.store import ArrayDirectory, FeatureStore, VideoFeatures
from pseudo.data.synthetic import make_synthetic_dataset
from pseudo.errors import PseudoError, StopStage
from pseudo.evaluate import score
from pseudo.io import atomic_write_text, iter_jsonl
from pseudo.metrics.iou import iou_cross
from pseudo.progress import PlainBar, progress_bar
from pseudo.recipe import Recipe, load_recipe
from pseudo.records import Prediction, Query
from pseudo.settings import ConfigError, validate
from pseudo.similarity import contrast_scores
from pseudo.stages.features import FeaturesConfig, build_caption_features, build_features, caption_features_config
from pseudo.stages.labels import LabelsConfig, run_captions, run_weak
from pseudo.stages.localize import train_localizer
from pseudo.stages.proposals import read_proposals, run_proposals
from pseudo.video import SamplingConfig
from trainers.config import DataConfig, OptimConfig, TrainConfig
from trainers.loop import train
from trainers.model import LocalizerConfig

ROOT = Path(__file__).resolve().parents[1]
SLICE = Path(pseudo.__file__).parent / "assets" / "demo" / "qvhighlights_val_slice"
runner = CliRunner()


# --- shared inputs ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from pseudo.testing import save_random_clip

    return save_random_clip(tmp_path_factory.mktemp("clip") / "tiny")


@pytest.fixture(scope="module")
def half_charades(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real Charades clip, remuxed to Matroska (which plays without its end) and cut in half."""
    src = data_root / "samples" / "univtg" / "charades.mp4"
    d = tmp_path_factory.mktemp("half")
    full = d / "full.mkv"
    with av.open(str(src)) as inp, av.open(str(full), "w", format="matroska") as out:
        stream = out.add_stream_from_template(inp.streams.video[0])
        for packet in inp.demux(inp.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                out.mux(packet)
    videos = d / "videos"
    videos.mkdir()
    data = full.read_bytes()
    (videos / "charades_half.mkv").write_bytes(data[: len(data) // 2])
    return videos


@pytest.fixture(scope="module")
def slice_stores(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two caption stores of the shipped slice made with different settings, and proposals of store A."""
    root = tmp_path_factory.mktemp("slice")
    durations = {q.vid: q.duration for q in load_qvh_jsonl([SLICE / "gt.jsonl"])}
    build_caption_features(caption_features_config(SLICE / "captions"), root / "a", durations=durations)
    build_caption_features(
        caption_features_config(SLICE / "captions", dtype="float16"), root / "b", durations=durations
    )
    run_proposals(FeatureStore.load(root / "a"), ProposalConfig(resample_steps=None), root / "props_a.jsonl")
    return {"a": root / "a", "b": root / "b", "props": root / "props_a.jsonl"}


@pytest.fixture
def readonly_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory nobody can write in: permissions, or (for root, whom permissions do not stop) a
    read-only tmpfs mounted on it."""
    d = tmp_path / "readonly"
    d.mkdir()
    d.chmod(0o555)
    probe = d / ".probe"
    try:
        probe.touch()
        probe.unlink()
        writable = True
    except OSError:
        writable = False
    if not writable:
        yield d
        d.chmod(0o755)
        return
    d.chmod(0o755)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(d)], capture_output=True).returncode:
        pytest.skip("running as root without the right to mount: cannot make a read-only directory")
    try:
        yield d
    finally:
        subprocess.run(["umount", str(d)], capture_output=True)


def _one_line_error(res: object, *needles: str) -> str:
    """The CLI failed with exit 2 and a one-line message (no traceback) containing ``needles``."""
    code = getattr(res, "exit_code", None)
    err = getattr(res, "stderr", "")
    assert code == 2, (code, getattr(res, "output", ""))
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith("error:"), err
    for n in needles:
        assert n in err, (n, err)
    return str(err)


# --- 1. proposal times are the features' times --------------------------------------------------------------


def test_1_truncated_real_clip_is_flagged_and_proposals_stay_where_the_frames_are(
    half_charades: Path, tiny_clip: Path, tmp_path: Path
) -> None:
    cfg = FeaturesConfig(sampling=SamplingConfig(fps=1.0, max_side=64), backbone=BackboneConfig(model=str(tiny_clip)))
    summary = build_features(half_charades, tmp_path / "store", cfg)
    assert summary.done == ["charades_half"]
    assert "truncated" in summary.warnings["charades_half"]
    store = FeatureStore.load(tmp_path / "store")
    feats = store.get("charades_half")
    assert feats.truncated and feats.decoded_end is not None
    assert 10.0 < feats.decoded_end < 20.0 and feats.duration > 30.0  # half of a 30.7 s clip
    index = json.loads((tmp_path / "store" / "index.json").read_text())
    assert index["truncated"]["charades_half"]["decoded_end"] == pytest.approx(feats.decoded_end)
    run_proposals(store, ProposalConfig(resample_steps=32, num_clusters=3), tmp_path / "p.jsonl")
    ends = [r.end for r in read_proposals(tmp_path / "p.jsonl")["charades_half"]]
    assert max(ends) <= feats.decoded_end + 1.0, "proposals were stretched over the whole container duration"


def test_1_a_cut_is_reported_at_its_time_not_stretched() -> None:
    """11 one-second rows of a 30 s video with a cut at 10 s: the old code put the cut at 27.7 s."""
    x = np.zeros((11, 4))
    x[:10, 0], x[10:, 1] = 1.0, 1.0
    ts = np.arange(11) + 0.5
    result = generate_proposals(x, 30.0, ProposalConfig(resample_steps=None, num_clusters=2, min_event_steps=1), ts)
    assert [a.start for a in result.atoms] == [0.0, 10.0]
    assert result.atoms[-1].end == pytest.approx(11.0)


def test_1_a_sampling_window_keeps_its_times(tiny_clip: Path, tmp_path: Path) -> None:
    videos = tmp_path / "v"
    videos.mkdir()
    make_video(videos / "w.mp4", [(1, 8.0), ((200, 30, 30), 9.0), (2, 8.0)], fps=10)
    sampling = SamplingConfig(fps=1.0, max_side=64, start=5.0, end=15.0)
    build_features(
        videos, tmp_path / "s", FeaturesConfig(sampling=sampling, backbone=BackboneConfig(model=str(tiny_clip)))
    )
    store = FeatureStore.load(tmp_path / "s")
    run_proposals(store, ProposalConfig(resample_steps=None, num_clusters=2), tmp_path / "p.jsonl")
    recs = read_proposals(tmp_path / "p.jsonl")["w"]
    assert min(r.start for r in recs) >= 5.0 - 1e-6 and max(r.end for r in recs) <= 15.0 + 1e-6


# --- 2. the whole video does not win inside-minus-outside ranking -------------------------------------------


def test_2_whole_video_window_is_on_the_same_scale() -> None:
    rng = np.random.default_rng(0)
    feats = VideoFeatures("v", rng.normal(size=(10, 8)).astype(np.float32), np.arange(10) + 0.5, 10.0)  # type: ignore[arg-type]
    text = rng.normal(size=(1, 8)).astype(np.float32)
    assert contrast_scores(text, feats, [(0.0, 10.0)], 1.0)[0, 0] == pytest.approx(0.0)
    inside_only = contrast_scores(text, feats, [(0.0, 10.0)], 0.0)[0, 0]
    f = feats.features / np.linalg.norm(feats.features, axis=1, keepdims=True)
    t = text / np.linalg.norm(text)
    assert inside_only == pytest.approx(float((t @ f.T).mean()))


def test_2_real_sentences_land_on_their_own_moments(slice_stores: dict[str, Path], tmp_path: Path) -> None:
    gts = load_qvh_jsonl([SLICE / "gt.jsonl"])
    _, labels = run_weak(gts, slice_stores["props"], FeatureStore.load(slice_stores["a"]), tmp_path / "weak.jsonl")
    whole = [q.qid for q in labels if q.windows[0][1] - q.windows[0][0] >= q.duration - 1e-6]
    assert not whole, f"sentences put on the whole video: {whole}"
    by_qid = {q.qid: q for q in gts}
    hits = sum(iou_cross(np.array(q.windows), np.array(by_qid[q.qid].windows)).max() >= 0.5 for q in labels)
    assert hits >= 5, f"only {hits} of {len(labels)} sentences land on their own moment"


# --- 3. inputs of another stage's run are refused -----------------------------------------------------------


def test_3_captions_refuse_another_feature_store(slice_stores: dict[str, Path], tmp_path: Path) -> None:
    cfg = LabelsConfig(captioner=CaptionerConfig(name="external", captions=str(SLICE / "captions")))
    with pytest.raises(PseudoError, match="made from other features") as err:
        run_captions(slice_stores["props"], tmp_path / "q.jsonl", cfg, FeatureStore.load(slice_stores["b"]))
    assert str(slice_stores["props"]) in str(err.value) and str(slice_stores["b"]) in str(err.value)
    res = runner.invoke(
        app,
        ["captions", "--proposals", str(slice_stores["props"]), "--features-dir", str(slice_stores["b"]),
         "--captions", str(SLICE / "captions"), "--out", str(tmp_path / "q.jsonl")],
    )  # fmt: skip
    _one_line_error(res, "made from other features")
    assert not (tmp_path / "q.jsonl").exists()


def test_3_train_refuses_labels_of_another_store(slice_stores: dict[str, Path], tmp_path: Path) -> None:
    cfg = LabelsConfig(captioner=CaptionerConfig(name="external", captions=str(SLICE / "captions")))
    run_captions(slice_stores["props"], tmp_path / "labels.jsonl", cfg, FeatureStore.load(slice_stores["a"]))
    train_cfg = TrainConfig(
        device="cpu",
        data=DataConfig(max_len=80),
        model=LocalizerConfig(d_model=32, n_heads=2, n_layers=0, levels=2),
        optim=OptimConfig(epochs=1, batch_size=8),
    )
    with pytest.raises(PseudoError, match="made from other features") as err:
        train_localizer(train_cfg, [tmp_path / "labels.jsonl"], slice_stores["b"], tmp_path / "run")
    assert "labels.jsonl" in str(err.value) and str(slice_stores["b"]) in str(err.value)


def test_3_two_files_of_one_video_are_refused(tmp_path: Path) -> None:
    videos = tmp_path / "v"
    videos.mkdir()
    make_video(videos / "dup.mp4", [((10, 10, 10), 1.0)], fps=5)
    make_video(videos / "dup.mkv", [((10, 10, 10), 1.0)], fps=5)
    res = runner.invoke(app, ["features", "--video-dir", str(videos), "--out", str(tmp_path / "s")])
    _one_line_error(res, "dup.mkv", "dup.mp4", "rename or move one")


# --- 4. errors a user can act on, before long work ----------------------------------------------------------


def test_4_unwritable_out_fails_before_any_work(slice_stores: dict[str, Path], readonly_dir: Path) -> None:
    seen: list[str] = []
    with pytest.raises(PseudoError, match="cannot write"):
        run_proposals(
            FeatureStore.load(slice_stores["a"]), ProposalConfig(), readonly_dir / "p.jsonl", on_video=seen.append
        )
    assert seen == [], "proposals were computed before the output was found unwritable"
    res = runner.invoke(
        app, ["proposals", "--features-dir", str(slice_stores["a"]), "--out", str(readonly_dir / "p.jsonl")]
    )
    _one_line_error(res, "--out", "cannot write", "choose a writable location")


def test_4_out_of_the_wrong_kind(slice_stores: dict[str, Path], tmp_path: Path) -> None:
    res = runner.invoke(app, ["proposals", "--features-dir", str(slice_stores["a"]), "--out", str(tmp_path)])
    _one_line_error(res, "is a directory; give a file path")
    a_file = tmp_path / "store.txt"
    a_file.write_text("x")
    res = runner.invoke(app, ["features", "--captions", str(SLICE / "captions"), "--out", str(a_file)])
    _one_line_error(res, "is an existing file; give a directory path")


def test_4_gzipped_predictions_are_read(data_root: Path, tmp_path: Path) -> None:
    src = data_root / "qvhighlights" / "reference_preds" / "vtggpt_infer_val.jsonl"
    gz = tmp_path / "preds.jsonl.gz"
    gz.write_bytes(gzip.compress(src.read_bytes()))
    res = runner.invoke(app, ["eval", str(gz), "-d", "qvhighlights", "-s", "val", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["metrics"]["R1@0.5"] == pytest.approx(59.03, abs=0.005)


def test_4_missing_proposals_and_bad_k(slice_stores: dict[str, Path], tmp_path: Path) -> None:
    res = runner.invoke(
        app, ["captions", "--proposals", str(tmp_path / "nope.jsonl"), "--features-dir", str(slice_stores["a"]),
              "--captions", str(SLICE / "captions"), "--out", str(tmp_path / "q.jsonl")],
    )  # fmt: skip
    _one_line_error(res, "nope.jsonl does not exist", "pseudo proposals")
    res = runner.invoke(app, ["proposals", "--features-dir", str(slice_stores["a"]), "--k", "abc"])
    _one_line_error(res, "--k must be 'auto' or a whole number of at least 1, got 'abc'")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The work directory of the tiny recipe (1 epoch), trained through the CLI."""
    work = tmp_path_factory.mktemp("run") / "tiny"
    res = runner.invoke(
        app, ["train", str(ROOT / "recipes" / "tiny_cpu.yaml"), "--work-dir", str(work), "--epochs", "1"]
    )
    assert res.exit_code == 0, res.output
    assert "None" not in res.stderr and "tiny_cpu: jsonl custom" in res.stderr  # the table's title
    return work


def test_4_feature_size_mismatch_in_predict(tiny_run: Path, tmp_path: Path) -> None:
    feats = tmp_path / "f16"
    feats.mkdir()
    np.save(feats / "eval_0160.npy", np.zeros((20, 16), np.float32))
    gt = tmp_path / "gt.jsonl"
    gt.write_text(json.dumps({"qid": 1, "vid": "eval_0160", "query": "a dog", "duration": 20.0,
                              "relevant_windows": [[0, 5]]}) + "\n")  # fmt: skip
    res = runner.invoke(
        app, ["predict", "--run", str(tiny_run), "-d", "jsonl", "-s", "custom", "--gt", str(gt),
              "--features", str(feats), "--out", str(tmp_path / "p.jsonl")],
    )  # fmt: skip
    _one_line_error(res, "16 dimensions", "trained on 32-dimensional features")


# --- 5. validation errors read as sentences -----------------------------------------------------------------


def test_5_validation_errors_are_plain_sentences(slice_stores: dict[str, Path], tmp_path: Path) -> None:
    res = runner.invoke(app, ["proposals", "--features-dir", str(slice_stores["a"]), "--k", "0"])
    err = _one_line_error(res, "--k must be 'auto' or a whole number of at least 1, got '0'")
    assert "constrained" not in err and "literal" not in err
    cfg = tmp_path / "c.yaml"
    cfg.write_text("proposals:\n  num_clusters: 0\n  composer: 3\n")
    res = runner.invoke(app, ["proposals", "--features-dir", str(slice_stores["a"]), "--config", str(cfg)])
    assert res.exit_code == 2
    assert "proposals.num_clusters: must be at least 1 or 'auto' (got 0)" in res.stderr
    assert "constrained-int" not in res.stderr and "literal[" not in res.stderr
    with pytest.raises(ConfigError, match=r"recipe\.yaml: optim\.epochs: must be at least 1 \(got 0\)"):
        validate(Recipe, {"name": "x", "synthetic": {}, "optim": {"epochs": 0}}, "recipe.yaml")


# --- 6. user text is printed as it is -----------------------------------------------------------------------


def test_6_brackets_survive_in_messages_names_and_queries(tmp_path: Path, tiny_clip: Path) -> None:
    bad = tmp_path / "[draft].jsonl"
    bad.write_text('{"qid": 1, "vid": "v", "pred_relevant_windows": [[1, "x", 1]]}\n')
    gt = tmp_path / "gt.jsonl"
    gt.write_text('{"qid": 1, "vid": "v", "query": "q", "duration": 10, "relevant_windows": [[0, 1]]}\n')
    res = runner.invoke(app, ["eval", str(bad), "-d", "jsonl", "--gt", str(gt)])
    _one_line_error(res, "[draft].jsonl", "[start, end, score]")
    video = tmp_path / "v.mp4"
    make_video(video, [(1, 3.0), ((200, 30, 30), 3.0)], fps=5)
    query = "a [/] strange [bold]query[/bold]"
    res = runner.invoke(app, ["localize", str(video), query, "--model", str(tiny_clip)])
    assert res.exit_code == 0, res.output
    assert query in res.stderr


# --- 7. malformed JSON lines name the line and column -------------------------------------------------------


def test_7_json_errors_give_line_and_column(tmp_path: Path) -> None:
    p = tmp_path / "bad.jsonl"
    p.write_text('{"qid": 1}\n{"qid": 2}\n{"qid": 3, "vid": x}\n')
    with pytest.raises(PseudoError, match=r"bad\.jsonl:3: invalid JSON at column 19: expecting value"):
        list(iter_jsonl(p))
    cut = tmp_path / "cut.jsonl"
    cut.write_text('{"qid": 1}\n{"qid": 2, "vid": "abc\n')
    with pytest.raises(PseudoError) as err:
        list(iter_jsonl(cut))
    assert "cut.jsonl:2: invalid JSON at column 23: the line ends before the record does" in str(err.value)
    assert "at at" not in str(err.value)


# --- 8. producing nothing is an error, and thousands of failures are counted, not listed --------------------


def test_8_weak_without_overlap_and_features_that_all_fail(
    slice_stores: dict[str, Path], tmp_path: Path, data_root: Path
) -> None:
    res = runner.invoke(
        app, ["weak", "--proposals", str(slice_stores["props"]), "--features-dir", str(slice_stores["a"]),
              "--dataset", "charades_sta", "--split", "test", "--data-root", str(data_root),
              "--out", str(tmp_path / "w.jsonl")],
    )  # fmt: skip
    _one_line_error(res, "none of the 1334 videos")
    assert not (tmp_path / "w.jsonl").exists()
    videos = tmp_path / "broken"
    videos.mkdir()
    for i in range(8):
        make_corrupt(videos / f"b{i}.mp4", seed=i)
    res = runner.invoke(app, ["features", "--video-dir", str(videos), "--out", str(tmp_path / "s")])
    assert res.exit_code == 2
    assert res.stderr.count("failed:") == 5 and "and 3 more failures" in res.stderr
    assert "every one of the 8 inputs failed" in res.stderr


# --- 9. localize checks the run before loading anything, and uses the run's backbone ------------------------


def test_9_localize_checks_the_run_first(tmp_path: Path) -> None:
    video = tmp_path / "v.mp4"
    make_video(video, [(1, 2.0)], fps=5)
    t0 = time.perf_counter()
    res = runner.invoke(app, ["localize", str(video), "a dog", "--run", str(tmp_path / "no_run")])
    _one_line_error(res, "no_run does not exist", "pseudo train")
    assert time.perf_counter() - t0 < 5.0


def test_9_localize_uses_the_backbone_the_run_was_trained_with(tiny_clip: Path, tmp_path: Path) -> None:
    videos = tmp_path / "videos"
    videos.mkdir()
    scenes: list[tuple[tuple[int, int, int] | int, float]] = [(1, 4.0), ((200, 30, 30), 4.0), (2, 4.0)]
    for i in range(3):
        make_video(videos / f"v{i}.mp4", scenes, fps=5)
    cfg = FeaturesConfig(sampling=SamplingConfig(fps=1.0, max_side=64), backbone=BackboneConfig(model=str(tiny_clip)))
    build_features(videos, tmp_path / "store", cfg)
    labels = tmp_path / "labels.jsonl"
    labels.write_text("".join(
        json.dumps({"qid": f"v{i}", "vid": f"v{i}", "query": "a red wall", "duration": 12.0,
                    "relevant_windows": [[4.0, 8.0]], "source": "pseudo"}) + "\n" for i in range(3)
    ))  # fmt: skip
    train_cfg = TrainConfig(
        device="cpu",
        data=DataConfig(max_len=32),
        model=LocalizerConfig(d_model=32, n_heads=2, n_layers=0, levels=2, max_query_tokens=8),
        optim=OptimConfig(epochs=1, batch_size=4, warmup_steps=1),
    )
    train_localizer(train_cfg, [labels], tmp_path / "store", tmp_path / "run")
    res = runner.invoke(
        app, ["localize", str(videos / "v0.mp4"), "a red wall", "--run", str(tmp_path / "run"),
              "--model", str(tmp_path / "not_a_model"), "--json"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    answer = json.loads(res.stdout)
    assert answer["run"] == str(tmp_path / "run") and answer["windows"]
    assert all(0 <= w["start"] < w["end"] <= 12.01 for w in answer["windows"])


# --- 10. registries do not depend on import order -----------------------------------------------------------


def test_10_datasets_listed_in_a_fresh_process(data_root: Path) -> None:
    code = "from pseudo.data import DATASETS; print(','.join(DATASETS.names()))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert set(out.split(",")) >= {"charades_sta", "activitynet", "qvhighlights", "tacos", "didemo", "jsonl"}
    cli = subprocess.run(
        [sys.executable, "-m", "pseudo", "datasets", "--json"], capture_output=True, text=True, check=True
    )
    assert {r["dataset"] for r in json.loads(cli.stdout)} == set(out.split(","))


# --- 11. a model path is the model, not its spelling; a refusal says what differs ---------------------------


def test_11_model_path_spelling_does_not_invalidate_a_store(
    tiny_clip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sampling = SamplingConfig(fps=1.0, max_side=64)
    FeatureStore.open(tmp_path / "s", FeaturesConfig(sampling=sampling, backbone=BackboneConfig(model=str(tiny_clip))))
    monkeypatch.chdir(tiny_clip.parent)
    relative = FeaturesConfig(sampling=sampling, backbone=BackboneConfig(model=f"./{tiny_clip.name}/"))
    FeatureStore.open(tmp_path / "s", relative)  # accepted: the same model
    other = FeaturesConfig(sampling=SamplingConfig(fps=2.0, max_side=64), backbone=relative.backbone)
    with pytest.raises(PseudoError, match=r"sampling\.fps: 1\.0 -> 2\.0"):
        FeatureStore.open(tmp_path / "s", other)


# --- 12. outputs honour the umask ---------------------------------------------------------------------------


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o002, 0o664)])
def test_12_outputs_honour_the_umask(tmp_path: Path, umask: int, mode: int) -> None:
    old = os.umask(umask)
    try:
        atomic_write_text(tmp_path / "out.txt", "x")
    finally:
        os.umask(old)
    assert (tmp_path / "out.txt").stat().st_mode & 0o777 == mode


# --- 13. progress in logs, and no transformers bars ---------------------------------------------------------


def test_13_plain_progress_lines_when_not_a_terminal(capfd: pytest.CaptureFixture[str]) -> None:
    buf = io.StringIO()
    con = Console(file=buf, width=120)
    assert not con.is_terminal
    with progress_bar("features", total=20, console=con) as bar:
        for i in range(20):
            bar.advance(f"video{i}")
    lines = buf.getvalue().splitlines()
    assert lines[0] == "features: 20 to do"
    assert "features: 2/20 (10%)" in lines[1] and lines[-1].startswith("features: 20/20 (100%)")
    assert lines[-1].endswith("s elapsed")
    # the first item carries the warm-up: the time left is estimated from the items after it
    plain = PlainBar("predict", con, every_seconds=1e9)
    plain.start(101)
    clock = iter([1000.0, 1001.0, 1002.0])
    plain.t0 = 0.0
    with patch("pseudo.progress.time.perf_counter", lambda: next(clock)):
        plain.advance("q0")  # finished at t = 1000 s after a 1000 s warm-up
        assert plain.line(1000.0).endswith("time left not known yet")
        plain.advance("q1")
        plain.advance("q2")
    assert plain.line(1002.0).endswith("about 98 s left")  # 1 s an item since the first, 98 to go
    # a batch reports its items in a burst: no estimate until the items after the first span a second
    burst = PlainBar("features", con, every_seconds=1e9)
    burst.start(200)
    clock = iter([14.0 + i / 1000 for i in range(20)])
    with patch("pseudo.progress.time.perf_counter", lambda: next(clock)):
        for i in range(20):
            burst.advance(f"v{i}")
    assert burst.line(14.02).endswith("time left not known yet")  # not "about 0 s left"
    from pseudo.backbones import build_backbone

    capfd.readouterr()
    build_backbone(BackboneConfig(name="sentence", model="minilm"))
    assert "Loading weights" not in capfd.readouterr().err


# --- 14. the small things -----------------------------------------------------------------------------------


def test_14_version_predict_json_and_title(tiny_run: Path, tmp_path: Path) -> None:
    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0 and res.stdout.startswith(f"pseudo {pseudo.__version__}")
    syn = tiny_run / "synthetic"
    res = runner.invoke(
        app, ["predict", "--run", str(tiny_run), "-d", "jsonl", "-s", "custom", "--gt", str(syn / "eval.jsonl"),
              "--features", str(syn / "features"), "--out", str(tmp_path / "p.jsonl"), "--json"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["predictions"] == len((syn / "eval.jsonl").read_text().splitlines())


def test_14_show_does_not_overwrite_silently(
    slice_stores: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    vid = FeatureStore.load(slice_stores["a"]).vids()[0]
    args = ["show", vid, "--features-dir", str(slice_stores["a"])]
    assert runner.invoke(app, args).exit_code == 0
    _one_line_error(runner.invoke(app, args), "exists", "--force")
    assert runner.invoke(app, [*args, "--force"]).exit_code == 0


def test_14_resume_does_not_duplicate_log_rows(tmp_path: Path) -> None:
    cfg = load_recipe(
        ROOT / "recipes" / "tiny_cpu.yaml", {"optim.log_every": 1, "optim.checkpoint_every": 4, "optim.epochs": 2}
    ).train_config()
    paths = make_synthetic_dataset(tmp_path / "syn", n_train=48, n_eval=4, dim=32)
    labels, feats = load_qvh_jsonl([paths.train]), ArrayDirectory(paths.features)
    run = tmp_path / "run"
    train(cfg, labels, feats, run, stop_after_steps=6)
    # as if killed at step 6 before last.pt was written: the newest checkpoint is step 4
    (run / "checkpoints" / "step_4.pt").replace(run / "checkpoints" / "last.pt")
    train(cfg, labels, feats, run, resume=True)
    steps = [r["step"] for _, r in iter_jsonl(run / "log.jsonl")]
    assert steps == sorted(set(steps)) and steps == list(range(1, steps[-1] + 1))


def test_14_ctrl_c_writes_a_checkpoint_and_says_how_to_resume(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "pseudo", "train", str(ROOT / "recipes" / "tiny_cpu.yaml"),
           "--work-dir", str(tmp_path / "work"), "--epochs", "400"]  # fmt: skip
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stderr is not None
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if line.startswith("step "):
            break
    proc.send_signal(signal.SIGINT)
    rest = proc.communicate(timeout=60)[1]
    assert proc.returncode == 130, "".join(seen) + rest
    assert "checkpoint saved to" in rest and "run the same command again" in rest and "Traceback" not in rest
    import torch

    (run,) = (tmp_path / "work" / "runs").iterdir()
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=False)
    assert f"interrupted at step {state['step']} " in rest


# --- 15. IoU at exact ties ----------------------------------------------------------------------------------


def test_15_iou_tie_counts_as_a_hit_in_the_recall_protocol() -> None:
    gt = [Query(1, "v", 30.0, "q", ((0.0, 9.1),))]
    pred = [Prediction(1, "v", ((0.0, 13.0, 1.0),))]
    recall, _ = score(gt, pred, "recall")
    assert recall.headline["R1@0.7"] == 100.0  # 9.1 / 13 is exactly 0.7 with max(end) - min(start)
    official, _ = score(gt, pred, "qvhighlights")
    assert official.headline["R1@0.7"] == 0.0  # the QVHighlights evaluator's a1 + a2 - inter rounds below


# --- a model that cannot load stops its stage in one line ---------------------------------------------------


def test_a_model_that_cannot_load_stops_the_stage_with_one_error(tmp_path: Path) -> None:
    """A missing model is not each video's failure: the stage stops with one error naming the model,
    no video is recorded as failed (so a rerun with the model in place does them all), and the CLI
    says it in one line and exits 2."""
    videos = tmp_path / "videos"
    videos.mkdir()
    for name in ("a", "b", "c"):
        make_video(videos / f"{name}.mp4", [(1, 2.0), (2, 2.0)], fps=5)
    missing = tmp_path / "no_such_model"
    fcfg = FeaturesConfig(sampling=SamplingConfig(fps=1.0, max_side=64), backbone=BackboneConfig(model=str(missing)))
    with pytest.raises(StopStage, match=r"^features: could not load CLIP model '.*no_such_model'"):
        build_features(videos, tmp_path / "frames", fcfg)
    assert FeatureStore.open(tmp_path / "frames", fcfg).failures() == {}

    ccfg = caption_features_config(SLICE / "captions", encoder=BackboneConfig(name="sentence", model=str(missing)))
    with pytest.raises(StopStage, match=r"^text encoder: could not load sentence encoder .*Give 'minilm'"):
        build_caption_features(ccfg, tmp_path / "captions")
    assert FeatureStore.open(tmp_path / "captions", ccfg).failures() == {}

    blip = CaptionerConfig(
        name="blip", video_dir=str(videos), sampling=SamplingConfig(fps=1.0, max_side=64), blip={"model": str(missing)}
    )
    with pytest.raises(StopStage, match=r"^captioner: could not load BLIP model"):
        build_caption_source(blip).captions_at("a", [0.5])

    res = runner.invoke(
        app,
        ["features", "--captions", str(SLICE / "captions"), "--encoder", str(missing), "--out", str(tmp_path / "s")],
    )
    assert res.exit_code == 2, res.output
    errors = [line for line in res.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and "could not load sentence encoder" in errors[0], res.stderr
    assert "every one of" not in res.stderr and "Traceback" not in res.stderr

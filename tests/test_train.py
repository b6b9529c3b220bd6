"""Training the localizer on CPU: the tiny recipe through the pipeline, exact resume, frozen towers,
errors, DDP under torchrun."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from pseudo.baselines.prior import LengthPositionPrior
from pseudo.cli import app
from pseudo.data import load_dataset
from pseudo.data.benchmarks import load_qvh_jsonl
from pseudo.data.store import ArrayDirectory
from pseudo.data.synthetic import make_synthetic_dataset
from pseudo.errors import PseudoError
from pseudo.evaluate import evaluate, score
from pseudo.recipe import load_recipe
from pseudo.records import Query
from pseudo.settings import ConfigError
from trainers.config import TrainConfig
from trainers.localizer import Localizer, build_model
from trainers.loop import train

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
runner = CliRunner()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    work = tmp_path_factory.mktemp("runs") / "tiny"
    res = runner.invoke(app, ["train", str(RECIPES / "tiny_cpu.yaml"), "--work-dir", str(work), "--json"])
    assert res.exit_code == 0, res.output
    out: dict[str, object] = json.loads(res.stdout)
    return out


def test_tiny_recipe_learns_and_beats_the_prior(tiny: dict[str, object]) -> None:
    outputs = tiny["outputs"]
    assert isinstance(outputs, dict)
    run = Path(outputs["train"])
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert log[-1]["loss"] < 0.6 * log[0]["loss"], "the loss should fall"
    assert all(r["steps_per_s"] > 0 and r["samples_per_s"] > 0 for r in log)
    syn = Path(outputs["features:synthetic"])
    train_q = load_dataset("jsonl", "custom", files=[syn / "train.jsonl"])
    eval_q = load_dataset("jsonl", "custom", files=[syn / "eval.jsonl"])
    prior = LengthPositionPrior().fit(train_q)
    prior_m, _ = score(eval_q, prior.predict(eval_q), "recall")
    metrics = tiny["metrics"]
    assert isinstance(metrics, dict)
    trained = metrics["jsonl_custom"]
    print(f"trained R1@0.5 {trained['R1@0.5']:.1f} vs prior {prior_m.headline['R1@0.5']:.1f}")
    assert trained["R1@0.5"] > prior_m.headline["R1@0.5"] + 10
    cfg_text = (run / "config.yaml").read_text()
    assert "code_version" in cfg_text and "minilm" in cfg_text
    assert "tiny_cpu" in (Path(str(tiny["work"])) / "recipe.yaml").read_text()


def test_predict_then_eval_round_trip(tiny: dict[str, object], tmp_path: Path) -> None:
    syn = Path(str(tiny["work"])) / "synthetic"
    out = tmp_path / "preds.jsonl"
    args = ["predict", "--run", str(tiny["work"]), "-d", "jsonl", "-s", "custom", "--gt", str(syn / "eval.jsonl"),
            "--features", str(syn / "features"), "--out", str(out)]  # fmt: skip
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    result = evaluate(out, "jsonl", "custom", gt_files=[syn / "eval.jsonl"])
    metrics = tiny["metrics"]
    assert isinstance(metrics, dict)
    assert result.metrics["R1@0.5"] == pytest.approx(metrics["jsonl_custom"]["R1@0.5"])
    first = json.loads(out.read_text().splitlines()[0])
    scores = [w[2] for w in first["pred_relevant_windows"]]
    assert scores == sorted(scores, reverse=True) and len(scores) <= 10


def _small(tmp: Path) -> tuple[TrainConfig, list[Query], ArrayDirectory]:
    paths = make_synthetic_dataset(tmp / "syn", n_train=48, n_eval=8, dim=32)
    cfg = load_recipe(
        RECIPES / "tiny_cpu.yaml", {"optim.epochs": 2, "optim.checkpoint_every": 5, "optim.log_every": 1}
    ).train_config()
    return cfg, load_qvh_jsonl([paths.train]), ArrayDirectory(paths.features)


def test_resume_reproduces_an_uninterrupted_run(tmp_path: Path) -> None:
    cfg, labels, feats = _small(tmp_path)
    full = train(cfg, labels, feats, tmp_path / "full")
    killed = train(cfg, labels, feats, tmp_path / "resumed", stop_after_steps=4)
    assert killed.steps == 4
    with pytest.raises(PseudoError, match="already has a checkpoint"):
        train(cfg, labels, feats, tmp_path / "resumed")
    resumed = train(cfg, labels, feats, tmp_path / "resumed", resume=True)
    assert resumed.steps == full.steps
    assert resumed.losses == pytest.approx(full.losses, rel=1e-5, abs=1e-6)
    a = torch.load(tmp_path / "full/checkpoints/last.pt", weights_only=False)["model"]
    b = torch.load(tmp_path / "resumed/checkpoints/last.pt", weights_only=False)["model"]
    assert a.keys() == b.keys()
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_only_prompt_and_temporal_layers_train(tmp_path: Path) -> None:
    cfg, labels, feats = _small(tmp_path)
    model = build_model(cfg, 32)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    train(cfg, labels, feats, tmp_path / "r", stop_after_steps=3)
    state = torch.load(tmp_path / "r/checkpoints/last.pt", weights_only=False)["model"]
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    frozen = set(before) - trainable
    assert frozen and trainable
    assert not frozen & set(state), "frozen text-tower weights are not saved"
    assert any("ctx" in n for n in trainable), "the CoOp context vectors train"
    changed = {n for n in trainable if n in state and not torch.equal(state[n], before[n])}
    assert changed, "trainable parameters moved"


def test_cuda_without_gpu_and_bad_recipes(tmp_path: Path) -> None:
    if not torch.cuda.is_available():
        cfg, labels, feats = _small(tmp_path)
        with pytest.raises(PseudoError, match="no CUDA GPU"):
            train(cfg.model_copy(update={"device": "cuda"}), labels, feats, tmp_path / "c")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nsynthetic: {}\noptim: {learning_rate: 0.1}\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: optim\.learning_rate: unknown key"):
        load_recipe(bad)
    bad.write_text("name: x\nvideos: {test: {captions: c}}\n")
    with pytest.raises(ConfigError, match=r"videos needs a `train` set"):
        load_recipe(bad)
    # settings that cannot work together are refused when the recipe loads, before any stage runs
    bad.write_text("name: x\nsynthetic: {}\nloss: {query_contrast_weight: 1}\n")
    with pytest.raises(
        ConfigError, match=r"bad\.yaml: .*set model\.saliency_head: true or loss\.query_contrast_weight: 0"
    ):
        load_recipe(bad)
    bad.write_text("name: x\nsynthetic: {}\nmodel: {saliency_head: true}\ndecode: {similarity_span_weight: 0.8}\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: .*needs decode\.windows_from saliency or both"):
        load_recipe(bad)


@pytest.mark.parametrize("name", sorted(p.name for p in RECIPES.glob("*.yaml")))
def test_every_recipe_validates(name: str) -> None:
    recipe = load_recipe(RECIPES / name)
    assert recipe.name == name.removesuffix(".yaml") and recipe.optim.epochs >= 1


def test_zero_shot_localize_on_a_synthetic_video(tmp_path: Path) -> None:
    from videos import make_video

    from pseudo.testing import save_random_clip

    clip = save_random_clip(tmp_path / "clip")
    video = tmp_path / "v.mp4"
    make_video(video, [(1, 5.0), ((200, 30, 30), 5.0), (2, 5.0)], fps=5)
    res = runner.invoke(app, ["localize", str(video), "a red wall", "--model", str(clip), "--json"])
    assert res.exit_code == 0, res.output
    answer = json.loads(res.stdout)
    assert answer["query"] == "a red wall" and answer["run"] is None
    windows = [(w["start"], w["end"], w["score"]) for w in answer["windows"]]
    assert windows and all(0 <= s < e <= 15.01 for s, e, _ in windows)
    assert [w[2] for w in windows] == sorted((w[2] for w in windows), reverse=True)
    assert np.isfinite([w[2] for w in windows]).all()


def test_ddp_through_torchrun_on_cpu(tmp_path: Path) -> None:
    """torchrun's multi-node launch (two nodes of one process each, here on one machine, gloo): the
    stages before training are built once first, as on a cluster, and both ranks read that store."""
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        (RECIPES / "tiny_cpu.yaml").read_text().replace("n_train: 160, n_eval: 40", "n_train: 24, n_eval: 4")
    )
    work = tmp_path / "work"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    args = ["train", str(recipe), "--work-dir", str(work), "--epochs", "1"]
    under_torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "-m", "pseudo", *args]
    early = subprocess.run(under_torchrun, capture_output=True, text=True, env=env, timeout=240)
    assert early.returncode != 0 and "--until labels" in early.stderr, early.stderr[-2000:]
    subprocess.run([sys.executable, "-m", "pseudo", *args, "--until", "labels"], check=True, env=env, timeout=120)
    # the multi-node launch, with two "nodes" on this machine: one process each, rank 0 the rendezvous
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    nodes = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--nnodes=2",
                "--nproc-per-node=1",
                f"--node-rank={rank}",
                "--master-addr=127.0.0.1",
                f"--master-port={port}",
                "-m",
                "pseudo",
                *args,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for rank in (0, 1)
    ]
    for node in nodes:
        _, err = node.communicate(timeout=240)
        assert node.returncode == 0, err[-3000:]
    index = json.loads((work / "stages.json").read_text())["steps"]
    run = Path(index["train"]["out"])
    metrics = json.loads((run / "metrics.json").read_text())
    n = len((work / "synthetic/train.jsonl").read_text().splitlines())
    per_rank = -(-n // 2)
    assert metrics["steps"] == -(-per_rank // 16), "each rank takes half of every epoch"
    assert (run / "checkpoints/last.pt").is_file()
    scored = [p for p in (work / "metrics").glob("*.json") if not p.name.endswith(".stage.json")]
    assert len(scored) == 1, "only rank 0 predicts and scores"


def test_label_selection_by_length_and_score() -> None:
    from trainers.data import select_labels

    def q(i: int, vid: str, s: float, e: float, score: float) -> Query:
        return Query(i, vid, 100.0, "x", ((s, e),), "pseudo", {"provenance": {"selection_score": score}})

    labels = [q(1, "a", 0, 10, 0.1), q(2, "a", 0, 50, 0.9), q(3, "a", 5, 20, 0.5), q(4, "b", 0, 30, 0.2)]
    assert [x.qid for x in select_labels(labels, max_seconds=40)] == [1, 3, 4]
    assert [x.qid for x in select_labels(labels, per_video=1)] == [2, 4]
    assert [x.qid for x in select_labels(labels, max_seconds=40, per_video=1)] == [3, 4]
    assert [x.qid for x in select_labels(labels, min_seconds=15)] == [2, 3, 4]
    assert [x.qid for x in select_labels(labels, max_seconds=40, per_video=1, min_seconds=16)] == [4]


def test_query_styles_alternate_and_missing_styles_are_refused() -> None:
    from trainers.data import check_query_styles, styled_text

    meta = {"query_natural": "a man in a red shirt opens the door", "query_short": "a man opens the door",
            "query_simple": "man open door"}  # fmt: skip
    q = Query("v#0", "v", 30.0, meta["query_natural"], ((0.0, 10.0),), "pseudo", meta)
    rng = np.random.default_rng(0)
    drawn = {styled_text(q, ["natural", "short", "simple"], rng) for _ in range(60)}
    assert drawn == {meta["query_natural"], meta["query_short"], meta["query_simple"]}
    assert styled_text(q, [], rng) == q.query and styled_text(q, ["short"], None) == q.query
    empty = Query("v#1", "v", 30.0, "a table", ((0.0, 10.0),), "pseudo", {"query_simple": ""})
    assert styled_text(empty, ["simple"], rng) == "a table"  # a style that came out empty: the query itself
    check_query_styles([q], ["short", "simple"], "labels.jsonl")
    with pytest.raises(PseudoError, match=r"1 of the 2 labels in labels.jsonl carry no 'query_short'.*rebuild"):
        check_query_styles([q, empty], ["short"], "labels.jsonl")


def _tiny_predictor(tiny: dict[str, object]) -> tuple[Localizer, list[Query], ArrayDirectory]:
    """The tiny run's localizer (a fresh copy), 12 of its eval queries and their features."""
    outputs = tiny["outputs"]
    assert isinstance(outputs, dict)
    syn = Path(str(tiny["work"])) / "synthetic"
    queries = load_dataset("jsonl", "custom", files=[syn / "eval.jsonl"])[:12]
    return Localizer.from_run(Path(outputs["train"]), "cpu"), queries, ArrayDirectory(syn / "features")


def test_predict_reports_progress_and_decodes_each_query_as_its_chunks_finish(tiny: dict[str, object]) -> None:
    """``on_start``/``on_query`` see every query once, in order; a query is decoded as soon as its last
    batch has run (not after the whole split), and gives what it gives when asked alone."""
    localizer, queries, source = _tiny_predictor(tiny)
    events: list[str] = []
    forward = localizer.model.forward

    def counted(*args: Any, **kwargs: Any) -> Any:
        events.append("batch")
        return forward(*args, **kwargs)

    localizer.model.forward = counted  # type: ignore[method-assign]
    preds = localizer.predict(
        source, queries, batch_size=4, on_start=lambda n: events.append(f"start {n}"), on_query=events.append
    )
    assert events[0] == f"start {len(queries)}"
    assert [e for e in events if e not in ("batch",) and not e.startswith("start")] == [str(q.qid) for q in queries]
    assert events.index(str(queries[0].qid)) < len(events) - 1 - events[::-1].index("batch")  # before the last batch
    for q, p in zip(queries, preds, strict=True):
        alone = localizer.predict(source, [q])[0]
        assert p.qid == alone.qid
        np.testing.assert_allclose(np.array(p.windows), np.array(alone.windows), atol=1e-5)


def test_a_stopped_prediction_pass_resumes_where_it_stopped(tiny: dict[str, object], tmp_path: Path) -> None:
    """Parts of a prediction pass are saved as they finish: after a stop, a rerun predicts only the
    parts that are missing and gives exactly what an unbroken pass gives; other weights, decoding or
    queries make new parts, and the parts are gone once the output is written."""
    from pseudo.stages.localize import predict_in_parts, predict_split
    from pseudo.stages.partfiles import PartFiles

    loc, queries, source = _tiny_predictor(tiny)
    syn = Path(str(tiny["work"])) / "synthetic"
    unbroken = predict_in_parts(loc, source, queries, tmp_path / "a.jsonl", part_size=5)
    assert len(list(PartFiles(tmp_path / "a.jsonl").root.rglob("*.jsonl"))) == 3

    class Stop(Exception):
        pass

    seen: list[str] = []

    def stop_at_seventh(qid: str) -> None:
        seen.append(qid)
        if len(seen) == 7:
            raise Stop

    out = tmp_path / "b.jsonl"
    with pytest.raises(Stop):
        predict_in_parts(loc, source, queries, out, part_size=5, on_query=stop_at_seventh)
    asked: list[int] = []
    predict = loc.predict

    def counted(features: Any, qs: Any, **kwargs: Any) -> Any:
        asked.append(len(qs))
        return predict(features, qs, **kwargs)

    loc.predict = counted  # type: ignore[method-assign,assignment]
    lines: list[str] = []
    resumed = predict_in_parts(loc, source, queries, out, part_size=5, log=lines.append)
    assert asked == [5, 2], "the first part was saved before the stop; the other two are predicted"
    assert resumed == unbroken
    assert "5 of 12 queries read from the parts" in lines[0]
    asked.clear()
    predict_in_parts(loc, source, queries, out, part_size=5)
    assert asked == []
    predict_in_parts(loc, source, queries, out, part_size=5, top_k=3)  # other decoding: new parts
    predict_in_parts(loc, source, queries[1:], out, part_size=5)  # other queries in every part
    assert asked == [5, 5, 2, 5, 5, 1]
    asked.clear()
    with torch.no_grad():
        next(p for p in loc.model.parameters() if p.requires_grad).add_(0.01)
    predict_in_parts(loc, source, queries[1:], out, part_size=5)  # other weights
    assert asked == [5, 5, 1]
    predict_split(loc, "jsonl", "custom", source, out, gt_files=[syn / "eval.jsonl"])
    assert out.is_file() and not PartFiles(out).root.exists()


def test_a_setting_added_later_leaves_cached_runs_current_until_it_is_set(tmp_path: Path) -> None:
    from pseudo.pipeline import Pipeline

    recipe = RECIPES / "qvhighlights_captions_zs.yaml"
    unset = Pipeline(load_recipe(recipe), tmp_path).train_identity()
    assert "hide_query_steps" not in unset["data"]  # the identity (so the run hash) of runs made before it existed
    hidden = Pipeline(load_recipe(recipe, {"data.hide_query_steps": 0.9}), tmp_path).train_identity()
    assert hidden["data"] == {**unset["data"], "hide_query_steps": 0.9}

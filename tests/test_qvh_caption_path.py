"""The zero-shot QVHighlights-from-captions path on the shipped 8-video slice: caption features
(real MiniLM), proposals, pseudo-labels, baselines, a small CoOp localizer, official metrics."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

import pseudo
from pseudo.backbones import BackboneConfig, build_backbone
from pseudo.baselines.tfidf import tfidf_caption_windows, windows_from_curve
from pseudo.baselines.zero_shot import rank_proposals
from pseudo.cli import app
from pseudo.data.benchmarks import load_qvh_jsonl
from pseudo.data.captions import ExternalCaptions
from pseudo.data.predictions import load_predictions
from pseudo.data.store import FeatureStore
from pseudo.evaluate import evaluate, score
from pseudo.stages.partfiles import PartFiles
from pseudo.stages.proposals import read_proposals

SLICE = Path(pseudo.__file__).parent / "assets" / "demo" / "qvhighlights_val_slice"
runner = CliRunner()


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`pseudo features --captions`, `pseudo proposals`, `pseudo captions`, as a user runs them."""
    work = tmp_path_factory.mktemp("qvh")
    caps = str(SLICE / "captions")
    steps = [
        ["features", "--captions", caps, "--out", str(work / "store")],
        ["proposals", "--features-dir", str(work / "store"), "--out", str(work / "props.jsonl"), "--steps", "0"],
        [
            "captions",
            "--proposals",
            str(work / "props.jsonl"),
            "--features-dir",
            str(work / "store"),
            "--captions",
            caps,
            "--out",
            str(work / "pseudo.jsonl"),
        ],
    ]
    for args in steps:
        res = runner.invoke(app, args)
        assert res.exit_code == 0, res.output
    return work


def test_windows_from_curve() -> None:
    import numpy as np

    curve = np.array([0, 0, 1, 1, 0.3, 0.3, 0.8, 0.9, 0], dtype=float)
    wins = windows_from_curve(curve, 2.0, 18.0)
    spans = [w[:2] for w in wins]
    # the lowest threshold merges both peaks: everything relevant inside, nothing outside, so it ranks first;
    # then the stronger peak alone before the weaker one
    assert spans == [(4.0, 16.0), (4.0, 8.0), (12.0, 16.0), (14.0, 16.0)]
    assert [w[2] for w in wins] == sorted((w[2] for w in wins), reverse=True)


def test_baselines_and_zero_shot_on_real_captions(pipeline: Path) -> None:
    gts = load_qvh_jsonl([SLICE / "gt.jsonl"])
    tfidf = tfidf_caption_windows(gts, ExternalCaptions(SLICE / "captions"))
    assert len(tfidf) == len(gts) and all(p.windows for p in tfidf)
    enc = build_backbone(BackboneConfig(name="sentence", model="minilm"))
    store = FeatureStore.load(pipeline / "store")
    zs = rank_proposals(gts, read_proposals(pipeline / "props.jsonl"), store, enc, outside_weight=0.0)
    rep, _ = score(gts, zs, "qvhighlights")
    assert 0 <= rep.headline["R1@0.5"] <= 100 and rep.headline["mIoU"] > 10


#: the localizer and decoding of both paths below (small, so the test is quick)
LOCALIZER = """
proposals: {resample_steps: null}
text: {name: sentence, model: minilm}
model: {d_model: 32, n_heads: 2, n_layers: 1, levels: 3, max_query_tokens: 24}
data: {max_len: 80}
optim: {epochs: 2, batch_size: 32, warmup_steps: 2, log_every: 1}
decode: {snap_to_steps: true, event_snap_seconds: 6}
"""


def _recipe(path: Path, videos: str, labels: str) -> Path:
    gt = SLICE / "gt.jsonl"
    path.write_text(
        f"name: qvh_slice\ndevice: cpu\nvideos: {{train: {videos}}}\nlabels: {labels}\n{LOCALIZER}"
        f"eval: [{{dataset: jsonl, split: custom, gt: [{gt}], protocol: qvhighlights}}]\n"
    )
    return path


def _train(recipe: Path, work: Path, *extra: str) -> dict[str, Any]:
    res = runner.invoke(app, ["train", str(recipe), "--work-dir", str(work), "--json", *extra])
    assert res.exit_code == 0, res.output
    out: dict[str, Any] = json.loads(res.stdout)
    return out


def test_one_recipe_equals_the_stage_by_stage_path(pipeline: Path, tmp_path: Path) -> None:
    """The stages run by hand (features, proposals, captions, then training on those files) and the
    whole method from one recipe give the same numbers; a rerun skips every step, and a changed
    proposal setting rebuilds proposals and everything after them, but not the features."""
    by_hand = _recipe(
        tmp_path / "files.yaml",
        f"{{features: {pipeline / 'store'}}}",
        f"{{kind: files, files: [{pipeline / 'pseudo.jsonl'}]}}",
    )
    gt = SLICE / "gt.jsonl"
    whole = _recipe(
        tmp_path / "whole.yaml",
        f"{{captions: {SLICE / 'captions'}, durations: {{dataset: jsonl, split: custom, files: [{gt}]}}}}",
        "{kind: pseudo}",
    )
    a = _train(by_hand, tmp_path / "a")
    b = _train(whole, tmp_path / "b")
    assert a["metrics"]["jsonl_custom"] == b["metrics"]["jsonl_custom"]
    assert [s["status"] for s in b["steps"]] == ["built"] * 6
    args = ["eval", "-d", "jsonl", "-s", "custom", "--gt", str(gt), "--protocol", "qvhighlights", "--json"]
    res = runner.invoke(app, [*args, "--work", str(tmp_path / "b")])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["metrics"] == b["metrics"]["jsonl_custom"]
    again = _train(whole, tmp_path / "b")
    assert {s["status"] for s in again["steps"]} == {"current"} and again["metrics"] == b["metrics"]
    changed = _train(whole, tmp_path / "b", "--set", "proposals.num_proposals=30")
    status = {s["key"]: s["status"] for s in changed["steps"]}
    assert status == {"features:train": "current", "proposals:train": "built", "labels": "built", "train": "built",
                      "predict:jsonl_custom": "built", "eval:jsonl_custom": "built"}  # fmt: skip
    why = {s["key"]: s["why"] for s in changed["steps"]}
    assert "proposals.num_proposals: 50 -> 30" in why["proposals:train"]
    assert why["labels"] == "build (its inputs changed)"
    # back to the first setting: every step is current, and the work directory points at its outputs again
    back = _train(whole, tmp_path / "b")
    assert {s["status"] for s in back["steps"]} == {"current"} and back["metrics"] == b["metrics"]
    res = runner.invoke(app, [*args, "--work", str(tmp_path / "b")])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["metrics"] == b["metrics"]["jsonl_custom"] != changed["metrics"]["jsonl_custom"]
    index = json.loads((tmp_path / "b" / "stages.json").read_text())
    assert index["steps"]["train"]["out"] == next(s["out"] for s in b["steps"] if s["key"] == "train")
    # a run stopped before predicting leaves no predictions of its settings: eval --work refuses, not the old ones
    _train(whole, tmp_path / "b", "--set", "proposals.num_proposals=20", "--until", "train")
    res = runner.invoke(app, [*args, "--work", str(tmp_path / "b")])
    assert res.exit_code == 2 and not res.stdout
    assert "for its recipe's current settings" in " ".join(res.stderr.split())
    # nor does `pseudo predict --run WORK` take a model trained for other settings
    _train(whole, tmp_path / "b", "--set", "proposals.num_proposals=10", "--until", "labels")
    predict = ["predict", "--run", str(tmp_path / "b"), "-d", "jsonl", "-s", "custom", "--gt", str(gt),
               "--features", str(pipeline / "store"), "--out", str(tmp_path / "p.jsonl")]  # fmt: skip
    res = runner.invoke(app, predict)
    assert res.exit_code == 2 and not (tmp_path / "p.jsonl").exists()
    assert "has no trained run for its recipe's current settings" in " ".join(res.stderr.split())
    # the pseudo-labels hold no GT window: training never saw a human timestamp
    gt_windows = {tuple(w) for q in load_qvh_jsonl([gt]) for w in q.windows}
    labels = load_qvh_jsonl([pipeline / "pseudo.jsonl"])
    assert all(q.source == "pseudo" for q in labels)
    assert sum(tuple(w) in gt_windows for q in labels for w in q.windows) < len(labels) // 4


def test_predict_snaps_to_the_clip_grid_and_events(pipeline: Path, tmp_path: Path) -> None:
    recipe = _recipe(
        tmp_path / "files.yaml",
        f"{{features: {pipeline / 'store'}}}",
        f"{{kind: files, files: [{pipeline / 'pseudo.jsonl'}]}}",
    )
    _train(recipe, tmp_path / "w", "--until", "train")
    preds = tmp_path / "preds.jsonl"
    args = ["predict", "--run", str(tmp_path / "w"), "-d", "jsonl", "-s", "custom", "--gt", str(SLICE / "gt.jsonl"),
            "--features", str(pipeline / "store")]  # fmt: skip
    res = runner.invoke(app, [*args, "--out", str(preds)])
    assert res.exit_code != 0 and "--proposals" in res.output  # the recipe snaps to events: it needs them
    assert not preds.exists()
    res = runner.invoke(app, [*args, "--out", str(preds), "--proposals", str(pipeline / "props.jsonl")])
    assert res.exit_code == 0, res.output
    events = {t for recs in read_proposals(pipeline / "props.jsonl").values() for r in recs for t in (r.start, r.end)}
    ends = [t for p in load_predictions(preds) for w in p.windows for t in w[:2]]
    assert all(abs(t / 2 - round(t / 2)) < 1e-9 for t in ends), "boundaries lie on the 2 s clip grid"
    assert sum(t in events for t in ends) > len(ends) // 2, "most boundaries are event boundaries"
    raw = tmp_path / "raw.jsonl"
    res = runner.invoke(app, [*args, "--out", str(raw), "--no-snap-to-steps", "--event-snap-seconds", "0"])
    assert res.exit_code == 0, res.output
    raw_ends = [t for p in load_predictions(raw) for w in p.windows for t in w[:2]]
    assert any(abs(t / 2 - round(t / 2)) > 1e-3 for t in raw_ends), "without snapping, boundaries are regressed"
    result = evaluate(preds, "jsonl", "custom", gt_files=[SLICE / "gt.jsonl"], protocol="qvhighlights")
    assert set(result.metrics) >= {"R1@0.5", "R1@0.7", "mAP@0.5", "mAP@0.75", "mAP", "mIoU"}


def test_one_self_training_round(tmp_path: Path) -> None:
    """Round 0 trains on the pseudo-labels, relabels them with its own windows, round 1 trains on those;
    the relabelled file holds the same labels (no GT window enters) with the localizer's windows."""
    gt = SLICE / "gt.jsonl"
    recipe = _recipe(
        tmp_path / "st.yaml",
        f"{{captions: {SLICE / 'captions'}, durations: {{dataset: jsonl, split: custom, files: [{gt}]}}}}",
        "{kind: pseudo}",
    )
    out = _train(recipe, tmp_path / "w", "--set", "self_training={rounds: 1, max_windows: 2, ratio: 0.5}")
    keys = [s["key"] for s in out["steps"]]
    assert keys.index("train:round0") < keys.index("labels:round1") < keys.index("train")
    status = {s["key"]: s["status"] for s in out["steps"]}
    assert status["labels:round1"] == status["train"] == "built"
    step = next(s for s in out["steps"] if s["key"] == "labels:round1")
    relabelled = load_qvh_jsonl([Path(step["out"])])
    assert not PartFiles(step["out"]).root.exists(), "the relabelling pass's saved parts are cleared"
    assert relabelled and all(q.source == "pseudo" and 1 <= len(q.windows) <= 2 for q in relabelled)
    before = [tuple(map(tuple, q.meta["self_training"]["windows_before"])) for q in relabelled]
    assert any(q.windows != b for q, b in zip(relabelled, before, strict=True)), "the localizer moved some windows"
    gt_windows = {tuple(w) for q in load_qvh_jsonl([gt]) for w in q.windows}
    assert sum(w in gt_windows for q in relabelled for w in q.windows) < len(relabelled) // 4
    assert out["metrics"]["jsonl_custom"]["R1@0.5"] >= 0


def test_a_hand_prompt_run_encodes_its_texts_before_the_first_step(pipeline: Path, tmp_path: Path) -> None:
    """With the hand-written prompt and the plain similarity, every training text goes through the frozen
    tower before the first step, prompted and plain (in batches of one token count), and the run says
    how many and how long; a learned prompt (the default, CoOp) keeps nothing ahead."""
    recipe = _recipe(
        tmp_path / "files.yaml",
        f"{{features: {pipeline / 'store'}}}",
        f"{{kind: files, files: [{pipeline / 'pseudo.jsonl'}]}}",
    )

    def run_metrics(work: Path, *extra: str) -> dict[str, Any]:
        out = _train(recipe, work, "--until", "train", *extra)
        run = Path(next(s["out"] for s in out["steps"] if s["key"] == "train"))
        metrics: dict[str, Any] = json.loads((run / "metrics.json").read_text())
        return metrics

    texts = {q.query for q in load_qvh_jsonl([pipeline / "pseudo.jsonl"])}
    hand = run_metrics(tmp_path / "hand", "--set", "model.prompt=hand", "--set", "model.plain_similarity=true")
    made = hand["texts_encoded_ahead"]
    assert made % 2 == 0 and 0 < made <= 2 * len(texts) and hand["text_seconds"] > 0
    assert run_metrics(tmp_path / "coop")["texts_encoded_ahead"] == 0


def test_the_recipes_decode_reaches_the_predictions_without_retraining(pipeline: Path, tmp_path: Path) -> None:
    """A decode setting changed in the recipe re-predicts with it (the checkpoint's own decode settings
    are those of training time) and reuses the trained run."""
    recipe = _recipe(
        tmp_path / "files.yaml",
        f"{{features: {pipeline / 'store'}}}",
        f"{{kind: files, files: [{pipeline / 'pseudo.jsonl'}]}}",
    )
    first = _train(recipe, tmp_path / "w")
    again = _train(
        recipe, tmp_path / "w", "--set", "decode.snap_to_steps=false", "--set", "decode.event_snap_seconds=0"
    )
    status = {s["key"]: s["status"] for s in again["steps"]}
    assert status["train"] == "current" and status["predict:jsonl_custom"] == "built"

    def ends(out: dict[str, Any]) -> list[float]:
        step = next(s for s in out["steps"] if s["key"] == "predict:jsonl_custom")
        return [
            w[1]
            for rec in map(json.loads, Path(step["out"]).read_text().splitlines())
            for w in rec["pred_relevant_windows"]
        ]

    assert all(abs(t / 2 - round(t / 2)) < 1e-6 for t in ends(first)), "the recipe snaps to the 2 s grid"
    assert any(abs(t / 2 - round(t / 2)) > 1e-3 for t in ends(again)), "unsnapped: regressed boundaries"

    # `pseudo predict --run WORK` decodes as the work directory's recipe now does: the pipeline's answers
    step = next(s for s in again["steps"] if s["key"] == "predict:jsonl_custom")
    args = ["predict", "-d", "jsonl", "-s", "custom", "--gt", str(SLICE / "gt.jsonl"),
            "--features", str(pipeline / "store"), "--proposals", str(pipeline / "props.jsonl")]  # fmt: skip
    res = runner.invoke(app, [*args, "--run", str(tmp_path / "w"), "--out", str(tmp_path / "work.jsonl")])
    assert res.exit_code == 0, res.output
    assert f"decoding with the settings of {tmp_path / 'w' / 'recipe.yaml'}" in res.stderr
    assert load_predictions(tmp_path / "work.jsonl") == load_predictions(step["out"])
    # its run directory decodes with its training-time settings, and says how they differ from the recipe's
    run_dir = next(s for s in again["steps"] if s["key"] == "train")["out"]
    res = runner.invoke(app, [*args, "--run", run_dir, "--out", str(tmp_path / "run.jsonl")])
    assert res.exit_code == 0, res.output
    said = " ".join(res.stderr.split())
    assert "snap_to_steps: True -> False" in said and f"pass --run {tmp_path / 'w'}" in said
    first_step = next(s for s in first["steps"] if s["key"] == "predict:jsonl_custom")
    assert load_predictions(tmp_path / "run.jsonl") == load_predictions(first_step["out"])
    # a decode setting added later, left off, keeps those predictions current; set, it re-predicts with
    # the captions of the recipe's caption-track features
    unsnapped = ("--set", "decode.snap_to_steps=false", "--set", "decode.event_snap_seconds=0")
    off = _train(recipe, tmp_path / "w", *unsnapped, "--set", "decode.caption_feedback=0")
    assert {s["key"]: s["status"] for s in off["steps"]}["predict:jsonl_custom"] == "current"
    fed = _train(recipe, tmp_path / "w", *unsnapped, "--set", "decode.caption_feedback=1")
    assert {s["key"]: s["status"] for s in fed["steps"]}["predict:jsonl_custom"] == "built"
    # `pseudo predict --run WORK` brings the captions of the caption-track features too: the same answers
    step = next(s for s in fed["steps"] if s["key"] == "predict:jsonl_custom")
    res = runner.invoke(app, [*args, "--run", str(tmp_path / "w"), "--out", str(tmp_path / "fed.jsonl")])
    assert res.exit_code == 0, res.output
    assert load_predictions(tmp_path / "fed.jsonl") == load_predictions(step["out"])
    # a work directory whose recipe.yaml decodes with a wrong setting: one line naming the file and the key
    saved = tmp_path / "w" / "recipe.yaml"
    saved.write_text(saved.read_text().replace("overlap_decay_iou: 1.0", "overlap_decay_iou: 2.0"))
    res = runner.invoke(app, [*args, "--run", str(tmp_path / "w"), "--out", str(tmp_path / "bad.jsonl")])
    assert res.exit_code == 2 and not (tmp_path / "bad.jsonl").exists()
    said = " ".join(res.stderr.split())
    assert f"{saved}: recipe.decode" in said and "overlap_decay_iou" in said


def test_an_ensemble_recipe_trains_its_members_and_predicts_with_all(pipeline: Path, tmp_path: Path) -> None:
    """``ensemble.members: 2`` keeps the single run (member 0, its seed) and trains one more with the seed
    moved on by the stride; the predictions read both, and `pseudo predict --run WORK` asks both too."""
    recipe = _recipe(
        tmp_path / "files.yaml",
        f"{{features: {pipeline / 'store'}}}",
        f"{{kind: files, files: [{pipeline / 'pseudo.jsonl'}]}}",
    )
    single = _train(recipe, tmp_path / "w")
    pair = _train(recipe, tmp_path / "w", "--set", "ensemble.members=2", "--set", "ensemble.seed_stride=7")
    status = {s["key"]: s["status"] for s in pair["steps"]}
    assert status["train"] == "current" and status["train:member1"] == "built"
    assert status["predict:jsonl_custom"] == "built"
    member = next(s for s in pair["steps"] if s["key"] == "train:member1")["out"]
    saved = yaml.safe_load((Path(member) / "config.yaml").read_text())
    assert saved["config"]["optim"]["seed"] == 7
    preds = {k: load_predictions(next(s for s in out["steps"] if s["key"] == "predict:jsonl_custom")["out"])
             for k, out in (("single", single), ("pair", pair))}  # fmt: skip
    assert preds["pair"] != preds["single"]
    args = ["predict", "-d", "jsonl", "-s", "custom", "--gt", str(SLICE / "gt.jsonl"),
            "--features", str(pipeline / "store"), "--proposals", str(pipeline / "props.jsonl")]  # fmt: skip
    res = runner.invoke(app, [*args, "--run", str(tmp_path / "w"), "--out", str(tmp_path / "pair.jsonl")])
    assert res.exit_code == 0, res.output
    assert "an ensemble of 2 runs" in " ".join(res.stderr.split())
    assert load_predictions(tmp_path / "pair.jsonl") == preds["pair"]
    # back to one member: the single run's predictions are current again, nothing is retrained
    again = _train(recipe, tmp_path / "w")
    assert {s["key"]: s["status"] for s in again["steps"]}["predict:jsonl_custom"] == "current"
    # a member whose run is gone: one line that says how to train it
    _train(recipe, tmp_path / "w", "--set", "ensemble.members=2", "--set", "ensemble.seed_stride=7")
    shutil.rmtree(member)
    res = runner.invoke(app, [*args, "--run", str(tmp_path / "w"), "--out", str(tmp_path / "gone.jsonl")])
    assert res.exit_code == 2 and not (tmp_path / "gone.jsonl").exists()
    assert "ensemble member 1 of 2 has no trained run" in " ".join(res.stderr.split())

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pseudo.cli import app
from pseudo.data.predictions import PredictionError
from pseudo.evaluate import evaluate

runner = CliRunner()


def _gt(path: Path) -> Path:
    recs = [
        {"qid": 1, "vid": "a", "query": "one", "duration": 30, "relevant_windows": [[0, 10]]},
        {"qid": 2, "vid": "a", "query": "two", "duration": 30, "relevant_windows": [[10, 20]]},
        {"qid": 3, "vid": "b", "query": "three", "duration": 20, "relevant_windows": [[5, 15]]},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    return path


def _preds(path: Path, windows: dict[int, list[list[float]]], vids: dict[int, str] | None = None) -> Path:
    vids = vids or {1: "a", 2: "a", 3: "b", 99: "z"}
    path.write_text(
        "".join(json.dumps({"qid": q, "vid": vids[q], "pred_relevant_windows": w}) + "\n" for q, w in windows.items())
    )
    return path


def test_demo_runs_and_prints_json(tmp_path: Path) -> None:
    res = runner.invoke(app, ["demo", "--json", "--work", str(tmp_path / "demo")])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    official = out["official_check"]
    assert official["n_queries"] == 150 and official["protocol"] == "qvhighlights"
    assert 0 < official["metrics"]["R1@0.5"] < 100
    rows = out["caption_pipeline"]
    assert set(rows) == {
        "length/position prior fitted on the pseudo-labels",
        "zero-shot proposal ranking (no training)",
        "CoOp localizer trained on pseudo-labels",
    }
    assert all(0 <= r["R1@0.5"] <= 100 for r in rows.values())
    assert out["verdict"].startswith("On 209 real queries of 200 videos, the localizer trained on pseudo-labels")
    assert len(list((tmp_path / "demo/runs").glob("*/checkpoints/last.pt"))) == 1
    assert "Loading weights" not in res.stderr


def test_eval_json_and_table(tmp_path: Path) -> None:
    gt = _gt(tmp_path / "gt.jsonl")
    preds = _preds(tmp_path / "p.jsonl", {1: [[0, 10, 0.9]], 2: [[0, 10, 0.9], [10, 20, 0.5]], 3: [[5, 10, 1.0]]})
    res = runner.invoke(app, ["eval", str(preds), "--dataset", "jsonl", "--split", "custom", "--gt", str(gt), "--json"])
    assert res.exit_code == 0, res.output
    m = json.loads(res.stdout)["metrics"]
    assert m["R1@0.5"] == pytest.approx(200 / 3) and m["R5@0.7"] == pytest.approx(200 / 3)
    assert "R1@0.5" in res.stderr  # the table goes to stderr


def test_missing_qids_error_or_score_zero(tmp_path: Path) -> None:
    gt = _gt(tmp_path / "gt.jsonl")
    preds = _preds(tmp_path / "p.jsonl", {1: [[0, 10, 0.9]]})
    with pytest.raises(PredictionError, match="2 of 3 ground-truth qids have no prediction"):
        evaluate(preds, "jsonl", "custom", gt_files=[gt])
    res = runner.invoke(app, ["eval", str(preds), "-d", "jsonl", "--gt", str(gt)])
    assert res.exit_code == 2 and "--allow-missing" in res.stderr
    r = evaluate(preds, "jsonl", "custom", gt_files=[gt], allow_missing=True)
    assert r.metrics["R1@0.5"] == pytest.approx(100 / 3)
    assert any("2 of 3 queries have no prediction" in w for w in r.warnings)


def test_extra_outside_and_unsorted_are_warned(tmp_path: Path) -> None:
    gt = _gt(tmp_path / "gt.jsonl")
    preds = _preds(
        tmp_path / "p.jsonl",
        {1: [[0, 10, 0.1], [0, 5, 0.9]], 2: [[10, 20, 1]], 3: [[5, 25, 1]], 99: [[0, 1, 1]]},
    )
    r = evaluate(preds, "jsonl", "custom", gt_files=[gt])
    text = "\n".join(r.warnings)
    assert "1 predicted qid(s) are not in the ground truth" in text
    assert "1 queries have windows outside [0, duration]" in text
    assert "1 queries list windows out of score order" in text
    assert r.n_queries == 3


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"qid": 1, "pred_relevant_windows": [[0, NaN, 1]]}', r"1 line\(s\) have NaN or infinite values \(line 1\)"),
        ('{"qid": 1, "pred_relevant_windows": [[9, 2, 1]]}', r"window that ends before it starts \(line 1\)"),
        ('{"qid": 1, "pred_relevant_windows": [[1, "x", 1]]}', r"p\.jsonl:1: each predicted window must be"),
        ('{"qid": 1}', r"p\.jsonl:1: missing 'pred_relevant_windows'"),
        ('{"qid": 1, "pred_relevant_windows": [[1, 2, 1]]', r"p\.jsonl:1: invalid JSON"),
    ],
)
def test_bad_prediction_files(tmp_path: Path, line: str, message: str) -> None:
    gt = _gt(tmp_path / "gt.jsonl")
    preds = tmp_path / "p.jsonl"
    preds.write_text(line + "\n")
    res = runner.invoke(app, ["eval", str(preds), "-d", "jsonl", "--gt", str(gt)])
    assert res.exit_code != 0
    with pytest.raises(Exception, match=message):
        evaluate(preds, "jsonl", "custom", gt_files=[gt])


def test_duplicate_and_wrong_video(tmp_path: Path) -> None:
    gt = _gt(tmp_path / "gt.jsonl")
    dup = tmp_path / "p.jsonl"
    dup.write_text('{"qid": 1, "pred_relevant_windows": []}\n' * 2)
    with pytest.raises(PredictionError, match="duplicate qid"):
        evaluate(dup, "jsonl", "custom", gt_files=[gt])
    wrong = _preds(tmp_path / "w.jsonl", {1: [[0, 1, 1]], 2: [[0, 1, 1]], 3: [[0, 1, 1]]}, {1: "a", 2: "a", 3: "a"})
    with pytest.raises(PredictionError, match="name a different video"):
        evaluate(wrong, "jsonl", "custom", gt_files=[gt])


def test_datasets_listing(data_root: Path) -> None:
    res = runner.invoke(app, ["datasets", "--json", "--data-root", str(data_root)])
    assert res.exit_code == 0, res.output
    names = {r["dataset"] for r in json.loads(res.stdout)}
    assert {"charades_sta", "activitynet", "qvhighlights", "tacos", "didemo"} <= names


def test_unknown_dataset_is_a_clean_error(tmp_path: Path) -> None:
    preds = _preds(tmp_path / "p.jsonl", {1: [[0, 1, 1]]})
    res = runner.invoke(app, ["eval", str(preds), "-d", "nope"])
    assert res.exit_code == 2
    assert "unknown dataset 'nope'" in res.stderr

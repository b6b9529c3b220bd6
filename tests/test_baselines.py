from __future__ import annotations

from pathlib import Path

import pytest

from pseudo.baselines.prior import LengthPositionPrior, whole_video
from pseudo.data import load_dataset
from pseudo.evaluate import score
from pseudo.records import Query


def test_whole_video_predicts_the_duration() -> None:
    qs = [Query(1, "a", 30.0, "x", ((0.0, 30.0),)), Query(2, "b", 10.0, "y", ((0.0, 2.0),))]
    preds = whole_video(qs)
    assert preds[0].windows == ((0.0, 30.0, 1.0),)
    rep, _ = score(qs, preds, "recall")
    assert rep.headline["R1@0.7"] == 50.0 and rep.headline["mIoU"] == pytest.approx(60.0)


def test_prior_learns_a_planted_position() -> None:
    # every train moment covers the second fifth of its video
    train = [Query(i, f"v{i}", d, "q", ((0.2 * d, 0.4 * d),)) for i, d in enumerate([10.0, 20.0, 50.0] * 10)]
    prior = LengthPositionPrior(grid=10, top_k=3).fit(train)
    (pred,) = prior.predict([Query(0, "t", 100.0, "q", ())])
    assert pred.windows[0][:2] == pytest.approx((20.0, 40.0))
    assert len(pred.windows) == 3 and pred.windows[0][2] >= pred.windows[1][2]


def test_prior_fitted_on_train_beats_whole_video_on_charades(data_root: Path) -> None:
    test = load_dataset("charades_sta", "test", data_root=data_root)
    prior = LengthPositionPrior().fit(load_dataset("charades_sta", "train", data_root=data_root))
    prior_m, _ = score(test, prior.predict(test), "recall")
    whole_m, _ = score(test, whole_video(test), "recall")
    assert prior_m.headline["R1@0.5"] > whole_m.headline["R1@0.5"] + 20
    assert 20 < prior_m.headline["R1@0.5"] < 40  # a prior, not an oracle


def test_prior_needs_windows() -> None:
    with pytest.raises(ValueError, match="no non-empty windows"):
        LengthPositionPrior().fit([Query(1, "a", 10.0, "q", ())])

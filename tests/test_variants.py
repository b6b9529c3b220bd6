"""Query variants (other phrasings of a query, e.g. VTG-GPT's LLM rephrasings) on the shipped slice:
the reader and its errors, fusion in the localizer and in zero-shot ranking, VTG-GPT's span
algorithm, and that no ground-truth field of a variants file reaches a prediction."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import pseudo
from pseudo.backbones import BackboneConfig, build_backbone
from pseudo.baselines.vtggpt import SpanSettings, nms, normalise, spans, vtggpt_predictions
from pseudo.baselines.zero_shot import rank_proposals
from pseudo.data.benchmarks import load_qvh_jsonl
from pseudo.data.store import FeatureStore
from pseudo.data.variants import load_variants
from pseudo.errors import DataFormatError
from pseudo.stages.features import build_caption_features, caption_features_config, caption_texts
from pseudo.stages.proposals import read_proposals, run_proposals
from trainers.config import DataConfig, DecodeConfig, TrainConfig
from trainers.localizer import Localizer, build_model
from trainers.model import LocalizerConfig

SLICE = Path(pseudo.__file__).parent / "assets" / "demo" / "qvhighlights_val_slice"


@pytest.fixture(scope="module")
def slice_data(tmp_path_factory: pytest.TempPathFactory) -> tuple[FeatureStore, Path]:
    root = tmp_path_factory.mktemp("variants")
    gts = load_qvh_jsonl([SLICE / "gt.jsonl"])
    build_caption_features(
        caption_features_config(SLICE / "captions"), root / "s", durations={q.vid: q.duration for q in gts}
    )
    store = FeatureStore.load(root / "s")
    from proposals import ProposalConfig

    run_proposals(store, ProposalConfig(resample_steps=None, num_proposals=30), root / "p.jsonl")
    return store, root / "p.jsonl"


@pytest.fixture(scope="module")
def localizer() -> Localizer:
    """An untrained localizer (random head, real MiniLM tower): enough to check what fusion does."""
    import torch

    torch.manual_seed(0)
    cfg = TrainConfig(
        device="cpu",
        data=DataConfig(max_len=80),
        model=LocalizerConfig(d_model=32, n_heads=2, n_layers=1, levels=3, max_query_tokens=24, dropout=0.0),
    )
    return Localizer(build_model(cfg, 384), cfg)


def test_reader_takes_vtggpt_files_and_ignores_their_other_fields(tmp_path: Path) -> None:
    gts = load_qvh_jsonl([SLICE / "gt.jsonl"])
    variants = load_variants(SLICE / "variants.jsonl", gts)
    assert set(variants) == {str(q.qid) for q in gts} and all(len(v) == 5 for v in variants.values())
    own = tmp_path / "own.jsonl"
    own.write_text(json.dumps({"qid": gts[0].qid, "variants": [" a woman cooks ", ""]}) + "\n")
    assert load_variants(own, gts) == {str(gts[0].qid): ["a woman cooks"]}


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"qid": 999999, "variants": ["x"]}, r"v\.jsonl:1: qid 999999 is not a query of the split"),
        ({"qid": 2579, "variants": []}, r"v\.jsonl:1: qid 2579: variants is empty"),
        ({"qid": 2579, "rephrased_query": ["  "]}, r"qid 2579: rephrased_query is empty"),
        ({"qid": 2579, "variants": "one text"}, r"must be a list of texts"),
        ({"qid": 2579}, r"no 'variants'"),
        ({"variants": ["x"]}, r"missing 'qid'"),
    ],
)
def test_reader_errors_name_the_line(tmp_path: Path, record: dict[str, object], message: str) -> None:
    p = tmp_path / "v.jsonl"
    p.write_text(json.dumps(record) + "\n")
    with pytest.raises(DataFormatError, match=message):
        load_variants(p, load_qvh_jsonl([SLICE / "gt.jsonl"]))


def test_gt_fields_of_a_variants_file_never_reach_a_prediction(
    tmp_path: Path, slice_data: tuple[FeatureStore, Path], localizer: Localizer
) -> None:
    store, _ = slice_data
    gts = load_qvh_jsonl([SLICE / "gt.jsonl"])
    lines = [json.loads(line) for line in (SLICE / "variants.jsonl").read_text().splitlines()]
    assert all("relevant_windows" in r for r in lines)  # the shipped file carries the GT ...
    stripped = tmp_path / "stripped.jsonl"
    stripped.write_text("".join(json.dumps({"qid": r["qid"], "variants": r["rephrased_query"]}) + "\n" for r in lines))
    moved = tmp_path / "moved.jsonl"  # ... and GT moved elsewhere changes nothing either
    moved.write_text("".join(json.dumps({**r, "relevant_windows": [[0, 2]], "duration": 1}) + "\n" for r in lines))
    a = localizer.predict(store, gts, variants=load_variants(SLICE / "variants.jsonl", gts))
    b = localizer.predict(store, gts, variants=load_variants(stripped, gts))
    c = localizer.predict(store, gts, variants=load_variants(moved, gts))
    assert a == b == c


def test_step_fusion_of_identical_variants_changes_nothing(
    slice_data: tuple[FeatureStore, Path], localizer: Localizer
) -> None:
    store, _ = slice_data
    gts = load_qvh_jsonl([SLICE / "gt.jsonl"])
    alone = localizer.predict(store, gts)
    same = {str(q.qid): [q.query, q.query] for q in gts}
    steps = localizer.predict(store, gts, variants=same, decode_cfg=DecodeConfig(variant_fusion="steps"))
    for x, y in zip(alone, steps, strict=True):  # the mean of equal logits is those logits
        assert np.allclose(np.array(x.windows), np.array(y.windows), atol=1e-5)
    pooled = localizer.predict(store, gts, variants=same, decode_cfg=DecodeConfig(variant_fusion="windows"))
    for x, y in zip(alone, pooled, strict=True):  # pooled copies of each window: the best stays first
        assert x.windows[0] == pytest.approx(y.windows[0])
    rephrased = localizer.predict(store, gts, variants=load_variants(SLICE / "variants.jsonl", gts))
    assert [p.windows for p in rephrased] != [p.windows for p in alone]


def test_zero_shot_ranking_averages_over_variants(slice_data: tuple[FeatureStore, Path]) -> None:
    store, props = slice_data
    gts = load_qvh_jsonl([SLICE / "gt.jsonl"])
    enc = build_backbone(BackboneConfig(name="sentence", model="minilm"))
    by_video = read_proposals(props)
    alone = rank_proposals(gts, by_video, store, enc)
    same = rank_proposals(gts, by_video, store, enc, variants={str(q.qid): [q.query] for q in gts})
    assert np.allclose(np.array([w for p in alone for w in p.windows]), np.array([w for p in same for w in p.windows]))
    fused = rank_proposals(gts, by_video, store, enc, variants=load_variants(SLICE / "variants.jsonl", gts))
    assert [p.windows for p in fused] != [p.windows for p in alone]


def test_vtggpt_spans_on_a_hand_made_curve() -> None:
    curve = np.array([0.0, 0.1, 0.95, 1.0, 0.9, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.85, 0.88, 0.1, 0.1])
    # bins of 0.1: clips >= 0.8 are 5 (< top_k 8); down to the 0.1 bin there are 15 >= 8: threshold 0.1,
    # and the clips strictly above it (> 0.1) are 2, 3, 4, 12, 13: gap 8 > 6 splits them
    found = spans(normalise(curve), SpanSettings())
    assert [(a, b) for a, b, _ in found] == [(2, 4), (12, 13)]
    assert found[0][2] == pytest.approx(0.5 * 3 / 5 + 0.5 * np.mean([0.95, 1.0, 0.9]))
    merged = spans(normalise(curve), SpanSettings(gap=8))
    assert [(a, b) for a, b, _ in merged] == [(2, 13)]
    assert nms([(0, 9, 1.0), (0, 9, 0.5), (1, 9, 0.4), (20, 25, 0.3)], 0.95) == [
        (0, 9, 1.0),
        (1, 9, 0.4),
        (20, 25, 0.3),
    ]


def test_vtggpt_on_the_slice_with_and_without_variants(slice_data: tuple[FeatureStore, Path]) -> None:
    store, _ = slice_data
    gts = load_qvh_jsonl([SLICE / "gt.jsonl"])
    enc = build_backbone(BackboneConfig(name="sentence", model="minilm"))
    plain = vtggpt_predictions(gts, store, enc)
    rephrased = vtggpt_predictions(gts, store, enc, variants=load_variants(SLICE / "variants.jsonl", gts))
    for p in (*plain, *rephrased):
        assert p.windows and all(s % 2 == 0 and e % 2 == 0 and 0 <= s < e <= 150 for s, e, _ in p.windows)
        assert [w[2] for w in p.windows] == sorted((w[2] for w in p.windows), reverse=True)
    assert sum(len(p.windows) for p in rephrased) >= sum(len(p.windows) for p in plain)


def test_predict_encodes_every_phrasing_ahead_without_padding(
    slice_data: tuple[FeatureStore, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the hand prompt, predict encodes the queries, their variants and the captions that caption
    feedback adds through the frozen tower before decoding, in batches of one token count (no padded
    position anywhere); the windows are those of encoding them as the batches ask (up to rounding)."""
    import torch

    store, _ = slice_data
    gts = load_qvh_jsonl([SLICE / "gt.jsonl"])
    variants = load_variants(SLICE / "variants.jsonl", gts)
    torch.manual_seed(0)
    cfg = TrainConfig(
        device="cpu",
        data=DataConfig(max_len=80),
        model=LocalizerConfig(
            d_model=32,
            n_heads=2,
            n_layers=1,
            levels=3,
            max_query_tokens=24,
            dropout=0.0,
            prompt="hand",
            ctx_init="a video of",
            plain_similarity=True,
        ),
    )
    localizer = Localizer(build_model(cfg, 384), cfg)
    tower = localizer.model.tower
    dc = DecodeConfig(similarity_weight=0.5, caption_feedback=2)
    texts = caption_texts(store)
    masks: list[torch.Tensor] = []
    real = tower.encode

    def spy(embeds: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        masks.append(mask.clone())
        return real(embeds, mask)

    monkeypatch.setattr(tower, "encode", spy)
    ahead = localizer.predict(store, gts, variants=variants, decode_cfg=dc, step_texts=texts)
    assert masks and all(bool(m.all()) for m in masks)
    tower.forget()
    masks.clear()
    monkeypatch.setattr(tower, "warm", lambda *a, **k: 0)  # as before: encoded as each batch asks
    asked = localizer.predict(store, gts, variants=variants, decode_cfg=dc, step_texts=texts)
    assert not all(bool(m.all()) for m in masks)  # those batches were padded
    for x, y in zip(ahead, asked, strict=True):
        np.testing.assert_allclose(np.array(x.windows), np.array(y.windows), atol=1e-4)

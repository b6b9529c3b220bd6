"""The saliency head and what uses it: its targets and loss, spans of its curve (VTG-GPT's rule) as
windows, and pseudo-labels with every place where their query holds."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

import pseudo
from pseudo.captions.queries import QueryConfig, repeat_windows
from pseudo.data.benchmarks import load_qvh_jsonl
from pseudo.data.store import FeatureStore, VideoFeatures
from pseudo.metrics.iou import iou_cross
from pseudo.stages.features import build_caption_features, caption_features_config
from trainers.config import DataConfig, DecodeConfig, TrainConfig
from trainers.localizer import Localizer, build_model
from trainers.losses import inside_targets, localizer_loss, query_contrast_loss
from trainers.model import LocalizerConfig, minmax

SLICE = Path(pseudo.__file__).parent / "assets" / "demo" / "qvhighlights_val_slice"


def _cfg(saliency_head: bool = False, plain_similarity: bool = False) -> TrainConfig:
    model = LocalizerConfig(
        d_model=32,
        n_heads=2,
        n_layers=1,
        levels=2,
        max_query_tokens=16,
        dropout=0.0,
        saliency_head=saliency_head,
        plain_similarity=plain_similarity,
    )
    return TrainConfig(device="cpu", data=DataConfig(max_len=40), model=model)


def test_inside_targets_and_minmax() -> None:
    t = inside_targets(6, [torch.tensor([[1.0, 3.0]]), torch.tensor([[0.0, 1.0], [4.5, 6.0]])], torch.device("cpu"))
    assert t.tolist() == [[0, 1, 1, 0, 0, 0], [1, 0, 0, 0, 1, 1]]  # a step counts when its centre is inside
    x = torch.tensor([[1.0, 3.0, 2.0, 9.0]])
    mask = torch.tensor([[True, True, True, False]])
    assert minmax(x, mask).tolist() == [[0.0, 1.0, 0.5, 0.0]]


def test_saliency_head_trains_towards_the_windows() -> None:
    torch.manual_seed(0)
    model = build_model(_cfg(saliency_head=True, plain_similarity=True), 384)
    video = torch.randn(2, 12, 384)
    mask = torch.ones(2, 12, dtype=torch.bool)
    windows = [torch.tensor([[2.0, 6.0]]), torch.tensor([[7.0, 11.0]])]
    out = model(video, mask, ["a dog runs", "a man cooks"])
    assert out.saliency is not None and out.saliency.shape == (2, 12)
    assert out.similarity is not None and out.similarity.shape == (2, 12)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    losses = []
    for _ in range(30):
        loss, parts = localizer_loss(model(video, mask, ["a dog runs", "a man cooks"]), windows)
        opt.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()
        losses.append(parts["saliency"])
    assert losses[-1] < 0.5 * losses[0]
    last = model(video, mask, ["a dog runs", "a man cooks"]).saliency
    assert last is not None
    sal = torch.sigmoid(last).detach()
    assert sal[0, 2:6].mean() > sal[0, 7:].mean() and sal[1, 7:11].mean() > sal[1, :6].mean()


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> FeatureStore:
    root = tmp_path_factory.mktemp("sal")
    gts = load_qvh_jsonl([SLICE / "gt.jsonl"])
    cfg = caption_features_config(SLICE / "captions")
    build_caption_features(cfg, root / "s", durations={q.vid: q.duration for q in gts})
    return FeatureStore.load(root / "s")


@pytest.mark.parametrize("source", ["saliency", "both"])
def test_windows_from_saliency_spans(store: FeatureStore, source: str) -> None:
    torch.manual_seed(0)
    loc = Localizer(build_model(_cfg(saliency_head=True), 384), _cfg(saliency_head=True))
    gts = load_qvh_jsonl([SLICE / "gt.jsonl"])
    dc = DecodeConfig(windows_from=source)  # type: ignore[arg-type]
    preds = loc.predict(store, gts, decode_cfg=dc, top_k=20)
    regressed = loc.predict(store, gts, top_k=20)
    for p, r in zip(preds, regressed, strict=True):
        scores = [w[2] for w in p.windows]
        assert scores == sorted(scores, reverse=True)
        spans = [w for w in p.windows if w[2] >= 1.0]  # spans score 1 + their VTG score
        assert spans and all(s % 2 == 0 and e % 2 == 0 and s < e for s, e, _ in spans)  # on the 2 s clip grid
        if source == "both":
            assert len(p.windows) > len(spans)  # regressed windows follow
            assert {w[:2] for w in p.windows if w[2] < 1.0} <= {w[:2] for w in r.windows}
        else:
            assert len(p.windows) == len(spans)
    no_head = Localizer(build_model(_cfg(), 384), _cfg())
    with pytest.raises(pseudo.errors.PseudoError, match="no saliency head"):
        no_head.predict(store, gts[:1], decode_cfg=dc)


def test_zero_shot_spans_join_the_saliency_spans(store: FeatureStore) -> None:
    from pseudo.baselines.vtggpt import vtggpt_predictions
    from pseudo.curves import SpanSettings

    torch.manual_seed(0)
    cfg = _cfg(saliency_head=True, plain_similarity=True)
    loc = Localizer(build_model(cfg, 384), cfg)
    gts = load_qvh_jsonl([SLICE / "gt.jsonl"])
    alone = loc.predict(store, gts, decode_cfg=DecodeConfig(windows_from="saliency"), top_k=50)
    # a weight of 0.5 puts every zero-shot span (score 1 + 0.5 * VTG score) below the model's best span
    fused = loc.predict(
        store, gts, decode_cfg=DecodeConfig(windows_from="saliency", similarity_span_weight=0.5), top_k=50
    )
    # the zero-shot side is VTG-GPT's algorithm on the same encoder and features (the rephrasings aside)
    tower = loc.model.tower

    class Encoder:
        dim = tower.dim

        def encode_texts(self, texts: list[str]) -> np.ndarray:
            return tower.embed_texts(texts).numpy()

    zero_shot = vtggpt_predictions(gts, store, Encoder(), cfg=SpanSettings(gap=6), top_k=50)  # type: ignore[arg-type]
    for a, f, z in zip(alone, fused, zero_shot, strict=True):
        assert f.windows[0] == a.windows[0]
        got = {w[:2] for w in f.windows}
        assert {w[:2] for w in a.windows} <= got  # the model's spans stay
        extra = got - {w[:2] for w in a.windows}
        assert extra and extra <= {w[:2] for w in z.windows}  # the rest are zero-shot spans
    # a list of gaps pools the zero-shot spans cut with each: the finer ones (gap 2) join those of gap 6
    finer = loc.predict(
        store,
        gts,
        decode_cfg=DecodeConfig(windows_from="saliency", similarity_span_weight=0.5, similarity_span_gap=(6, 2)),
        top_k=200,
    )
    fine = vtggpt_predictions(gts, store, Encoder(), cfg=SpanSettings(gap=2), top_k=200)  # type: ignore[arg-type]
    only_fine = 0
    for a, f, z, zf in zip(alone, finer, zero_shot, fine, strict=True):
        assert f.windows[0] == a.windows[0]
        model, coarse, small = ({w[:2] for w in p.windows} for p in (a, z, zf))
        got = {w[:2] for w in f.windows}
        assert model <= got and got <= model | coarse | small
        only_fine += len(got - model - coarse)
    assert only_fine  # the finer cut adds windows that gap 6 never gives
    no_sim = Localizer(build_model(_cfg(saliency_head=True), 384), _cfg(saliency_head=True))
    with pytest.raises(pseudo.errors.PseudoError, match=r"set decode\.similarity_span_weight to 0"):
        no_sim.predict(store, gts[:1], decode_cfg=DecodeConfig(windows_from="saliency", similarity_span_weight=1.0))


def test_repeat_windows_find_the_other_places_a_text_holds() -> None:
    a, b = np.eye(4)[0], np.eye(4)[1]
    rows = [a] * 4 + [b] * 4 + [a] * 2 + [b] * 3 + [a] * 3
    feats = VideoFeatures("v", np.stack(rows).astype(np.float32), np.arange(16, dtype=np.float64) * 2 + 1, 32.0)
    cfg = QueryConfig(repeat_windows=True)
    assert repeat_windows(a.astype(np.float32), feats, (0.0, 8.0), cfg) == [(16.0, 20.0), (26.0, 32.0)]
    assert repeat_windows(a.astype(np.float32), feats, (0.0, 8.0), cfg.model_copy(update={"repeat_max": 1})) == [
        (26.0, 32.0)
    ]  # the longest
    # a run that touches the proposal is part of it, not another moment
    assert repeat_windows(b.astype(np.float32), feats, (8.0, 14.0), cfg) == [(20.0, 26.0)]


def test_query_contrast_loss_by_hand() -> None:
    # one video (group 0) seen with two queries, windows [0, 2) and [2, 4); a third row is another video
    sal = torch.tensor([[2.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 3.0], [5.0, 5.0, 5.0, 5.0]])
    mask = torch.ones(3, 4, dtype=torch.bool)
    windows = [torch.tensor([[0.0, 2.0]]), torch.tensor([[2.0, 4.0]]), torch.tensor([[0.0, 4.0]])]
    loss = query_contrast_loss(sal, mask, windows, torch.tensor([0, 0, 1]))

    # row 0 at steps 0, 1 against row 1; row 1 at steps 2, 3 against row 0; row 2 has no negatives
    def ce(own: float, other: float) -> float:
        return float(-torch.log_softmax(torch.tensor([own, other]), 0)[0])

    expected = (ce(2.0, 0.0) + ce(0.0, 0.0) + ce(1.0, 0.0) + ce(3.0, 0.0)) / 4
    assert float(loss) == pytest.approx(expected, rel=1e-6)
    # a step both windows hold has no negative; no group at all gives 0 (and a gradient of 0)
    overlap = [torch.tensor([[0.0, 4.0]]), torch.tensor([[0.0, 4.0]]), torch.tensor([[0.0, 4.0]])]
    assert float(query_contrast_loss(sal, mask, overlap, torch.tensor([0, 0, 1]))) == 0.0
    x = sal.clone().requires_grad_(True)
    query_contrast_loss(x, mask, windows, torch.tensor([0, 1, 2])).backward()  # type: ignore[no-untyped-call]
    assert x.grad is not None and float(x.grad.abs().sum()) == 0.0


def test_same_video_batches_and_the_contrast_in_training(tmp_path: Path, store: FeatureStore) -> None:
    import json

    from pseudo.data.captions import ExternalCaptions
    from pseudo.errors import PseudoError
    from pseudo.records import Query
    from trainers.config import LossConfig, OptimConfig
    from trainers.loop import epoch_order, train

    qs = [Query(f"{v}#{i}", v, 30.0, f"q{i}", ((0.0, 5.0),)) for v in "abc" for i in range(5)]
    order = epoch_order(qs, seed=0, epoch=0, group=2)
    assert sorted(order.tolist()) == list(range(15))  # every label once
    runs = [qs[int(i)].vid for i in order]
    # runs of the same video, of at most 2, come together: 3 videos of 5 labels make 9 runs
    assert sum(1 for k in range(len(runs)) if k == 0 or runs[k] != runs[k - 1]) <= 9
    assert (epoch_order(qs, 0, 0, 1) == np.random.default_rng([0, 0]).permutation(15)).all()  # unchanged without

    # three labels per real slice video (a caption of each third as its query), trained with the contrast
    track = ExternalCaptions(SLICE / "captions")
    labels = []
    for vid in store.vids():
        caps = track.captions(vid)
        third = len(caps) // 3
        for k in range(3):
            c = caps[k * third + third // 2]
            labels.append(
                Query(
                    f"{vid}#{k}", vid, caps[-1].end, c.text, ((caps[k * third].start, caps[(k + 1) * third - 1].end),)
                )
            )
    cfg = _cfg(saliency_head=True, plain_similarity=True).model_copy(
        update={
            "data": DataConfig(max_len=80),  # whole videos: no per-label crops, so a video's labels share steps
            "optim": OptimConfig(epochs=1, batch_size=6, log_every=1, warmup_steps=1),
            "loss": LossConfig(query_contrast_weight=1.0, query_contrast_group=3),
        }
    )
    train(cfg, labels, store, tmp_path / "run")
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert len(log) == 4 and all(r["contrast"] > 0 for r in log)  # every batch held same-video negatives
    no_head = cfg.model_copy(update={"model": cfg.model.model_copy(update={"saliency_head": False})})
    with pytest.raises(PseudoError, match=r"set model\.saliency_head: true or loss\.query_contrast_weight: 0"):
        train(no_head, labels, store, tmp_path / "bad")


def test_overlap_decay_ranks_near_copies_behind_other_places(store: FeatureStore) -> None:
    torch.manual_seed(0)
    cfg = _cfg(saliency_head=True, plain_similarity=True)
    loc = Localizer(build_model(cfg, 384), cfg)
    gts = load_qvh_jsonl([SLICE / "gt.jsonl"])
    dc = DecodeConfig(windows_from="both", similarity_span_weight=0.8)
    plain = loc.predict(store, gts, decode_cfg=dc, top_k=200)
    decayed = loc.predict(store, gts, decode_cfg=dc.model_copy(update={"overlap_decay_iou": 0.8}), top_k=200)
    moved = 0
    for p, d in zip(plain, decayed, strict=True):
        assert d.windows[0] == p.windows[0]  # the best window stays first: R1 is unchanged
        assert sorted(w[:2] for w in d.windows) == sorted(w[:2] for w in p.windows)  # the same windows
        scores = [w[2] for w in d.windows]
        assert scores == sorted(scores, reverse=True)
        before = {w[:2]: w[2] for w in p.windows}
        assert all(w[2] <= before[w[:2]] + 1e-12 for w in d.windows)  # scores only fall
        for i, w in enumerate(d.windows):  # a window loses score only to a better one it overlaps by > 0.8
            if w[2] < before[w[:2]] - 1e-12:
                better = np.array([v[:2] for v in d.windows[:i]])
                assert iou_cross(better, np.array([w[:2]])).max() > 0.8
                moved += 1
    assert moved  # the slice has such near-copies


def test_second_stage_adds_the_query_contrast_and_embeds_each_text_once(
    store: FeatureStore, count_calls: Callable[[object, str], list[int]]
) -> None:
    torch.manual_seed(0)
    cfg = _cfg(saliency_head=True, plain_similarity=True)
    loc = Localizer(build_model(cfg, 384), cfg)
    gts = load_qvh_jsonl([SLICE / "gt.jsonl"])
    variants = {str(q.qid): [f"someone {q.query.lower()}", "a person talks"] for q in gts}
    dc = DecodeConfig(windows_from="both", similarity_span_weight=0.8)
    plain = loc.predict(store, gts, decode_cfg=dc, top_k=200, variants=variants)
    tower = loc.model.tower
    calls = count_calls(tower, "embed_texts")
    second = dc.model_copy(update={"similarity_weight": 0.5})
    rescored = loc.predict(store, gts, decode_cfg=second, top_k=200, variants=variants)
    assert calls == []  # every phrasing was embedded by the first pass: the second stage reads those
    for q, p, r in zip(gts, plain, rescored, strict=True):
        assert sorted(w[:2] for w in r.windows) == sorted(w[:2] for w in p.windows)  # re-ranked, not changed
        assert [w[2] for w in r.windows] == sorted((w[2] for w in r.windows), reverse=True)
        # by hand: score + 0.5 * mean over the phrasings of (mean cosine inside - mean cosine outside)
        grid = store.get(q.vid)
        emb = tower.embed_texts([q.query, *variants[str(q.qid)]]).numpy().astype(np.float64)
        f = grid.features.astype(np.float64)
        cos = (emb / np.linalg.norm(emb, axis=1, keepdims=True)) @ (f / np.linalg.norm(f, axis=1, keepdims=True)).T
        before = {w[:2]: w[2] for w in p.windows}
        for s, e, sc in r.windows[:20]:
            inside = (grid.timestamps >= s) & (grid.timestamps < e)
            if not inside.any() or inside.all():
                continue
            contrast = (cos[:, inside].mean(axis=1) - cos[:, ~inside].mean(axis=1)).mean()
            assert sc == pytest.approx(before[(s, e)] + 0.5 * contrast, abs=1e-5)


def test_models_built_through_one_pool_share_the_tower_and_what_it_encoded(
    store: FeatureStore, count_calls: Callable[[object, str], list[int]]
) -> None:
    from trainers.text_towers import TowerPool

    base = _cfg(saliency_head=True, plain_similarity=True)  # the recipe's hand prompt: a prompted text never changes
    cfg = base.model_copy(update={"model": base.model.model_copy(update={"prompt": "hand", "ctx_init": "a video of"})})
    pool = TowerPool()
    torch.manual_seed(0)
    first = Localizer(build_model(cfg, 384, pool), cfg)
    second = Localizer(build_model(cfg, 384, pool), cfg)
    alone = Localizer(build_model(cfg, 384), cfg)
    alone.model.load_state_dict(second.model.state_dict())
    assert first.model.tower is second.model.tower and alone.model.tower is not first.model.tower
    assert len(pool) == 1
    gts = load_qvh_jsonl([SLICE / "gt.jsonl"])
    variants = {str(q.qid): [f"someone {q.query.lower()}"] for q in gts}
    dc = DecodeConfig(windows_from="both", similarity_span_weight=0.8, similarity_weight=0.5)
    first.predict(store, gts, decode_cfg=dc, variants=variants)
    calls = count_calls(second.model.tower, "encode")
    shared = second.predict(store, gts, decode_cfg=dc, variants=variants)
    assert calls == []  # the second model encoded no text: the first one's encodings were kept
    own = alone.predict(store, gts, decode_cfg=dc, variants=variants)
    for s, o in zip(shared, own, strict=True):  # the same answers as with a tower of its own
        assert [w[:2] for w in s.windows] == [w[:2] for w in o.windows]
        np.testing.assert_allclose([w[2] for w in s.windows], [w[2] for w in o.windows], rtol=1e-6, atol=1e-6)


def test_hide_query_steps_gives_matching_steps_their_nearest_neighbour() -> None:
    from trainers.data import Sample, hide_query_steps

    feats = np.array([[1, 0], [0, 1], [0, 2], [1, 1], [0, 3], [2, 0]], dtype=np.float32)
    sample = Sample("q", "v", "t", feats, np.array([[1.0, 5.0]]), 2.0)
    hidden, n = hide_query_steps(sample, np.array([0.0, 5.0]), 0.99)  # steps 1, 2 and 4 point along the query
    assert n == 3
    np.testing.assert_array_equal(hidden.features, feats[[0, 0, 3, 3, 3, 5]])  # a tie takes the earlier step
    np.testing.assert_array_equal(sample.features, feats)  # the given sample is left as it was
    assert hidden.windows is sample.windows and hidden.text == "t"
    assert hide_query_steps(sample, np.array([1.0, -1.0]), 0.99) == (sample, 0)  # nothing matches
    assert hide_query_steps(sample, np.array([1.0, 1.0]), -1.0) == (sample, 0)  # everything matches: kept


def test_training_hides_each_pseudo_query_own_caption(store: FeatureStore, tmp_path: Path) -> None:
    import json

    from pseudo.data.store import ArrayDirectory
    from pseudo.data.synthetic import make_synthetic_dataset
    from pseudo.errors import PseudoError
    from pseudo.records import Query
    from trainers.loop import train

    # pseudo-labels as the labels stage makes them from captions: the query is one clip's caption verbatim
    labels = []
    for path in sorted((SLICE / "captions").glob("*.jsonl"))[:3]:
        vid = path.stem
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        grid = store.get(vid)
        for k in (3, 20, 40):
            labels.append(
                Query(f"{vid}#{k}", vid, grid.duration, rows[k]["description"], ((2.0 * k - 4, 2.0 * k + 6),), "pseudo")
            )
    base = _cfg(saliency_head=True, plain_similarity=True)
    cfg = base.model_copy(
        update={
            "data": DataConfig(max_len=80, hide_query_steps=0.95),
            "optim": base.optim.model_copy(update={"epochs": 1, "batch_size": 3, "log_every": 1}),
        }
    )
    train(cfg, labels, store, tmp_path / "hidden")
    logged = [json.loads(line) for line in (tmp_path / "hidden" / "log.jsonl").read_text().splitlines()]
    assert len(logged) == 3 and all(0 < r["hidden_steps"] < 0.5 for r in logged)  # at least its own clip, not all
    train(base.model_copy(update={"optim": cfg.optim}), labels, store, tmp_path / "plain")
    plain = [json.loads(line) for line in (tmp_path / "plain" / "log.jsonl").read_text().splitlines()]
    assert all("hidden_steps" not in r for r in plain)
    # features from another encoder cannot be compared with the text embedding: refused before training
    paths = make_synthetic_dataset(tmp_path / "syn", n_train=8, n_eval=2, dim=32)
    with pytest.raises(PseudoError, match=r"data.hide_query_steps .* \(384 dimensions.*\), not 32 as in .*; remove"):
        train(cfg, load_qvh_jsonl([paths.train]), ArrayDirectory(paths.features), tmp_path / "other")


def test_caption_feedback_asks_again_with_the_best_matching_captions(store: FeatureStore, tmp_path: Path) -> None:
    import json

    from pseudo.data.store import ArrayDirectory
    from pseudo.data.synthetic import make_synthetic_dataset
    from pseudo.errors import PseudoError
    from pseudo.stages.features import caption_texts
    from trainers.data import FeatureCache

    torch.manual_seed(0)
    cfg = _cfg(saliency_head=True, plain_similarity=True)
    loc = Localizer(build_model(cfg, 384), cfg)
    gts = load_qvh_jsonl([SLICE / "gt.jsonl"])[:4]
    texts = caption_texts(store)
    assert texts is not None
    for q in gts:  # the caption behind each row: the slice's caption files, in time order
        rows = [json.loads(line) for line in (SLICE / "captions" / f"{q.vid}.jsonl").read_text().splitlines()]
        assert texts(q.vid) == [r["description"].strip() for r in rows]
    variants = {str(q.qid): [f"someone {q.query.lower()}"] for q in gts}
    asked = loc.caption_feedback(gts, FeatureCache(store), variants, texts, 2)
    tower = loc.model.tower
    for q in gts:
        # by hand: the mean cosine of the query's two phrasings with every caption row, best first
        emb = tower.embed_texts([q.query, *variants[str(q.qid)]]).numpy().astype(np.float64)
        f = store.get(q.vid).features.astype(np.float64)
        cos = (emb / np.linalg.norm(emb, axis=1, keepdims=True)) @ (f / np.linalg.norm(f, axis=1, keepdims=True)).T
        best: list[str] = []
        for i in np.argsort(-cos.mean(axis=0), kind="stable"):
            if texts(q.vid)[i] not in best:
                best.append(texts(q.vid)[i])
        assert asked[str(q.qid)] == [*variants[str(q.qid)], *best[:2]]  # distinct captions, after its own phrasings
    # a prediction with feedback is the prediction with those captions as further phrasings
    dc = DecodeConfig(windows_from="both", similarity_span_weight=0.8, similarity_weight=0.5)
    fed = loc.predict(store, gts, decode_cfg=dc.model_copy(update={"caption_feedback": 2}), variants=variants,
                      step_texts=texts)  # fmt: skip
    assert fed == loc.predict(store, gts, decode_cfg=dc, variants=asked)
    assert fed != loc.predict(store, gts, decode_cfg=dc, variants=variants)
    # features without captions, or captions that are not the features' own: refused, naming the setting
    with pytest.raises(PseudoError, match=r"decode.caption_feedback is 2: .* set decode.caption_feedback to 0"):
        loc.predict(store, gts, decode_cfg=dc.model_copy(update={"caption_feedback": 2}))
    with pytest.raises(PseudoError, match=r"has \d+ feature rows but 3 captions"):
        loc.caption_feedback(gts, FeatureCache(store), variants, lambda vid: ["a", "b", "c"], 2)
    assert caption_texts(ArrayDirectory(make_synthetic_dataset(tmp_path / "syn", 2, 1, 8).features)) is None
    # the captions are read only when asked for: a store whose captions moved still predicts without feedback
    import shutil

    shutil.copytree(SLICE / "captions", tmp_path / "caps")
    build_caption_features(caption_features_config(tmp_path / "caps"), tmp_path / "s", vids=[gts[0].vid])
    moved = FeatureStore.load(tmp_path / "s")
    shutil.rmtree(tmp_path / "caps")
    later = caption_texts(moved)
    assert later is not None
    assert loc.predict(moved, gts[:1], decode_cfg=dc) == loc.predict(moved, gts[:1], decode_cfg=dc, step_texts=later)
    with pytest.raises(PseudoError, match="do not exist"):
        later(gts[0].vid)
    # a video's queries come one after another: its captions are read once, at its first query
    two = sorted({q.vid for q in gts})[:2]
    shutil.copytree(SLICE / "captions", tmp_path / "caps")
    build_caption_features(caption_features_config(tmp_path / "caps"), tmp_path / "s2", vids=two)
    memo = caption_texts(FeatureStore.load(tmp_path / "s2"))
    assert memo is not None
    first = memo(two[0])
    first.append("changed by the caller")  # the memo hands out copies
    (tmp_path / "caps" / f"{two[0]}.jsonl").unlink()
    assert memo(two[0]) == texts(two[0])
    assert memo(two[1]) == texts(two[1])  # the next video is read from its file
    shutil.rmtree(tmp_path / "caps")
    with pytest.raises(PseudoError, match="do not exist"):
        memo(two[0])  # the memo holds the last video only


def test_an_ensemble_averages_its_members_per_step(store: FeatureStore) -> None:
    from trainers.text_towers import TowerPool

    base = _cfg(saliency_head=True, plain_similarity=True)
    cfg = base.model_copy(update={"model": base.model.model_copy(update={"prompt": "hand", "ctx_init": "a video of"})})
    pool = TowerPool()
    torch.manual_seed(0)
    first, second = (Localizer(build_model(cfg, 384, pool), cfg) for _ in range(2))
    copy = Localizer(build_model(cfg, 384, pool), cfg)
    copy.model.load_state_dict(first.model.state_dict())
    gts = load_qvh_jsonl([SLICE / "gt.jsonl"])
    variants = {str(q.qid): [f"someone {q.query.lower()}"] for q in gts}
    dc = DecodeConfig(windows_from="both", similarity_span_weight=0.8, similarity_weight=0.5)

    def ask(loc: Localizer) -> list[list[tuple[float, float, float]]]:
        return [list(p.windows) for p in loc.predict(store, gts, decode_cfg=dc, variants=variants, top_k=20)]

    alone, other = ask(first), ask(second)
    # a model averaged with an exact copy of itself answers as it does alone
    assert ask(Localizer.ensemble([first, copy])) == alone
    # two different models: their order does not matter, and the answers are neither member's
    pair = ask(Localizer.ensemble([first, second]))
    assert pair == ask(Localizer.ensemble([second, first]))
    assert pair != alone and pair != other
    assert len(Localizer.ensemble([first, second]).members) == 2
    assert Localizer.ensemble([first, second]).digest() not in (first.digest(), second.digest())
    # members must come from one recipe: a seed may differ, nothing else
    seeded = cfg.model_copy(update={"optim": cfg.optim.model_copy(update={"seed": 7})})
    Localizer.ensemble([first, Localizer(second.model, seeded)])
    wider = cfg.model_copy(update={"data": cfg.data.model_copy(update={"max_len": 20})})
    with pytest.raises(pseudo.errors.PseudoError, match=r"not only optim\.seed"):
        Localizer.ensemble([first, Localizer(second.model, wider)])
    with pytest.raises(pseudo.errors.PseudoError, match="at least one"):
        Localizer.ensemble([])

"""The moment localizer's pieces: frozen text towers, prompt learners, model, losses, decoding."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from pseudo.backbones.base import BackboneConfig, torch_threads
from pseudo.errors import PseudoError
from pseudo.testing import save_random_clip
from trainers import (
    LocalizerConfig,
    LocalizerOutput,
    MomentLocalizer,
    PromptLearner,
    TextTower,
    assign_targets,
    build_text_tower,
    decode,
    default_regression_ranges,
    diou_loss,
    localizer_loss,
    sigmoid_focal_loss,
    snap_to_events,
    snap_to_steps,
    soft_nms,
)

VIDEO_DIM = 128
TEXTS = ["a man walks into the room", "the dog jumps"]


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """These models are tiny: on a busy machine intra-op threads only fight (20x slower with 2)."""
    with torch_threads(1):
        yield


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_random_clip(tmp_path_factory.mktemp("clip") / "tiny", size="tiny")


@pytest.fixture(scope="module")
def clip_tower(clip_dir: Path) -> TextTower:
    return build_text_tower(BackboneConfig(name="hf_clip", model=str(clip_dir)))


@pytest.fixture(scope="module")
def minilm_tower() -> TextTower:
    return build_text_tower(BackboneConfig(name="sentence", model="minilm"))


@pytest.fixture(params=["clip_tower", "minilm_tower"])
def tower(request: pytest.FixtureRequest) -> TextTower:
    out: TextTower = request.getfixturevalue(request.param)
    return out


def small_batch(steps: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    video = torch.randn(2, steps, VIDEO_DIM)
    mask = torch.ones(2, steps, dtype=torch.bool)
    mask[1, 12:] = False
    return video, mask


def hand_pyramid(steps: int, levels: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    points, strides, ranges = [], [], []
    for level, rng in enumerate(default_regression_ranges(levels)):
        s = 2**level
        for i in range(math.ceil(steps / s)):
            points.append((i + 0.5) * s)
            strides.append(float(s))
            ranges.append(rng)
    return torch.tensor(points), torch.tensor(strides), torch.tensor(ranges)


# ---------------------------------------------------------------- text towers


def test_unknown_tower_lists_known_names() -> None:
    with pytest.raises(PseudoError, match="hf_clip, sentence"):
        build_text_tower(BackboneConfig(name="nope", model="x"))


def test_clip_tower_matches_transformers_text_features(clip_tower: TextTower, clip_dir: Path) -> None:
    from transformers import CLIPModel

    clip = CLIPModel.from_pretrained(clip_dir)
    assert not clip.training
    ids, mask = clip_tower.tokenize(TEXTS, 32)
    assert not bool(mask[1].all())  # the short query is padded
    with torch.no_grad():
        ref = clip.get_text_features(input_ids=ids, attention_mask=mask.long())
        ref = getattr(ref, "pooler_output", ref)
        tokens, pooled = clip_tower.encode(clip_tower.embed_tokens(ids), mask)
    assert clip_tower.dim == 16
    assert tokens.shape == (2, ids.shape[1], 16)
    torch.testing.assert_close(pooled, ref, atol=1e-5, rtol=1e-5)


def test_sentence_tower_is_minilm_mean_pooling(minilm_tower: TextTower) -> None:
    from transformers import AutoModel, AutoTokenizer

    from pseudo.backbones.sentence import resolve_model

    path = resolve_model("minilm")
    model, tok = AutoModel.from_pretrained(path), AutoTokenizer.from_pretrained(path)
    assert not model.training
    batch = tok(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
        w = batch["attention_mask"].unsqueeze(-1).float()
        ref = (hidden * w).sum(1) / w.sum(1)
        ids, mask = minilm_tower.tokenize(TEXTS, 32)
        _, pooled = minilm_tower.encode(minilm_tower.embed_tokens(ids), mask)
    assert minilm_tower.dim == 384
    torch.testing.assert_close(pooled, ref, atol=1e-5, rtol=1e-5)


def test_prompted_pooling_ignores_padding(tower: TextTower) -> None:
    """The EOS / mean pooling must follow the mask, also with the context spliced in."""
    torch.manual_seed(0)
    prompt = PromptLearner(tower, n_ctx=4, mode="coop")
    with torch.no_grad():
        _, mask, pooled = prompt(TEXTS)
        _, _, alone = prompt(TEXTS[1:])
    assert mask.shape[1] > int(mask[1].sum())  # row 1 is padded in the batch
    torch.testing.assert_close(pooled[1], alone[0], atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------- prompts


def test_ctx_init_is_the_words_embeddings(tower: TextTower) -> None:
    torch.manual_seed(0)
    words = tower.tokenizer("a video of", add_special_tokens=False)["input_ids"]
    assert len(words) == 3
    with torch.no_grad():
        expected = tower.embed_tokens(torch.tensor([words]))[0]
    exact = PromptLearner(tower, n_ctx=3, ctx_init="a video of")
    assert exact.ctx is not None
    torch.testing.assert_close(exact.ctx.data, expected)
    longer = PromptLearner(tower, n_ctx=5, ctx_init="a video of")
    assert longer.ctx is not None
    torch.testing.assert_close(longer.ctx.data[2:], expected)  # the words stay next to the query
    assert float(longer.ctx.data[:2].std()) < 0.05
    shorter = PromptLearner(tower, n_ctx=2, ctx_init="a video of")
    assert shorter.ctx is not None
    torch.testing.assert_close(shorter.ctx.data, expected[:2])
    random = PromptLearner(tower, n_ctx=4, ctx_init=None)
    assert random.ctx is not None
    assert abs(float(random.ctx.data.std()) - 0.02) < 0.01


def test_cocoop_bias_depends_on_the_video(tower: TextTower) -> None:
    torch.manual_seed(0)
    prompt = PromptLearner(tower, n_ctx=4, mode="cocoop", video_dim=VIDEO_DIM)
    videos = torch.randn(2, VIDEO_DIM)
    with torch.no_grad():
        bias = prompt.meta_bias(videos)
        ctx = prompt.context(2, videos)
        _, _, pooled_a = prompt([TEXTS[0]] * 2, videos)
    assert bias.shape == (2, tower.embed_dim)
    assert float((bias[0] - bias[1]).abs().max()) > 1e-4
    assert float((ctx[0] - ctx[1]).abs().max()) > 1e-4
    assert float((pooled_a[0] - pooled_a[1]).abs().max()) > 1e-6  # same query, different videos
    with pytest.raises(PseudoError, match="video_pooled"):
        prompt(TEXTS)
    coop = PromptLearner(tower, n_ctx=4, mode="coop")
    assert coop.meta_net is None
    torch.testing.assert_close(coop.context(2, videos)[0], coop.context(2, videos)[1])


def test_hand_prompt_is_plain_text(tower: TextTower, count_calls: Callable[[object, str], list[int]]) -> None:
    prompt = PromptLearner(tower, mode="hand", ctx_init="a video of")
    assert prompt.ctx is None and prompt.meta_net is None
    assert not any(p.requires_grad for p in prompt.parameters())
    with torch.no_grad():
        tokens, mask, pooled = prompt(TEXTS)
        ids, ref_mask = tower.tokenize(["a video of " + t for t in TEXTS], 32)
        ref_tokens, ref_pooled = tower.encode(tower.embed_tokens(ids), ref_mask)
    assert torch.equal(mask, ref_mask)
    torch.testing.assert_close(pooled, ref_pooled)
    torch.testing.assert_close(tokens[mask], ref_tokens[mask])  # padding is masked out downstream
    # each text is encoded once and reused, whatever batch it comes in with
    calls = count_calls(tower, "encode")
    again, again_mask, again_pooled = prompt([TEXTS[1], "another text", TEXTS[0]])
    assert calls == [1]  # only the new text went through the tower
    for i, j in ((0, 1), (2, 0)):
        n = int(ref_mask[j].sum())
        assert int(again_mask[i].sum()) == n
        torch.testing.assert_close(again[i, :n], ref_tokens[j, :n], rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(again_pooled[i], ref_pooled[j])
    # the cache is bounded: past its size the least recently used text goes, and comes back the same
    memo = tower._encoded  # the tower keeps them, keyed by the prompted text and the length it was cut to
    size = memo.max_items
    memo.max_items = 2
    try:
        prompt([TEXTS[0]])
        prompt(["a third text"])
        assert list(memo) == [("a video of " + TEXTS[0], 32), ("a video of a third text", 32)]
        _, back_mask, back_pooled = prompt([TEXTS[1], TEXTS[0]])
        assert len(memo) == 2 and list(memo)[-1] == ("a video of " + TEXTS[1], 32)
    finally:
        memo.max_items = size
    torch.testing.assert_close(back_pooled[0], ref_pooled[1])
    assert int(back_mask[0].sum()) == int(ref_mask[1].sum())


def test_warm_encodes_each_text_once_in_batches_without_padding(
    tower: TextTower, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``warm_texts`` makes ahead what ``forward`` asks the frozen tower for (the hand prompt's encodings
    and the plain embeddings), each distinct text once, in batches of one token count (no padding);
    the encodings equal those of each text alone, and ``forward`` then encodes nothing."""
    texts = ["warm one", "warm two words here", "warm three", "warm a much longer sentence about a person", "warm one"]
    cfg = LocalizerConfig(d_model=32, n_heads=2, prompt="hand", ctx_init="a video of", plain_similarity=True)
    model = MomentLocalizer(tower, tower.dim, cfg).eval()  # plain similarity: steps in the tower's space
    assert model.plain_proj is not None
    real = tower.encode
    with torch.no_grad():
        alone = []
        for t in dict.fromkeys(texts):
            ids, mask = tower.tokenize(["a video of " + t], model.prompt.max_length)
            alone.append(real(tower.embed_tokens(ids), mask)[1][0])
    masks: list[torch.Tensor] = []

    def spy(embeds: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        masks.append(mask.clone())
        return real(embeds, mask)

    monkeypatch.setattr(tower, "encode", spy)
    assert model.warm_texts(texts) == 8  # 4 distinct texts, prompted and plain
    assert sum(len(m) for m in masks) == 8 and all(bool(m.all()) for m in masks)  # no padded position
    assert len(masks) < 8  # texts of one token count shared a batch
    masks.clear()
    assert model.warm_texts(texts) == 0
    with torch.no_grad():
        _, _, pooled = model.prompt(texts)
        model.plain_embeddings(texts)
    assert masks == []  # forward's text side came from what was kept
    for i, j in enumerate([0, 1, 2, 3, 0]):
        torch.testing.assert_close(pooled[i], alone[j], rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------- model


@pytest.mark.parametrize(
    ("mode", "fusion"), [("coop", "cross_attention"), ("cocoop", "concat"), ("hand", "cross_attention")]
)
def test_forward_backward_trains_only_prompt_and_localizer(tower: TextTower, mode: str, fusion: str) -> None:
    torch.manual_seed(0)
    cfg = LocalizerConfig.model_validate({"d_model": 32, "n_heads": 2, "prompt": mode, "fusion": fusion})
    model = MomentLocalizer(tower, VIDEO_DIM, cfg)
    model.train()
    assert model.training
    assert not any(m.training for m in tower.modules())  # the frozen tower stays in eval mode

    video, mask = small_batch(16)
    out = model(video, mask, TEXTS)
    n = 16 + 8 + 4
    assert out.logits.shape == (2, n)
    assert out.offsets.shape == (2, n, 2)
    assert bool((out.offsets >= 0).all())
    points, strides, ranges = hand_pyramid(16, 3)
    assert torch.equal(out.points, points)
    assert torch.equal(out.strides, strides)
    assert torch.equal(out.ranges, ranges)
    assert out.mask.sum(1).tolist() == [28, 12 + 6 + 3]
    assert out.lengths.tolist() == [16.0, 12.0]

    loss, parts = localizer_loss(out, [torch.tensor([[2.0, 9.0]]), torch.tensor([[0.0, 3.0], [5.0, 11.0]])])
    assert parts["positives"] > 0
    torch.autograd.backward(loss)

    trainable = set(model.trainable_parameters())
    prompt_trainable = {name for name in trainable if name.startswith("prompt.")}
    expected_prompt = {
        "coop": {"prompt.ctx"},
        "cocoop": {"prompt.ctx"} | {f"prompt.meta_net.{i}.{w}" for i in (0, 2) for w in ("weight", "bias")},
        "hand": set(),
    }[mode]
    assert prompt_trainable == expected_prompt
    assert any(name.startswith("encoder.") for name in trainable)
    for name, p in model.named_parameters():
        if name.startswith("prompt.tower."):
            assert not p.requires_grad, name
            assert p.grad is None, name
        else:
            assert p.requires_grad, name
            assert p.grad is not None, name
            assert float(p.grad.abs().sum()) > 0, name
    assert sum(1 for _ in tower.parameters()) > 0


# ---------------------------------------------------------------- targets and losses


def test_assign_targets_hand_made() -> None:
    points, strides, ranges = hand_pyramid(16, 3)  # level 0: 0..15, level 1: 16..23, level 2: 24..27
    mask = torch.ones(3, 28, dtype=torch.bool)
    mask[2] = torch.tensor([True] * 4 + [False] * 12 + [True] * 2 + [False] * 6 + [True] + [False] * 3)
    windows = [
        torch.tensor([[2.0, 5.0], [3.0, 7.0], [0.0, 16.0]]),
        torch.zeros(0, 2),
        torch.tensor([[0.0, 16.0]]),  # only level-2 points 6 and 10 could take it, and they are padding
    ]
    cls, reg, pos = assign_targets(points, strides, ranges, mask, windows, center_radius=1.5)
    # (2, 5): level-0 points 2.5, 3.5, 4.5; (3, 7): 4.5 (lost to the shorter (2, 5)) and 5.5;
    # (0, 16): level-2 points 6 and 10 (reach 10 is in [8, inf); levels 0 and 1 are out of range)
    assert torch.nonzero(pos[0]).flatten().tolist() == [2, 3, 4, 5, 25, 26]
    assert torch.equal(cls[0], pos[0].float())
    expected = {2: (0.5, 2.5), 3: (1.5, 1.5), 4: (2.5, 0.5), 5: (2.5, 1.5), 25: (6.0, 10.0), 26: (10.0, 6.0)}
    for i, lr in expected.items():
        assert reg[0, i].tolist() == list(lr)
    assert float(reg[0][~pos[0]].abs().sum()) == 0.0
    assert not bool(pos[1].any()) and float(cls[1].sum()) == 0.0
    assert not bool(pos[2].any())


def test_focal_loss_matches_the_formula() -> None:
    logits = torch.tensor([[2.0, -1.0, 0.5], [-3.0, 1.0, 0.0]])
    targets = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]])
    mask = torch.tensor([[True, True, True], [True, True, False]])
    alpha, gamma = 0.25, 2.0
    total = 0.0
    for x, t, m in zip(logits.flatten().tolist(), targets.flatten().tolist(), mask.flatten().tolist(), strict=True):
        if not m:
            continue
        p = 1 / (1 + math.exp(-x))
        if t == 1:
            total += -alpha * (1 - p) ** gamma * math.log(p)
        else:
            total += -(1 - alpha) * p**gamma * math.log(1 - p)
    expected = total / 2  # two unmasked positives
    got = sigmoid_focal_loss(logits, targets, alpha, gamma, mask)
    assert abs(float(got) - expected) < 1e-6
    unmasked = sigmoid_focal_loss(logits, targets, alpha, gamma)
    assert float(unmasked) != pytest.approx(expected)


def test_diou_loss_values() -> None:
    same = torch.tensor([[1.0, 2.0], [3.0, 0.5]])
    assert float(diou_loss(same, same).abs().max()) < 1e-6
    # nested, same centre: IoU 0.5, no centre term
    assert float(diou_loss(torch.tensor([[1.0, 1.0]]), torch.tensor([[2.0, 2.0]]))[0]) == pytest.approx(0.5)
    # touching at the point: IoU 0, centres 2 apart in an enclosing length of 4
    assert float(diou_loss(torch.tensor([[0.0, 2.0]]), torch.tensor([[2.0, 0.0]]))[0]) == pytest.approx(1.25)


# ---------------------------------------------------------------- decoding


def test_soft_nms_decays_duplicates_and_keeps_disjoint() -> None:
    windows = np.array([[0.0, 10.0, 0.9], [0.0, 10.0, 0.8], [20.0, 30.0, 0.7], [0.0, 5.0, 0.6]])
    out = soft_nms(windows, sigma=0.5)
    assert out.shape == (4, 3)
    assert out[0].tolist() == [0.0, 10.0, 0.9]
    assert out[1].tolist() == [20.0, 30.0, 0.7]  # disjoint: untouched
    scores = sorted(out[2:, 2].tolist(), reverse=True)
    half = 0.6 * math.exp(-(0.5**2) / 0.5)  # IoU 0.5 with the winner
    assert scores[0] == pytest.approx(half)
    assert scores[1] == pytest.approx(0.8 * math.exp(-1 / 0.5) * math.exp(-(0.5**2) / 0.5))
    assert list(out[:, 2]) == sorted(out[:, 2], reverse=True)
    linear = soft_nms(windows, iou_threshold_linear=0.3)
    assert linear[1].tolist() == [20.0, 30.0, 0.7]
    assert linear[2, 2] == pytest.approx(0.6 * 0.5)
    assert linear[3, 2] == pytest.approx(0.0)
    assert soft_nms(np.zeros((0, 3))).shape == (0, 3)


def test_decode_hand_made() -> None:
    points = torch.arange(8.0) + 0.5
    logits = torch.tensor([[-5.0, 3.0, -5.0, -5.0, -5.0, 2.0, 4.0, 1.0]])
    offsets = torch.zeros(1, 8, 2)
    offsets[0, 1] = torch.tensor([0.5, 1.5])  # (1, 3)
    offsets[0, 5] = torch.tensor([1.5, 3.0])  # (4, 8.5) -> clipped to (4, 6)
    offsets[0, 6] = torch.tensor([1.0, 1.0])  # padding point: never returned
    offsets[0, 7] = torch.tensor([1.0, 1.0])  # padding point
    mask = torch.tensor([[True] * 6 + [False] * 2])
    out = LocalizerOutput(
        logits=logits,
        offsets=offsets,
        points=points,
        strides=torch.ones(8),
        ranges=torch.tensor([[0.0, math.inf]]).expand(8, 2),
        mask=mask,
        lengths=torch.tensor([6.0]),
    )
    (ranked,) = decode(out, top_k=2)
    assert len(ranked) == 2
    assert ranked[0][:2] == (1.0, 3.0) and ranked[0][2] == pytest.approx(1 / (1 + math.exp(-3)))
    assert ranked[1][:2] == (4.0, 6.0) and ranked[1][2] == pytest.approx(1 / (1 + math.exp(-2)))


def test_snap_to_steps_rounds_and_keeps_the_best_duplicate() -> None:
    cand = np.array([[0.4, 2.6, 0.5], [1.3, 2.2, 0.9], [0.2, 0.3, 0.4], [4.6, 6.0, 0.8], [5.8, 6.0, 0.7]])
    out = snap_to_steps(cand, length=6.0)
    # (0.4, 2.6) -> (0, 3); (1.3, 2.2) -> (1, 2); (0.2, 0.3) -> (0, 1): at least one step;
    # (4.6, 6) -> (5, 6) and (5.8, 6) -> (5, 6) is a duplicate: the better score (0.8) stays
    assert out.tolist() == [[1.0, 2.0, 0.9], [5.0, 6.0, 0.8], [0.0, 3.0, 0.5], [0.0, 1.0, 0.4]]
    assert snap_to_steps(np.zeros((0, 3)), 5.0).shape == (0, 3)


def test_snap_to_events_moves_only_near_boundaries() -> None:
    events = np.array([0.0, 10.0, 22.0, 40.0])
    wins = np.array([[8.0, 21.0, 0.9], [12.0, 30.0, 0.8], [9.0, 23.0, 0.7], [10.5, 11.0, 0.6]])
    out = snap_to_events(wins, events, tolerance=3.0)
    # (8, 21) -> (10, 22); (12, 30): 12 -> 10, 30 has no event within 3 s; (9, 23) -> (10, 22) again: dropped;
    # (10.5, 11) would become (10, 10), empty: it keeps its own boundaries
    assert out.tolist() == [[10.0, 22.0, 0.9], [10.0, 30.0, 0.8], [10.5, 11.0, 0.6]]
    assert snap_to_events(wins, events, tolerance=0.0) is wins
    assert snap_to_events(wins, np.zeros(0), tolerance=3.0) is wins
    one = snap_to_events(np.array([[1.0, 5.0, 1.0]]), np.array([4.0]), tolerance=2.0)
    assert one.tolist() == [[1.0, 4.0, 1.0]]


def test_decode_model_output_is_sorted_and_inside(minilm_tower: TextTower) -> None:
    torch.manual_seed(0)
    model = MomentLocalizer(minilm_tower, VIDEO_DIM, LocalizerConfig(d_model=32, n_heads=2)).eval()
    video, mask = small_batch(16)
    with torch.no_grad():
        results = decode(model(video, mask, TEXTS), top_k=5)
    assert len(results) == 2
    for ranked, length in zip(results, (16.0, 12.0), strict=True):
        assert len(ranked) == 5
        scores = [s for _, _, s in ranked]
        assert scores == sorted(scores, reverse=True)
        assert all(0.0 <= s < e <= length for s, e, _ in ranked)


# ---------------------------------------------------------------- learning


def test_overfits_eight_videos(minilm_tower: TextTower) -> None:
    torch.manual_seed(0)
    steps = 32
    cfg = LocalizerConfig(d_model=64, n_heads=4, n_layers=1, dropout=0.0)
    model = MomentLocalizer(minilm_tower, 64, cfg)
    video = torch.randn(8, steps, 64)
    mask = torch.ones(8, steps, dtype=torch.bool)
    mask[4:, 24:] = False
    texts = [f"person does action number {i}" for i in range(8)]
    starts = [2.0, 10.0, 0.0, 20.0, 5.0, 12.0, 1.0, 16.0]
    lengths = [6.0, 4.0, 12.0, 9.0, 3.0, 8.0, 20.0, 5.0]
    windows = [torch.tensor([[s, s + n]]) for s, n in zip(starts, lengths, strict=True)]
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=2e-3)
    assert model.prompt.ctx is not None
    ctx0 = model.prompt.ctx.detach().clone()
    model.train()
    losses = []
    for _ in range(60):
        loss, _ = localizer_loss(model(video, mask, texts), windows)
        opt.zero_grad()
        torch.autograd.backward(loss)
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0], losses
    assert not torch.equal(model.prompt.ctx.detach(), ctx0)

from __future__ import annotations

import itertools
import json
import warnings

import numpy as np
import numpy.typing as npt
import pytest
from pydantic import ValidationError

from proposals import (
    COMPOSERS,
    SIMILARITIES,
    AtomicEvent,
    ProposalConfig,
    ProposalSet,
    generate_proposals,
)
from proposals.clustering import cluster_steps
from proposals.composite import RunTable, compactness_scores
from proposals.events import atomic_events, label_runs, merge_short_runs
from proposals.similarity import self_similarity
from pseudo.timeline import resample_linear

FloatArray = npt.NDArray[np.float64]


def planted(
    rng: np.random.Generator, lengths: list[int], dim: int = 32, noise: float = 0.1, kinds: list[int] | None = None
) -> tuple[FloatArray, list[int]]:
    """Segments of a random unit vector each (or of ``kinds[i]``'s vector) plus Gaussian noise; the interior cuts."""
    kinds = kinds if kinds is not None else list(range(len(lengths)))
    vecs = rng.normal(size=(max(kinds) + 1, dim))
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    x = np.repeat(vecs[kinds], lengths, axis=0) + noise * rng.normal(size=(sum(lengths), dim))
    return x, np.cumsum(lengths)[:-1].tolist()


def random_lengths(rng: np.random.Generator) -> list[int]:
    while True:
        lengths = rng.integers(5, 41, size=int(rng.integers(3, 9)))
        if 30 <= lengths.sum() <= 300:
            return [int(n) for n in lengths]


def cut_steps(result: ProposalSet) -> list[int]:
    return [a.start_step for a in result.atoms[1:]]


def check_atoms_tile(result: ProposalSet) -> None:
    atoms = result.atoms
    assert atoms[0].start_step == 0 and atoms[-1].end_step == result.ssm.shape[0]
    for a, b in itertools.pairwise(atoms):
        assert a.end_step == b.start_step and a.end == b.start
    for a in atoms:
        assert a.start == pytest.approx(result.boundaries[a.start_step])
        assert a.end == pytest.approx(result.boundaries[a.end_step])


# ---- planted segments -----------------------------------------------------------------------


def test_planted_cuts_are_found_at_native_resolution() -> None:
    hits = total = found = 0
    for seed in range(8):
        rng = np.random.default_rng(seed)
        x, cuts = planted(rng, random_lengths(rng))
        result = generate_proposals(x, duration=float(len(x)) / 2, config=ProposalConfig(resample_steps=None))
        check_atoms_tile(result)
        assert result.ssm.shape == (len(x), len(x))
        pred = np.asarray(cut_steps(result))
        hits += sum(bool(pred.size) and int(np.abs(pred - c).min()) <= 1 for c in cuts)
        total += len(cuts)
        found += pred.size
    assert total >= 30
    assert hits / total >= 0.9, f"{hits}/{total} cuts found"
    assert found <= 1.5 * total, f"{found} boundaries for {total} cuts"


def test_planted_cuts_with_recurring_segments() -> None:
    rng = np.random.default_rng(11)
    x, cuts = planted(rng, [20, 15, 25, 10, 30, 12], kinds=[0, 1, 0, 2, 1, 0])
    result = generate_proposals(x, 100.0, ProposalConfig(resample_steps=None))
    pred = cut_steps(result)
    assert len(pred) == len(cuts)
    assert all(abs(p - c) <= 1 for p, c in zip(pred, cuts, strict=True))
    assert [a.cluster for a in result.atoms] == [0, 1, 0, 2, 1, 0]  # three kinds, found again


def test_planted_cuts_after_resampling_to_128_steps() -> None:
    hits = total = 0
    duration = 75.0
    for seed in range(3):
        rng = np.random.default_rng(100 + seed)
        lengths = [int(n) for n in rng.integers(20, 61, size=6)]
        x, cuts = planted(rng, lengths)
        result = generate_proposals(x, duration, ProposalConfig(resample_steps=128))
        assert result.ssm.shape == (128, 128)
        assert result.boundaries.shape == (129,)
        assert result.boundaries[0] == 0.0 and result.boundaries[-1] == pytest.approx(duration)
        check_atoms_tile(result)
        true_s = np.asarray(cuts) * duration / len(x)
        pred_s = np.asarray([a.start for a in result.atoms[1:]])
        step = duration / 128
        hits += int(sum(np.abs(pred_s - t).min() <= step + 1e-9 for t in true_s))
        total += len(cuts)
        assert len(pred_s) <= 1.5 * len(cuts)
    assert hits / total >= 0.9, f"{hits}/{total} cuts within one resampled step"


# ---- composers ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ten_segments() -> FloatArray:
    x, _ = planted(np.random.default_rng(5), [12, 8, 15, 10, 9, 14, 11, 7, 13, 10], noise=0.05)
    return x


@pytest.mark.parametrize("composer", COMPOSERS.names())
def test_composers_return_distinct_runs_of_consecutive_atoms(composer: str, ten_segments: FloatArray) -> None:
    cfg = ProposalConfig(resample_steps=None, num_clusters=10, composer=composer, num_proposals=20, seed=3)
    result = generate_proposals(ten_segments, 50.0, cfg)
    assert len(result.atoms) == 10  # 55 possible runs, so the composer has to choose
    props = result.proposals
    assert len(props) == 20
    assert len({p.atoms for p in props}) == len(props)
    for p in props:
        assert p.atoms == tuple(range(p.atoms[0], p.atoms[-1] + 1))
        assert p.start == result.atoms[p.atoms[0]].start and p.end == result.atoms[p.atoms[-1]].end
        assert 0.0 <= p.score <= 1.0 and p.method == composer
    scores = [p.score for p in props]
    assert scores == sorted(scores, reverse=True) and len(set(scores)) > 1
    again = generate_proposals(ten_segments, 50.0, cfg)
    assert again.proposals == result.proposals


def test_random_composer_depends_on_the_seed(ten_segments: FloatArray) -> None:
    def runs(seed: int) -> set[tuple[int, ...]]:
        cfg = ProposalConfig(resample_steps=None, num_clusters=10, num_proposals=20, seed=seed)
        return {p.atoms for p in generate_proposals(ten_segments, 50.0, cfg).proposals}

    assert runs(0) == runs(0)
    assert runs(0) != runs(1)


def test_compactness_keeps_the_best_scores_and_diversity_overlaps_less(ten_segments: FloatArray) -> None:
    base = ProposalConfig(resample_steps=None, num_clusters=10, num_proposals=100)
    every = generate_proposals(ten_segments, 50.0, base.model_copy(update={"composer": "compactness"})).proposals
    assert len(every) == 55
    best = generate_proposals(
        ten_segments, 50.0, base.model_copy(update={"composer": "compactness", "num_proposals": 8})
    )
    assert [p.score for p in best.proposals] == [p.score for p in every[:8]]
    # single atoms of a clean planted video are more compact than runs spanning a cut
    assert all(len(p.atoms) == 1 for p in best.proposals)

    def overlapping_pairs(cfg: ProposalConfig) -> int:
        spans = [(p.start, p.end) for p in generate_proposals(ten_segments, 50.0, cfg).proposals]
        return sum(min(e1, e2) > max(s1, s2) for (s1, e1), (s2, e2) in itertools.combinations(spans, 2))

    ten = base.model_copy(update={"num_proposals": 10})
    assert overlapping_pairs(ten.model_copy(update={"composer": "diversity"})) == 0  # the 10 atoms tile the video
    assert overlapping_pairs(ten.model_copy(update={"composer": "random"})) > 10


def test_diversity_greedy_picks_disjoint_runs_first() -> None:
    # four atoms of 2 steps each; all runs
    first = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 3])
    last = np.array([0, 1, 2, 3, 1, 2, 3, 2, 3, 3])
    table = RunTable(first, last, first * 2, (last + 1) * 2, np.linspace(1.0, 0.1, 10))
    rng = np.random.default_rng(0)
    # the best run, then disjoint runs by score, then the run whose largest IoU is least (0..3: 0.25)
    assert COMPOSERS.get("diversity")(table, 5, rng) == [0, 4, 7, 9, 3]
    assert COMPOSERS.get("compactness")(table, 5, rng) == [0, 1, 2, 3, 4]
    assert table.iou_with(3).tolist() == pytest.approx([0.25, 0.5, 0.75, 1.0, 0.25, 0.5, 0.75, 0.25, 0.5, 0.25])


def test_max_atoms_limits_composites(ten_segments: FloatArray) -> None:
    cfg = ProposalConfig(resample_steps=None, num_clusters=10, max_atoms=2, num_proposals=100, composer="compactness")
    props = generate_proposals(ten_segments, 50.0, cfg).proposals
    assert len(props) == 10 + 9
    assert max(len(p.atoms) for p in props) == 2


def test_compactness_scores_prefer_a_true_segment() -> None:
    x, _ = planted(np.random.default_rng(2), [10, 10, 10], noise=0.05)
    ssm = self_similarity(x)
    scores = compactness_scores(ssm, np.array([10, 5, 0]), np.array([20, 15, 30]))
    assert scores[0] > 0.8 > scores[1]  # a segment beats a span across a cut
    assert scores[2] == pytest.approx(0.5 + (ssm[~np.eye(30, dtype=bool)].mean() - ssm.min()) / (2 * np.ptp(ssm)))
    assert np.all((scores >= 0) & (scores <= 1))


# ---- similarities ---------------------------------------------------------------------------


def test_cosine_ssm_is_symmetric_with_unit_diagonal() -> None:
    x = np.random.default_rng(0).normal(size=(17, 5)) * np.arange(1, 18)[:, None]
    s = self_similarity(x, "cosine")
    assert np.array_equal(s, s.T)
    assert np.allclose(np.diag(s), 1.0)
    assert s.min() >= -1.0 and s.max() <= 1.0
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    assert np.allclose(s, unit @ unit.T)


@pytest.mark.parametrize("temperature", [0.1, 1.0, 5.0])
def test_euclidean_softmax_rows_are_distributions(temperature: float) -> None:
    x = np.random.default_rng(1).normal(size=(13, 6))
    s = self_similarity(x, "euclidean_softmax", temperature)
    assert np.allclose(s.sum(axis=1), 1.0)
    assert np.all(s > 0)
    assert np.all(np.argmax(s, axis=1) == np.arange(13))  # distance 0 to itself wins
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    d2 = ((unit[:, None] - unit[None]) ** 2).sum(-1)
    expected = np.exp(-d2 / temperature)
    assert np.allclose(s, expected / expected.sum(axis=1, keepdims=True))


def test_euclidean_softmax_pipeline_finds_planted_cuts() -> None:
    rng = np.random.default_rng(4)
    x, cuts = planted(rng, [15, 25, 20, 10])
    cfg = ProposalConfig(resample_steps=None, similarity="euclidean_softmax", temperature=0.5)
    assert all(abs(p - c) <= 1 for p, c in zip(cut_steps(generate_proposals(x, 10.0, cfg)), cuts, strict=True))


def test_registries_list_their_names() -> None:
    assert SIMILARITIES.names() == ["cosine", "euclidean_softmax"]
    assert COMPOSERS.names() == ["compactness", "diversity", "random"]


# ---- resampling, clustering, events ---------------------------------------------------------


def test_resample_linear_interpolates_between_step_centres() -> None:
    x = np.arange(4, dtype=float)[:, None] * np.array([[1.0, -2.0]])
    assert np.allclose(resample_linear(x, 8)[:, 0], [0, 0.25, 0.75, 1.25, 1.75, 2.25, 2.75, 3])
    assert np.allclose(resample_linear(x, 2)[:, 1], [-1.0, -5.0])
    assert np.array_equal(resample_linear(np.ones((1, 3)), 5), np.ones((5, 3)))
    assert np.array_equal(resample_linear(x, 4), x)


def test_auto_k_finds_the_number_of_kinds() -> None:
    x, _ = planted(np.random.default_rng(8), [10, 12, 8, 10, 14, 9, 11], kinds=[0, 1, 2, 3, 1, 0, 2])
    labels = cluster_steps(self_similarity(x), "auto", seed=0)
    assert len(np.unique(labels)) == 4
    first_seen = [labels.tolist().index(k) for k in range(4)]
    assert first_seen == sorted(first_seen)  # labels numbered in order of first appearance


def test_k_is_reduced_to_the_distinct_rows() -> None:
    x = np.repeat(np.eye(3)[:2], [6, 6], axis=0)  # two distinct rows only
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for k in (5, "auto"):
            result = generate_proposals(x, 12.0, ProposalConfig(resample_steps=None, num_clusters=k))
            assert [(a.start_step, a.end_step) for a in result.atoms] == [(0, 6), (6, 12)]
            assert [(a.start, a.end) for a in result.atoms] == [(0.0, 6.0), (6.0, 12.0)]


def test_label_runs_are_maximal() -> None:
    assert label_runs([3, 3, 1, 1, 1, 3, 2]) == [(0, 2, 3), (2, 5, 1), (5, 6, 3), (6, 7, 2)]
    assert label_runs([]) == []


def test_short_event_merges_into_the_more_similar_neighbour() -> None:
    a, b, c = np.eye(3)
    mid = 0.2 * a + 0.8 * c  # closer to the right-hand event
    feats = np.vstack([np.tile(a, (4, 1)), mid[None], np.tile(c, (4, 1)), np.tile(b, (3, 1))])
    runs = label_runs([0, 0, 0, 0, 1, 2, 2, 2, 2, 3, 3, 3])
    assert merge_short_runs(runs, feats, 2) == [(0, 4, 0), (4, 9, 2), (9, 12, 3)]
    assert merge_short_runs(runs, feats, 1) == runs
    # merging a blip between two runs of one label leaves one maximal run
    blip = label_runs([0, 0, 0, 5, 0, 0, 7, 7])
    assert merge_short_runs(blip, np.ones((8, 2)), 2) == [(0, 6, 0), (6, 8, 7)]
    # everything short: merging stops at a single event
    assert (
        merge_short_runs(label_runs([0, 1, 2]), np.eye(3), 5) == [(0, 3, 1)]
        or len(merge_short_runs(label_runs([0, 1, 2]), np.eye(3), 5)) == 1
    )


def test_atomic_events_use_the_step_grid() -> None:
    grid = np.linspace(0.0, 3.0, 7)
    atoms = atomic_events([0, 0, 0, 1, 1, 1], np.eye(6), grid, min_steps=2)
    assert atoms == [AtomicEvent(0.0, 1.5, 0, 3, 0), AtomicEvent(1.5, 3.0, 3, 6, 1)]
    with pytest.raises(ValueError, match="T \\+ 1"):
        atomic_events([0, 0], np.eye(2), grid)


# ---- edge cases -----------------------------------------------------------------------------


@pytest.mark.parametrize("steps", [None, 128])
def test_single_step_gives_one_event_covering_the_video(steps: int | None) -> None:
    result = generate_proposals(np.array([[0.3, -1.0, 2.0]]), 7.5, ProposalConfig(resample_steps=steps))
    assert len(result.atoms) == 1 and len(result.proposals) == 1
    p = result.proposals[0]
    assert (p.start, p.end, p.atoms, p.score) == (0.0, 7.5, (0,), 1.0)


@pytest.mark.parametrize("composer", COMPOSERS.names())
def test_constant_features_give_one_event_covering_the_video(composer: str) -> None:
    x = np.tile(np.array([1.0, 2.0, 3.0]), (40, 1))
    result = generate_proposals(x, 20.0, ProposalConfig(composer=composer))
    assert [(a.start, a.end) for a in result.atoms] == [(0.0, 20.0)]
    assert [(p.start, p.end, p.score) for p in result.proposals] == [(0.0, 20.0, 1.0)]


def test_bad_inputs_raise_clear_errors() -> None:
    x = np.random.default_rng(0).normal(size=(10, 4))
    x[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN/inf"):
        generate_proposals(x, 10.0)
    x[3, 1] = np.inf
    with pytest.raises(ValueError, match="first bad row 3"):
        generate_proposals(x, 10.0)
    good = np.ones((10, 4))
    for duration in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="duration"):
            generate_proposals(good, duration)
    with pytest.raises(ValueError, match="2-D"):
        generate_proposals(np.ones(10), 10.0)
    with pytest.raises(ValueError, match="2-D"):
        generate_proposals(np.ones((0, 4)), 10.0)


def test_proposal_records_round_trip_as_json() -> None:
    from pseudo.data.store import VideoFeatures
    from pseudo.records import Proposal
    from pseudo.stages.proposals import proposals_for

    x, _ = planted(np.random.default_rng(0), [10, 10])
    cfg = ProposalConfig(resample_steps=None, num_proposals=3)
    times = np.arange(20, dtype=np.float64) * 0.4 + 0.2
    feats = VideoFeatures("vid1", x.astype(np.float32), times, 8.0, content_hash="f1")
    _, records = proposals_for(feats, cfg)
    assert len(records) == 3
    rows = [r.to_json() for r in records]
    assert set(rows[0]) == {
        "video",
        "duration",
        "start",
        "end",
        "score",
        "method",
        "atoms",
        "settings_hash",
        "features_hash",
    }
    assert rows[0]["video"] == "vid1" and rows[0]["features_hash"] == "f1" and rows[0]["settings_hash"]
    assert [Proposal.from_json(json.loads(json.dumps(r))) for r in rows] == records
    assert sorted((r["start"], r["end"]) for r in rows) == [(0.0, 4.0), (0.0, 8.0), (4.0, 8.0)]


# ---- config ---------------------------------------------------------------------------------


def test_unknown_names_list_the_known_ones() -> None:
    with pytest.raises(ValidationError, match="similarity") as err:
        ProposalConfig(similarity="dot")
    assert "known: cosine, euclidean_softmax" in str(err.value)
    with pytest.raises(ValidationError, match="known: compactness, diversity, random"):
        ProposalConfig(composer="best")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("temperature", -1.0),
        ("temperature", 0.0),
        ("temperature", float("inf")),
        ("resample_steps", 1),
        ("num_clusters", 0),
        ("num_clusters", "many"),
        ("k_min", 1),
        ("min_event_steps", 0),
        ("num_proposals", 0),
        ("max_atoms", 0),
        ("seed", -1),
    ],
)
def test_bad_values_name_the_field(field: str, value: object) -> None:
    with pytest.raises(ValidationError) as err:
        ProposalConfig.model_validate({field: value})
    assert {e["loc"][0] for e in err.value.errors()} == {field}


def test_config_rejects_unknown_keys_and_inverted_k_range() -> None:
    with pytest.raises(ValidationError, match="extra"):
        ProposalConfig(clusters=3)  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="k_max"):
        ProposalConfig(k_min=6, k_max=4)
    cfg = ProposalConfig(similarity="COSINE", num_clusters=4)
    assert cfg.similarity == "cosine" and cfg.num_clusters == 4
    with pytest.raises(ValidationError):
        cfg.seed = 3


def test_settings_hash_is_stable_and_tracks_every_field() -> None:
    base = ProposalConfig()
    assert base.settings_hash() == ProposalConfig().settings_hash()
    assert len(base.settings_hash()) == 12 and int(base.settings_hash(), 16) >= 0
    assert ProposalConfig.model_validate(base.model_dump(mode="json")).settings_hash() == base.settings_hash()
    changed = {
        "resample_steps": None,
        "similarity": "euclidean_softmax",
        "temperature": 0.5,
        "num_clusters": 5,
        "k_min": 3,
        "k_max": 10,
        "min_event_steps": 3,
        "composer": "diversity",
        "num_proposals": 20,
        "max_atoms": 4,
        "seed": 1,
    }
    assert set(changed) == set(ProposalConfig.model_fields)
    hashes = {ProposalConfig.model_validate({k: v}).settings_hash() for k, v in changed.items()}
    assert len(hashes) == len(changed) and base.settings_hash() not in hashes

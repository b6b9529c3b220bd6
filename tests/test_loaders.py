"""Loader counts are checked against shared/data/SOURCES.md."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pseudo.data import load_dataset
from pseudo.errors import DataFormatError, DataNotFoundError, PseudoError

# (dataset, split, queries, videos) from SOURCES.md
COUNTS = [
    ("charades_sta", "train", 12408, 5338),
    ("charades_sta", "test", 3720, 1334),
    ("activitynet", "train", 37421, 10009),
    ("activitynet", "val_1", 17505, 4917),
    ("activitynet", "val_2", 17031, 4885),
    ("qvhighlights", "train", 7218, None),
    ("qvhighlights", "val", 1550, 1519),
    ("qvhighlights", "test", 1542, 1529),
    ("qvhighlights", "test_nogt", 1542, 1529),
    ("tacos", "train", 9790, 75),
    ("tacos", "val", 4436, 27),
    ("tacos", "test", 4001, 25),
    ("didemo", "val", 4180, None),
    ("didemo", "test", 4021, 1037),
]


@pytest.mark.parametrize(("name", "split", "n_queries", "n_videos"), COUNTS)
def test_counts_match_sources(data_root: Path, name: str, split: str, n_queries: int, n_videos: int | None) -> None:
    qs = load_dataset(name, split, data_root=data_root)
    assert len(qs) == n_queries
    if n_videos is not None:
        assert len({q.vid for q in qs}) == n_videos
    assert len({str(q.qid) for q in qs}) == n_queries, "qids must be unique within a split"
    for q in qs:
        assert q.duration > 0 and q.query
        for s, e in q.windows:
            assert 0 <= s <= e <= q.duration


def test_charades_train_oddities(data_root: Path) -> None:
    qs = load_dataset("charades_sta", "train", data_root=data_root)
    reversed_line = qs[8439]  # "IOL8Q 20.9 12.0##..." is stored end-first
    assert reversed_line.vid == "IOL8Q" and reversed_line.windows == ((12.0, 20.9),)
    # windows that start after the video ends collapse to zero length; lighthouse drops these lines
    empty = [q for q in qs if q.windows[0][0] == q.windows[0][1]]
    assert sorted(q.vid for q in empty) == ["AKKWU", "AKKWU", "LEOL6"]
    assert all("raw_window" in q.meta for q in empty)


def test_split_aliases(data_root: Path) -> None:
    assert len(load_dataset("activitynet", "test", data_root=data_root)) == 17031  # val_2
    with pytest.raises(PseudoError, match="no split 'dev'"):
        load_dataset("tacos", "dev", data_root=data_root)
    with pytest.raises(PseudoError, match="unknown dataset 'kinetics'"):
        load_dataset("kinetics", "test", data_root=data_root)


def test_charades_clips_to_csv_duration(data_root: Path) -> None:
    qs = load_dataset("charades_sta", "test", data_root=data_root)
    clipped = [q for q in qs if "raw_window" in q.meta]
    assert len(clipped) == 562
    overshoot = [q.meta["raw_window"][1] - q.duration for q in clipped]
    assert max(overshoot) <= 1.5 + 1e-9
    assert all(q.windows[0][1] == q.duration for q in clipped)
    # same durations and windows as the lighthouse conversion of the test split
    lh = {}
    for line in (data_root / "charades_sta/lighthouse_format/charades_test_release.jsonl").open():
        d = json.loads(line)
        lh[(d["vid"], d["query"])] = d
    for q in qs[:500]:
        ref = lh[(q.vid, q.query)]
        assert q.duration == ref["duration"]
        assert list(q.windows[0]) == pytest.approx(ref["relevant_windows"][0], abs=1e-6)


def test_tacos_frames_to_seconds_matches_lighthouse(data_root: Path) -> None:
    qs = {q.qid: q for q in load_dataset("tacos", "test", data_root=data_root)}
    for line in (data_root / "tacos/lighthouse_format/tacos_test_release.jsonl").open():
        ref = json.loads(line)
        q = qs[ref["qid"]]
        assert q.duration == pytest.approx(ref["duration"])
        assert list(q.windows[0]) == pytest.approx(ref["relevant_windows"][0])


def test_qvhighlights_test_gt_and_saliency(data_root: Path) -> None:
    with_gt = load_dataset("qvhighlights", "test", data_root=data_root)
    no_gt = load_dataset("qvhighlights", "test_nogt", data_root=data_root)
    assert all(q.windows for q in with_gt) and not any(q.windows for q in no_gt)
    assert {q.qid for q in with_gt} == {q.qid for q in no_gt}
    assert all(len(q.meta["saliency_scores"]) == len(q.meta["relevant_clip_ids"]) for q in with_gt)


def test_didemo_segments(data_root: Path) -> None:
    qs = load_dataset("didemo", "test", data_root=data_root)
    q = qs[0]  # times [[4,4],[4,4],[0,0],[4,4],[0,0],[0,0],[4,4]]: [4,4] is the majority
    assert q.windows == ((20.0, 25.0), (0.0, 5.0))
    assert q.duration == 30.0
    assert all(w[1] - w[0] >= 5.0 for q in qs for w in q.windows)


def test_activitynet_user_copy(tmp_path: Path) -> None:
    f = tmp_path / "mine.json"
    f.write_text(json.dumps({"v_x": {"duration": 10.0, "timestamps": [[1, 3], [8, 12]], "sentences": ["a", " b"]}}))
    qs = load_dataset("activitynet", "test", files=[f])
    assert [q.windows for q in qs] == [((1.0, 3.0),), ((8.0, 10.0),)]
    assert qs[1].query == "b" and qs[1].meta["raw_window"] == [8.0, 12.0]


def test_malformed_lines_name_file_and_line(tmp_path: Path, data_root: Path) -> None:
    bad = tmp_path / "bad_sta.txt"
    bad.write_text("3MSZA 24.3 30.4##person turn a light on.\n3MSZA 24.3##missing end\n")
    csv = data_root / "charades_sta/Charades_v1_test.csv"
    with pytest.raises(DataFormatError, match=r"bad_sta\.txt:2: expected 'VID start end##sentence'"):
        load_dataset("charades_sta", "test", files=[bad, csv])
    bad.write_text("3MSZA 24.3 abc##x\n")
    with pytest.raises(DataFormatError, match=r"bad_sta\.txt:1: end must be a number"):
        load_dataset("charades_sta", "test", files=[bad, csv])
    bad.write_text("NOPE1 1 2##x\n")
    with pytest.raises(DataFormatError, match=r"bad_sta\.txt:1: video NOPE1 has no duration"):
        load_dataset("charades_sta", "test", files=[bad, csv])

    jl = tmp_path / "bad.jsonl"
    jl.write_text('{"qid": 1, "vid": "a", "query": "q", "duration": 10, "relevant_windows": [[1, 2]]}\n{"qid": 2,\n')
    with pytest.raises(DataFormatError, match=r"bad\.jsonl:2: invalid JSON"):
        load_dataset("qvhighlights", "val", files=[jl])
    jl.write_text('{"qid": 1, "vid": "a", "query": "q", "duration": 10, "relevant_windows": [[5, 2]]}\n')
    with pytest.raises(DataFormatError, match=r"bad\.jsonl:1: window \[5.0, 2.0\] ends before it starts"):
        load_dataset("qvhighlights", "val", files=[jl])
    jl.write_text('{"qid": 1, "vid": "a", "duration": 10}\n')
    with pytest.raises(DataFormatError, match=r"bad\.jsonl:1: missing field\(s\) query"):
        load_dataset("jsonl", "custom", files=[jl])


def test_missing_files_are_explained(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError, match=r"missing file .*charades_sta_test\.txt"):
        load_dataset("charades_sta", "test", data_root=tmp_path)
    with pytest.raises(DataNotFoundError, match="no such file"):
        load_dataset("tacos", "test", files=[tmp_path / "nope.json"])

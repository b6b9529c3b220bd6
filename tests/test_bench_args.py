"""Every bench checks that it can save its table before it runs, not after."""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

import pytest

import bench


def bench_modules() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(bench.__path__) if not m.name.startswith("_"))


def test_every_bench_is_found() -> None:
    assert {"qvhighlights", "caption_features", "train", "scale"} <= set(bench_modules())


@pytest.mark.parametrize("name", bench_modules())
def test_unwritable_out_fails_before_the_run(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    out = blocker / "result.md"
    module = importlib.import_module(f"bench.{name}")
    monkeypatch.setattr("sys.argv", [name, "--out", str(out)])
    with pytest.raises(SystemExit) as exc:
        module.main()
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "--out" in err and "a-file is a file" in err
    assert blocker.read_text() == "not a folder"


#: the benches that read a recipe (``--recipe``)
RECIPE_BENCHES = ["predict", "pseudo_labels", "qvhighlights", "qvhighlights_gap"]


def test_the_recipe_benches_are_those_with_a_recipe_flag() -> None:
    src = {n: (Path(bench.__path__[0]) / f"{n}.py").read_text() for n in bench_modules()}
    assert sorted(n for n, text in src.items() if '"--recipe"' in text) == RECIPE_BENCHES


@pytest.mark.parametrize("name", RECIPE_BENCHES)
def test_a_missing_recipe_is_one_line_and_exit_2(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from bench._common import run_bench

    missing = tmp_path / "nope.yaml"
    module = importlib.import_module(f"bench.{name}")
    monkeypatch.setattr("sys.argv", [name, "--recipe", str(missing), "--out", str(tmp_path / "out.md")])
    with pytest.raises(SystemExit) as exc:
        run_bench(module.main)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(missing) in err, err
    assert not (tmp_path / "out.md").exists()

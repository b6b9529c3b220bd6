"""The dataset registry: each benchmark registers its splits, default files and a loader."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pseudo.data.paths import find_data_root
from pseudo.errors import DataNotFoundError, PseudoError
from pseudo.records import Query
from pseudo.registry import Registry

Loader = Callable[[Sequence[Path]], list[Query]]


@dataclass(frozen=True)
class DatasetSpec:
    """How to read one benchmark.

    ``splits`` maps a split name to the files (relative to the data root) its loader reads, in
    the order the loader takes them; ``aliases`` maps other common split names onto those.
    """

    name: str
    loader: Loader
    splits: dict[str, tuple[str, ...]]
    description: str = ""
    aliases: dict[str, str] = field(default_factory=dict)
    train_split: str | None = None
    test_split: str | None = None

    def resolve_split(self, split: str) -> str:
        split = self.aliases.get(split, split)
        if split not in self.splits:
            known = ", ".join(list(self.splits) + list(self.aliases))
            raise PseudoError(f"dataset {self.name!r} has no split {split!r}; known: {known}")
        return split

    def files(self, split: str, data_root: str | Path | None = None) -> list[Path]:
        root = find_data_root(data_root)
        paths = [root / rel for rel in self.splits[self.resolve_split(split)]]
        for p in paths:
            if not p.is_file():
                raise DataNotFoundError(
                    f"{self.name} {split}: missing file {p}; pass the files explicitly (files=... / --gt) "
                    f"or point --data-root at a copy laid out as {self.splits[self.resolve_split(split)]}"
                )
        return paths


DATASETS: Registry[DatasetSpec] = Registry("dataset", providers=("pseudo.data.benchmarks",))


def register_dataset(spec: DatasetSpec) -> DatasetSpec:
    DATASETS.add(spec.name, spec)
    return spec


def load_dataset(
    name: str,
    split: str,
    files: Sequence[str | Path] | None = None,
    data_root: str | Path | None = None,
) -> list[Query]:
    """Load one split of a registered benchmark as :class:`Query` records.

    ``files`` overrides the default files (same order as the spec lists them), so a user can
    point a loader at their own copy; otherwise they are found under ``data_root``.
    """
    spec = DATASETS.get(name)
    paths = [Path(f) for f in files] if files else spec.files(split, data_root)
    if not paths:
        raise DataNotFoundError(f"dataset {name!r} has no default files; give the annotation file(s) (--gt / files=)")
    for p in paths:
        if not p.is_file():
            raise DataNotFoundError(f"{name}: no such file {p}")
    return spec.loader(paths)


def get_dataset(name: str) -> DatasetSpec:
    return DATASETS.get(name)

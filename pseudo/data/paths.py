"""Where benchmark files live: an explicit path, ``$PSEUDO_DATA_ROOT``, or a ``shared/data`` nearby."""

from __future__ import annotations

import os
from pathlib import Path

from pseudo.errors import DataNotFoundError

ENV_VAR = "PSEUDO_DATA_ROOT"


def candidate_roots(explicit: str | Path | None = None) -> list[Path]:
    if explicit is not None:
        return [Path(explicit)]
    out: list[Path] = []
    env = os.environ.get(ENV_VAR)
    if env:
        out.append(Path(env))
    cwd = Path.cwd()
    repo = Path(__file__).resolve().parents[2]
    for base in (cwd, repo):
        out += [base / "shared" / "data", base.parent / "shared" / "data"]
    seen: set[Path] = set()
    return [p for p in out if not (p in seen or seen.add(p))]  # type: ignore[func-returns-value]


def find_data_root(explicit: str | Path | None = None) -> Path:
    """The first existing data root; a clear error otherwise."""
    tried = candidate_roots(explicit)
    for root in tried:
        if root.is_dir():
            return root
    looked = ", ".join(str(p) for p in tried)
    raise DataNotFoundError(
        f"no benchmark data directory found (looked in: {looked}); "
        f"pass --data-root DIR or set {ENV_VAR}=DIR, or give the annotation files with --gt"
    )

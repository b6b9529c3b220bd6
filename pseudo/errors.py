"""Errors that tell the user which file is wrong and how to fix it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class PseudoError(Exception):
    """Base class for errors meant to be shown to a user as they are (no traceback)."""


class DataFormatError(PseudoError, ValueError):
    """A data file has a malformed record."""

    def __init__(self, path: str | Path, message: str, line: int | None = None, hint: str = "") -> None:
        where = f"{path}:{line}" if line is not None else str(path)
        text = f"{where}: {message}"
        if hint:
            text += f" ({hint})"
        super().__init__(text)
        self.path = Path(path)
        self.line = line


class DataNotFoundError(PseudoError, FileNotFoundError):
    """A benchmark file or data root is missing."""


class StopStage(PseudoError):
    """An error about a stage's inputs as a whole (not one video): it stops the run instead of being
    recorded as one video's failure."""


@contextmanager
def stops_stage(what: str) -> Iterator[None]:
    """Around work that every video of a stage shares (loading its model): a :class:`PseudoError`
    inside becomes one :class:`StopStage` naming ``what``, instead of each video failing in turn with
    the same reason."""
    try:
        yield
    except StopStage:
        raise
    except PseudoError as exc:
        raise StopStage(f"{what}: {exc}") from exc

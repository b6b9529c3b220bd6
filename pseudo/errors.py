"""Errors that tell the user which file is wrong and how to fix it."""

from __future__ import annotations

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

"""Captions made elsewhere, per frame or per clip, read as ``Caption(start, end, text)`` tracks.

Accepted layouts (a directory or a ``.zip`` of one; the zip is read in place):

* one ``<vid>.jsonl`` per video, each line ``{"moment": i, "description": ...}`` for clip ``i`` of
  ``clip_seconds`` (VTG-GPT's MiniGPT-v2 QVHighlights captions, 2-second clips), or lines with
  explicit ``{"start", "end", "caption"}`` / ``{"time", "caption"}`` seconds;
* one ``<vid>.json`` per video holding a list of such records.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from pseudo.errors import DataFormatError, DataNotFoundError
from pseudo.io import json_error_text, parse_json_line


@dataclass(frozen=True)
class Caption:
    start: float
    end: float
    text: str


class ExternalCaptions:
    """A read-only caption track per video from a folder or zip archive."""

    def __init__(self, path: str | Path, clip_seconds: float = 2.0) -> None:
        self.path = Path(path)
        self.clip_seconds = clip_seconds
        if not self.path.exists():
            raise DataNotFoundError(f"captions {self.path} do not exist")
        self._zip: zipfile.ZipFile | None = None
        self._members: dict[str, str] = {}
        if self.path.is_file() and zipfile.is_zipfile(self.path):
            self._zip = zipfile.ZipFile(self.path)
            for name in self._zip.namelist():
                p = PurePosixPath(name)
                if p.suffix in (".jsonl", ".json") and not p.name.startswith("."):
                    self._members[p.stem] = name
        elif self.path.is_dir():
            for f in sorted(self.path.rglob("*")):
                if f.suffix in (".jsonl", ".json") and not f.name.startswith("."):
                    self._members[f.stem] = str(f)
        else:
            raise DataFormatError(self.path, "expected a folder or a .zip of <video>.jsonl caption files")
        if not self._members:
            raise DataFormatError(self.path, "no <video>.jsonl or <video>.json caption files found")

    def __getstate__(self) -> dict[str, object]:
        """Picklable (for Ray workers): the open archive is left behind and reopened where unpickled."""
        state = dict(self.__dict__)
        state["_zip"] = None
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)
        if self.path.is_file() and zipfile.is_zipfile(self.path):
            self._zip = zipfile.ZipFile(self.path)

    def vids(self) -> list[str]:
        return sorted(self._members)

    def fingerprint(self) -> str:
        """Changes when any caption file changes (zip CRCs, or file names and sizes)."""
        import hashlib

        h = hashlib.sha256(str(self.clip_seconds).encode())
        if self._zip is not None:
            for info in sorted(self._zip.infolist(), key=lambda i: i.filename):
                h.update(f"{info.filename}:{info.CRC}:{info.file_size}".encode())
        else:
            for vid, name in sorted(self._members.items()):
                h.update(f"{vid}:{Path(name).stat().st_size}".encode())
        return h.hexdigest()[:12]

    def __contains__(self, vid: object) -> bool:
        return isinstance(vid, str) and vid in self._members

    def _read(self, vid: str) -> tuple[str, str]:
        name = self._members.get(vid)
        if name is None:
            raise DataNotFoundError(f"{self.path}: no captions for video {vid!r}")
        if self._zip is not None:
            return f"{self.path}!{name}", self._zip.read(name).decode("utf-8")
        try:
            return name, Path(name).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise DataNotFoundError(
                f"captions {name} do not exist any more (moved or deleted since {self.path} was opened); put them back"
            ) from None

    def captions(self, vid: str) -> list[Caption]:
        """The video's captions in time order."""
        where, text = self._read(vid)
        if where.endswith(".json"):
            try:
                data = json.loads(text)
            except json.JSONDecodeError as exc:
                raise DataFormatError(where, json_error_text(exc), exc.lineno) from None
            if not isinstance(data, list):
                raise DataFormatError(where, "expected a list of caption records")
            records: Iterator[tuple[int, Any]] = enumerate(data, start=1)
        else:
            records = ((i, _loads(where, line, i)) for i, line in enumerate(text.splitlines(), 1) if line.strip())
        out = [self._caption(where, lineno, rec) for lineno, rec in records]
        return sorted(out, key=lambda c: (c.start, c.end))

    def _caption(self, where: str, lineno: int, rec: Any) -> Caption:
        if not isinstance(rec, dict):
            raise DataFormatError(where, "expected a JSON object", lineno)
        text = rec.get("description", rec.get("caption", rec.get("text")))
        if not isinstance(text, str):
            raise DataFormatError(where, "needs a 'description', 'caption' or 'text' string", lineno)
        if "moment" in rec:
            i = int(rec["moment"])
            return Caption(i * self.clip_seconds, (i + 1) * self.clip_seconds, text.strip())
        if "start" in rec and "end" in rec:
            return Caption(float(rec["start"]), float(rec["end"]), text.strip())
        if "time" in rec:
            t = float(rec["time"])
            return Caption(t, t, text.strip())
        raise DataFormatError(where, "needs 'moment', 'start'/'end' or 'time'", lineno)


def _loads(where: str, line: str, lineno: int) -> Any:
    return parse_json_line(line, where, lineno)

"""Per-video part files behind one JSON Lines output, so many writers can share a stage.

A stage that writes one JSONL for a whole corpus (proposals, pseudo-labels) keeps each video's
lines in ``<dir>/.<name>.parts/<ab>/<vid>.jsonl`` (atomic, one writer per video, tagged with the
hash of what made them). When every requested video has a current part, the parts are merged, in
video order, into the output, atomically. A rerun reuses current parts; shards of a SLURM array each
write theirs, and whichever finishes last writes the merged file.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from pseudo.data.store import shard
from pseudo.errors import DataFormatError
from pseudo.io import atomic_write_jsonl, atomic_write_text, iter_jsonl, open_text

#: the first line of a part: which video, and the hash of what made it
HEADER = "_part"


class PartFiles:
    def __init__(self, out: str | Path) -> None:
        self.out = Path(out)
        self.root = self.out.parent / f".{self.out.name}.parts"

    def path(self, vid: str) -> Path:
        return self.root / shard(vid) / f"{vid}.jsonl"

    def _head(self, vid: str, key: str) -> dict[str, Any] | None:
        p = self.path(vid)
        if not p.is_file():
            return None
        try:
            with open_text(p) as fh:
                head = json.loads(fh.readline() or "{}")
        except (OSError, ValueError):
            return None
        return head if isinstance(head, dict) and head.get(HEADER) == vid and head.get("key") == key else None

    def current(self, vid: str, key: str) -> bool:
        """Whether ``vid`` has a part made with ``key`` (its lines, or the error that stopped it)."""
        return self._head(vid, key) is not None

    def failure(self, vid: str, key: str) -> str | None:
        """The error recorded for ``vid`` under ``key``, if its part is a failure."""
        head = self._head(vid, key)
        return None if head is None or head.get("error") is None else str(head["error"])

    def write(self, vid: str, key: str, records: Sequence[dict[str, Any]], error: str | None = None) -> None:
        head: dict[str, Any] = {HEADER: vid, "key": key}
        if error is not None:
            head["error"] = error
        atomic_write_jsonl(self.path(vid), [head, *records])

    def read(self, vid: str) -> list[dict[str, Any]]:
        return [rec for _, rec in iter_jsonl(self.path(vid)) if HEADER not in rec]

    def missing(self, vids: Sequence[str], keys: dict[str, str]) -> list[str]:
        return [v for v in vids if not self.current(v, keys[v])]

    def merge(self, vids: Sequence[str], config_yaml: str | None = None) -> Path:
        """Write the output: the parts of ``vids`` in order (all must be current), then its config."""

        def lines() -> Iterator[dict[str, Any]]:
            for vid in vids:
                yield from self.read(vid)

        atomic_write_jsonl(self.out, lines())
        if config_yaml is not None:
            atomic_write_text(self.out.with_name(self.out.name + ".config.yaml"), config_yaml)
        return self.out

    def clear(self) -> None:
        """Remove every part (once the output that holds them is written, for stages nobody shards)."""
        shutil.rmtree(self.root, ignore_errors=True)


def read_records(path: str | Path, required: Sequence[str], what: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """Lines of a stage output, each checked for ``required`` fields (else: file, line, what it is not)."""
    for lineno, rec in iter_jsonl(path):
        missing = [k for k in required if k not in rec]
        if missing:
            raise DataFormatError(path, f"not a {what} record (missing {', '.join(missing)})", lineno)
        yield lineno, rec


class PartsTask:
    """A per-video task (:class:`pseudo.stages.per_video.PerVideoTask`) whose results are parts: a
    video is done when its part carries the current key, and a failure is a part with an error.
    Subclasses give :meth:`key` and ``run``."""

    def __init__(self, parts: PartFiles) -> None:
        self.parts = parts

    def key(self, vid: str) -> str:
        raise NotImplementedError

    def is_done(self, vid: str) -> bool:
        return self.parts.current(vid, self.key(vid)) and self.known_failure(vid) is None

    def known_failure(self, vid: str) -> str | None:
        return self.parts.failure(vid, self.key(vid))

    def record_failure(self, vid: str, error: str) -> None:
        self.parts.write(vid, self.key(vid), [], error=error)

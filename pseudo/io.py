"""Reading JSON (Lines) with exact line and column in every error, and atomic writes: nothing
already written is lost, and a file is either whole or absent.

Reading: ``.gz`` files (by their magic bytes, whatever the name) are read transparently.
Writing: every file is written to a temporary file beside its target, fsynced and renamed into
place; the result gets the permissions any other tool's output would get (``0666`` less the
umask), so a group can share a feature store. :func:`check_writable` tries a real write before
long work starts, so a bad ``--out`` fails in a second, not after an hour.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any, Literal

from pseudo.errors import DataFormatError, DataNotFoundError, PseudoError

GZIP_MAGIC = b"\x1f\x8b"


def json_error_text(exc: json.JSONDecodeError) -> str:
    """``invalid JSON at column 12: expecting ',' delimiter`` (the decoder's messages, made to read)."""
    msg = exc.msg[:-3] if exc.msg.endswith(" at") else exc.msg  # "Unterminated string starting at" + pos
    return f"invalid JSON at column {exc.colno}: {msg[:1].lower()}{msg[1:]}"


def parse_json_line(line: str, path: str | Path, lineno: int) -> Any:
    """One JSON value from one line of ``path``; a bad line names the file, line and column."""
    try:
        return json.loads(line)
    except json.JSONDecodeError as exc:
        if exc.pos >= len(line.rstrip()):
            text = f"invalid JSON at column {exc.colno}: the line ends before the record does (cut off?)"
        else:
            text = json_error_text(exc)
        raise DataFormatError(path, text, lineno) from None


def open_text(path: str | Path) -> IO[str]:
    """``path`` opened for reading UTF-8 text, gunzipped when it is gzip data."""
    p = Path(path)
    if not p.exists():
        raise DataNotFoundError(f"{p} does not exist")
    if p.is_dir():
        raise PseudoError(f"{p} is a directory, not a file")
    with p.open("rb") as fh:
        magic = fh.read(2)
    if magic == GZIP_MAGIC:
        return io.TextIOWrapper(gzip.open(p, "rb"), encoding="utf-8")
    return p.open(encoding="utf-8")


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, record)`` for each non-blank line; bad JSON names file, line and column."""
    p = Path(path)
    with open_text(p) as fh:
        lineno = 0
        try:
            for lineno, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                rec = parse_json_line(line, p, lineno)
                if not isinstance(rec, dict):
                    raise DataFormatError(p, f"expected a JSON object, got {type(rec).__name__}", lineno)
                yield lineno, rec
        except UnicodeDecodeError:
            raise DataFormatError(p, "not UTF-8 text (is this a binary file?)", lineno + 1) from None
        except (OSError, EOFError) as exc:  # a damaged .gz
            raise DataFormatError(p, f"cannot be read: {exc}", lineno + 1) from None


def read_json(path: str | Path) -> Any:
    p = Path(path)
    try:
        with open_text(p) as fh:
            return json.load(fh)
    except json.JSONDecodeError as exc:
        raise DataFormatError(p, json_error_text(exc), exc.lineno) from None
    except UnicodeDecodeError:
        raise DataFormatError(p, "not UTF-8 text (is this a binary file?)") from None


def _umask() -> int:
    """The process umask, read without changing it where Linux allows (``/proc/self/status``)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to a temporary file beside ``path``, fsync it, and rename it into place."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    if p.is_dir():
        raise PseudoError(f"cannot write {p}: it is a directory; give a file name")
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fchmod(fh.fileno(), 0o666 & ~_umask())  # mkstemp makes 0600; outputs honour the umask
            os.fsync(fh.fileno())
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return p


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_jsonl(path: str | Path, records: Iterable[dict[str, Any]]) -> Path:
    return atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def check_writable(path: str | Path, kind: Literal["file", "dir"], flag: str = "--out") -> Path:
    """Fail fast, naming ``flag``, when ``path`` cannot be written as a ``kind``: an existing path of
    the other kind, a parent that is a file, or a directory this process may not write in.

    Nothing is left behind: a probe file is created and removed (missing directories are created,
    as the stage would create them anyway)."""
    p = Path(path)
    if kind == "file" and p.is_dir():
        raise PseudoError(f"{flag} {p} is a directory; give a file path (e.g. {p / 'out.jsonl'})")
    if kind == "dir" and p.exists() and not p.is_dir():
        raise PseudoError(f"{flag} {p} is an existing file; give a directory path (a new or existing folder)")
    folder = p if kind == "dir" else p.parent
    blocker = next((a for a in [folder, *folder.parents] if a.exists()), None)
    if blocker is not None and not blocker.is_dir():
        raise PseudoError(f"{flag} {p}: {blocker} is a file, not a directory; choose another path")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".pseudo-write-check.", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise PseudoError(f"{flag} {p}: cannot write in {folder} ({reason}); choose a writable location") from None
    return p

"""Typed settings: hashing, YAML loading with errors that name the bad key, run metadata."""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from pseudo import __version__
from pseudo.errors import PseudoError

M = TypeVar("M", bound=BaseModel)


class ConfigError(PseudoError, ValueError):
    """A config file or option that does not validate."""


def settings_hash(*parts: Any) -> str:
    """First 12 hex digits of sha256 over the canonical JSON of the parts."""
    canon = [p.model_dump(mode="json") if isinstance(p, BaseModel) else p for p in parts]  # JSON-able parts
    return hashlib.sha256(json.dumps(canon, sort_keys=True).encode()).hexdigest()[:12]


_TYPE_WORDS = {"int", "float", "str", "bool", "none", "list", "dict", "tuple", "set"}


def _is_union_tag(part: object) -> bool:
    """pydantic adds the union member's schema name to an error's location (``constrained-int``,
    ``literal['auto']``): not a key the user wrote."""
    return isinstance(part, str) and (any(c in part for c in "[]-'") or part in _TYPE_WORDS)


def _expected(err: Any) -> str:
    """What the value had to be, as words (``at least 1``, ``a whole number``, ``'a' or 'b'``)."""
    kind, ctx = err["type"], err.get("ctx") or {}
    words: dict[str, Callable[[], str]] = {
        "greater_than_equal": lambda: f"at least {ctx.get('ge')}",
        "greater_than": lambda: f"greater than {ctx.get('gt')}",
        "less_than_equal": lambda: f"at most {ctx.get('le')}",
        "less_than": lambda: f"less than {ctx.get('lt')}",
        "int_parsing": lambda: "a whole number",
        "int_type": lambda: "a whole number",
        "int_from_float": lambda: "a whole number",
        "float_parsing": lambda: "a number",
        "float_type": lambda: "a number",
        "finite_number": lambda: "a finite number",
        "bool_parsing": lambda: "true or false",
        "bool_type": lambda: "true or false",
        "string_type": lambda: "text",
        "literal_error": lambda: str(ctx.get("expected", "one of the allowed values")),
        "enum": lambda: str(ctx.get("expected", "one of the allowed values")),
        "list_type": lambda: "a list",
        "tuple_type": lambda: "a list",
        "dict_type": lambda: "a mapping of keys to values",
        "model_type": lambda: "a mapping of settings",
        "none_required": lambda: "empty (null)",
    }
    if kind in words:
        return words[kind]()
    msg = str(err["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        msg = msg.removeprefix(prefix)
    return msg


def format_validation_error(exc: ValidationError, source: str) -> str:
    """One plain sentence per wrong setting: ``recipe.yaml: proposals.num_clusters: must be at least 1
    or 'auto' (got 0)``; a misspelt key is named as unknown."""
    by_key: dict[str, list[Any]] = {}
    for err in exc.errors():
        key = ".".join(str(x) for x in err["loc"] if not _is_union_tag(x))
        by_key.setdefault(key, []).append(err)
    lines = []
    for key, errs in by_key.items():
        where = f"{source}: {key}" if key else source
        kinds = {e["type"] for e in errs}
        if kinds == {"extra_forbidden"}:
            lines.append(f"{where}: unknown key (check the spelling)")
        elif kinds == {"missing"}:
            lines.append(f"{where}: is required")
        elif kinds <= {"value_error", "assertion_error"}:
            lines.append(f"{where}: {'; '.join(_expected(e) for e in errs)}")
        else:
            alternatives = " or ".join(dict.fromkeys(_expected(e) for e in errs))
            got = errs[0].get("input")
            shown = repr(got) if not isinstance(got, dict | list) else type(got).__name__
            lines.append(f"{where}: must be {alternatives} (got {shown})")
    return "\n".join(lines)


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """Nested mappings as dotted keys: ``{"a": {"b": 1}}`` -> ``{"a.b": 1}``."""
    if isinstance(data, BaseModel):
        data = data.model_dump(mode="json")
    if not isinstance(data, dict):
        return {prefix: data}
    out: dict[str, Any] = {}
    for key, value in data.items():
        out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def diff_settings(old: Any, new: Any, shown: int = 6) -> str:
    """Which settings differ, as ``backbone.model: 'a' -> 'b'; dtype: ...`` (for refusal messages)."""
    a, b = flatten(old), flatten(new)
    keys = [k for k in dict.fromkeys([*a, *b]) if a.get(k, "<unset>") != b.get(k, "<unset>")]
    parts = [f"{k}: {a.get(k, '<unset>')!r} -> {b.get(k, '<unset>')!r}" for k in keys[:shown]]
    if len(keys) > shown:
        parts.append(f"and {len(keys) - shown} more")
    return "; ".join(parts) if parts else "(no difference in the recorded settings: made by another code version?)"


def validate(model: type[M], data: dict[str, Any], source: str = "config") -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source)) from None


def load_yaml_dict(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {p} does not exist")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a mapping of settings at the top level")
    return data


def load_yaml(model: type[M], path: str | Path) -> M:
    return validate(model, load_yaml_dict(path), str(path))


def deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """``top`` over ``base``: mappings merge key by key, anything else (lists too) is replaced."""
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


class Layered:
    """Settings merged from a YAML file and the files its ``base:`` key names (recursively, bases
    first), with the file each setting came from, so an error names the file to fix."""

    def __init__(self, data: dict[str, Any], origins: dict[str, Path], files: list[Path]) -> None:
        self.data = data
        self.origins = origins
        self.files = files

    def origin(self, dotted: str) -> Path:
        """The file that set ``dotted`` (or its nearest parent key); the top file when none did."""
        parts = dotted.split(".")
        for n in range(len(parts), 0, -1):
            found = self.origins.get(".".join(parts[:n]))
            if found is not None:
                return found
        return self.files[-1]


def load_layers(
    path: str | Path, prepare: Callable[[dict[str, Any], Path], dict[str, Any]] | None = None, key: str = "base"
) -> Layered:
    """Read ``path`` and its bases (``base: other.yaml`` or a list, relative to the file naming them),
    merged deeply, later files winning. ``prepare(layer, file)`` may rewrite each file's own settings
    first (e.g. make its relative paths relative to that file). A cycle of bases is an error."""
    top = Path(path)

    def load(p: Path, chain: tuple[Path, ...]) -> tuple[dict[str, Any], dict[str, Path], list[Path]]:
        real = p.resolve()
        if real in chain:
            raise ConfigError(f"{p}: its bases include itself ({' -> '.join(str(c) for c in (*chain, real))})")
        raw = load_yaml_dict(p)
        bases = raw.pop(key, [])
        if isinstance(bases, str):
            bases = [bases]
        if not isinstance(bases, list) or not all(isinstance(b, str) for b in bases):
            raise ConfigError(f"{p}: {key}: must be a file name or a list of file names")
        data: dict[str, Any] = {}
        origins: dict[str, Path] = {}
        files: list[Path] = []
        for b in bases:
            bp = p.parent / b
            if not bp.is_file():
                raise ConfigError(f"{p}: {key}: {b} does not exist (looked for {bp})")
            d, o, f = load(bp, (*chain, real))
            data = deep_merge(data, d)
            origins.update(o)
            files += f
        own = prepare(raw, p) if prepare is not None else raw
        data = deep_merge(data, own)
        origins.update({k: p for k in flatten(own)})
        origins.update({k: p for k in _mapping_keys(own)})
        return data, origins, [*files, p]

    data, origins, files = load(top, ())
    return Layered(data, origins, files)


def _mapping_keys(data: dict[str, Any], prefix: str = "") -> list[str]:
    keys = []
    for k, v in data.items():
        dotted = f"{prefix}.{k}" if prefix else str(k)
        keys.append(dotted)
        if isinstance(v, dict):
            keys += _mapping_keys(v, dotted)
    return keys


def validate_layered(model: type[M], layered: Layered) -> M:
    """:func:`validate` whose messages name, for each wrong setting, the file that set it."""
    try:
        return model.model_validate(layered.data)
    except ValidationError as exc:
        lines = format_validation_error(exc, "\0").splitlines()
        out = []
        for line in lines:
            rest = line.removeprefix("\0: ").removeprefix("\0")
            key = rest.split(": ", 1)[0] if ": " in rest else ""
            out.append(f"{layered.origin(key)}: {rest}")
        raise ConfigError("\n".join(out)) from None


def code_version() -> str:
    """Package version plus the git commit when running from a checkout."""
    root = Path(__file__).resolve().parents[1]
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "describe", "--always", "--dirty"], capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return __version__
    rev = out.stdout.strip()
    return f"{__version__}+{rev}" if out.returncode == 0 and rev else __version__


def dump_yaml(model: BaseModel | dict[str, Any]) -> str:
    data = model.model_dump(mode="json") if isinstance(model, BaseModel) else model
    return yaml.safe_dump(data, sort_keys=False)

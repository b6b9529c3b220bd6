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


def settings_hash(*parts: BaseModel | dict[str, Any] | str) -> str:
    """First 12 hex digits of sha256 over the canonical JSON of the parts."""
    canon = [p.model_dump(mode="json") if isinstance(p, BaseModel) else p for p in parts]
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

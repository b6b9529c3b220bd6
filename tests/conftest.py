from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The real benchmark files (../shared/data). Missing data fails in CI and skips elsewhere."""
    from pseudo.data.paths import candidate_roots

    for root in candidate_roots():
        if (root / "SOURCES.md").is_file():
            return root
    if os.environ.get("CI"):
        pytest.fail("benchmark data (shared/data) not found in CI")
    pytest.skip("benchmark data not found; set PSEUDO_DATA_ROOT")


@pytest.fixture
def count_calls(monkeypatch: pytest.MonkeyPatch) -> Callable[[object, str], list[int]]:
    """``count_calls(obj, "method")`` wraps the method so each call records the length of its first
    argument (the batch it was given) in the returned list; the method is put back after the test."""

    def wrap(obj: object, name: str) -> list[int]:
        calls: list[int] = []
        real = getattr(obj, name)

        def counted(*args: Any, **kwargs: Any) -> Any:
            calls.append(len(args[0]))
            return real(*args, **kwargs)

        monkeypatch.setattr(obj, name, counted)
        return calls

    return wrap

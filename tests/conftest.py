from __future__ import annotations

import os
from pathlib import Path

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

"""Shared pytest setup. Feature-specific fixtures live in their own test files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data" / "cdd-cesm-sample"

# Torch on 2 CI cores: avoid oversubscription between pytest and torch threads.
os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture
def cdd_sample() -> Path:
    """Real CDD-CESM sample pairs from ../shared (skipped where that folder is absent)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real CDD-CESM sample folder {SHARED_DATA} is absent on this machine")
    return SHARED_DATA

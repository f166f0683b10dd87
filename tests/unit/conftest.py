"""Shared fixtures of the unit tests: sample paths, settings, an in-memory Redis."""
from __future__ import annotations

from pathlib import Path

import fakeredis
import pytest
from dtm.common.settings import Settings

# tests/unit/conftest.py -> the repository root is parents[2]; the samples are in ../shared/samples from it.
REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO.parent / "shared" / "samples"


@pytest.fixture
def samples() -> Path:
    assert SAMPLES.is_dir(), f"samples not found at {SAMPLES}"
    return SAMPLES


@pytest.fixture
def redis_connection():
    connection = fakeredis.FakeRedis()
    yield connection
    connection.flushall()


@pytest.fixture
def settings() -> Settings:
    return Settings.from_env({})

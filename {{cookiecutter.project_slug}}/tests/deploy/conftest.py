"""Fixtures of the deploy tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.docker import FakeDocker


@pytest.fixture
def fake_docker(tmp_path: Path) -> FakeDocker:
    """A stand-in `docker` executable (its path: `.path`) that answers as told and logs every call."""
    return FakeDocker(tmp_path / "engine")

"""Shared pytest fixtures. Keep each small; fakes live in tests/fakes/."""

from __future__ import annotations

from collections.abc import Iterator

import hypothesis
import pytest

from core.blas import preload_openblas
from tests.fakes.lihkg_server import FakeLihkgServer


def pytest_configure(config: pytest.Config) -> None:
    # Property tests check behaviour, not speed: a busy 2-core CI must not fail them on time.
    hypothesis.settings.register_profile("lilm", deadline=None)
    hypothesis.settings.load_profile("lilm")
    # As the CLI does: OpenBLAS before the first mlx import makes model tests ~10x faster.
    preload_openblas("auto")


@pytest.fixture
def lihkg_server() -> Iterator[FakeLihkgServer]:
    """A fake LIHKG API on a loopback port, stopped after the test."""
    with FakeLihkgServer() as server:
        yield server

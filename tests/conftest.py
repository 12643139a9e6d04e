"""Shared pytest fixtures. Keep each small; fakes live in tests/fakes/."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from core.blas import preload_openblas
from tests.fakes.lihkg_server import FakeLihkgServer


def pytest_configure(config: pytest.Config) -> None:
    # As the CLI does: OpenBLAS before the first mlx import makes model tests ~10x faster.
    preload_openblas("auto")


@pytest.fixture
def lihkg_server() -> Iterator[FakeLihkgServer]:
    """A fake LIHKG API on a loopback port, stopped after the test."""
    with FakeLihkgServer() as server:
        yield server

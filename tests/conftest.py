"""Shared pytest fixtures. Keep each small; fakes live in tests/fakes/."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes.lihkg_server import FakeLihkgServer


@pytest.fixture
def lihkg_server() -> Iterator[FakeLihkgServer]:
    """A fake LIHKG API on a loopback port, stopped after the test."""
    with FakeLihkgServer() as server:
        yield server

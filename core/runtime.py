"""Wiring: build the reply service (model + LIHKG client + masker) from settings.

Bots and the CLI call `open_reply_service`; nothing here runs at import time.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from core.blas import preload_openblas
from core.errors import ConfigError
from core.generation import GenerationBackend
from core.lihkg import LihkgClient
from core.reply import ReplyService
from core.settings import Settings


async def load_backend(settings: Settings) -> GenerationBackend:
    """LILM_BACKEND=mlx: the model named by LILM_MODEL (+ LILM_ADAPTER) on the batching engine's
    worker thread. LILM_BACKEND=openai: a client of the server at LILM_OPENAI_BASE_URL."""
    if settings.backend == "openai":
        from core.backends.openai_backend import OpenAIBackend

        return OpenAIBackend.from_settings(settings)
    if settings.backend != "mlx":
        raise ConfigError(f"LILM_BACKEND must be mlx or openai, got {settings.backend!r}")
    preload_openblas(settings.blas)
    from core.backends.mlx_backend import MlxBackend
    from core.engine import EngineConfig

    return await MlxBackend.load(
        settings.model, adapter_path=settings.adapter or None, config=EngineConfig.from_settings(settings)
    )


@asynccontextmanager
async def open_reply_service(settings: Settings, *, with_fetcher: bool = True) -> AsyncIterator[ReplyService]:
    """A ready ReplyService; model and HTTP client are closed on exit."""
    backend = await load_backend(settings)
    fetcher = LihkgClient.from_settings(settings) if with_fetcher else None
    try:
        yield ReplyService.from_settings(settings, backend=backend, fetcher=fetcher)
    finally:
        if fetcher is not None:
            await fetcher.aclose()
        await backend.aclose()

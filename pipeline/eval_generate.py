"""Replies to test threads through the bots' own serving path, for `lilm eval`.

The model, already loaded (perplexity is scored first on the calling thread), is handed to
the batching engine (`core.engine`), and every thread's request is submitted at once so they
decode together. Prompts, clean-up and masking are `ReplyService`'s, exactly as the bots do;
each thread has its own seed, so a reply does not depend on what shares its batch.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from core.engine import EngineConfig
from core.generation import SamplingParams, complete
from core.normalize import strip_reasoning, strip_special_tokens
from core.reply import ReplyService, ThreadPrompt
from core.settings import Settings


@dataclass(frozen=True)
class GeneratedReply:
    """One generated reply: as users would see it, and before the HK-character conversion.

    `unconverted` keeps the model's own characters (special tokens and reasoning removed,
    nothing converted), so the share of simplified characters it wrote can still be measured.
    """

    shown: str
    unconverted: str


async def generate_replies(
    model,
    tokenizer,
    prompts: Sequence[ThreadPrompt],
    *,
    settings: Settings,
    params: SamplingParams,
    seed: int,
    name: str,
) -> list[GeneratedReply]:
    """One reply per prompt (thread i seeded `seed + i`), all requests in flight together."""
    from core.backends.mlx_backend import MlxBackend

    # Every thread is queued at once: the queue must hold them all, and nothing times out.
    config = EngineConfig(
        max_batch=settings.engine_max_batch,
        max_waiting=max(len(prompts), 1),
        timeout=None,
        prefix_cache=settings.engine_prefix_cache,
    )
    backend = await MlxBackend.start(lambda: (model, tokenizer), name=name, config=config)
    try:
        service = ReplyService.from_settings(settings, backend=backend, fetcher=None)
        specials = backend.special_tokens()

        async def reply(index: int, prompt: ThreadPrompt) -> GeneratedReply:
            seeded = params.with_seed(seed + index)
            raw = await complete(backend, service.messages_for(prompt, seeded), seeded)
            unconverted = strip_special_tokens(strip_reasoning(raw.replace("\ufffd", "")), specials).strip()
            return GeneratedReply(shown=service.post_process(raw), unconverted=unconverted)

        return list(await asyncio.gather(*(reply(i, p) for i, p in enumerate(prompts))))
    finally:
        await backend.aclose()

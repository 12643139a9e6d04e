"""A scripted chat model for tests: replies from a list, streamed in small pieces, recording calls."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from core.generation import Messages, SamplingParams


@dataclass
class ScriptedBackend:
    """Yields `replies` in turn (cycling), `chunk` characters at a time. One token = one character."""

    replies: list[str]
    chunk: int = 2
    name: str = "scripted"
    calls: list[tuple[list[dict], SamplingParams]] = field(default_factory=list)
    closed: bool = False
    fail_with: Exception | None = None
    delay: float = 0.0

    def count_tokens(self, text: str) -> int:
        return len(text)

    def special_tokens(self) -> tuple[str, ...]:
        return ("<|im_end|>", "<|endoftext|>")

    async def stream(self, messages: Messages, params: SamplingParams) -> AsyncIterator[str]:
        self.calls.append(([dict(m) for m in messages], params))
        if self.fail_with is not None:
            raise self.fail_with
        text = self.replies[(len(self.calls) - 1) % len(self.replies)]
        for start in range(0, len(text), self.chunk):
            if self.delay:
                await asyncio.sleep(self.delay)
            yield text[start : start + self.chunk]

    async def aclose(self) -> None:
        self.closed = True

"""What every model backend offers: token counting and streamed chat generation."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

Messages = Sequence[dict[str, str]]


@dataclass(frozen=True)
class SamplingParams:
    """How to sample one reply. `seed=None` draws a fresh random reply each time."""

    max_tokens: int = 160
    temperature: float = 0.8
    top_p: float = 0.95
    repetition_penalty: float = 1.1
    seed: int | None = None

    def with_seed(self, seed: int | None) -> SamplingParams:
        return replace(self, seed=seed)


class GenerationBackend(Protocol):
    """A chat model. Implementations: `MlxBackend` (in-process); test fakes in tests/fakes."""

    name: str

    def count_tokens(self, text: str) -> int:
        """Tokens `text` takes in this model's tokenizer (no special tokens added)."""

    def special_tokens(self) -> tuple[str, ...]:
        """Special-token strings that may leak into output text and must be stripped."""

    def stream(self, messages: Messages, params: SamplingParams) -> AsyncIterator[str]:
        """Yield the reply's text in pieces as they are generated; closing the iterator cancels."""

    async def aclose(self) -> None:
        """Release the model and its worker."""


async def complete(backend: GenerationBackend, messages: Messages, params: SamplingParams) -> str:
    """The whole reply as one string."""
    pieces = [piece async for piece in backend.stream(messages, params)]
    return "".join(pieces)

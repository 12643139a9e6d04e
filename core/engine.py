"""The generation engine: one model on one worker thread, serving many coroutines in batches.

Requests join the running batch as soon as a slot frees up and leave it as they finish
(mlx-lm's `BatchGenerator`, continuous batching). Each request keeps its own sampling
settings, streams its own text, and has a deadline; closing its stream cancels it. Requests
that find every slot busy wait in a bounded queue and learn their place in it; when the
queue is full they get `EngineBusy` at once.

    engine = await MlxBackend.load("model/lilm-tiny")          # a GenerationEngine
    async for text in engine.stream(messages, SamplingParams()):
        ...
    async for index, text in engine.stream_many(messages, [p1, p2, p3]):  # one batch
        ...
    with queue_position_listener(show_position):              # e.g. 排緊隊，前面仲有 N 個
        await service.reply_to_message(text)
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass

from core.engine_job import GenerationJob, QueueListener
from core.errors import PromptTooLong
from core.generation import Messages, SamplingParams


@dataclass(frozen=True)
class EngineConfig:
    """Tuning knobs of the engine (settings: LILM_ENGINE_*, LILM_GENERATION_TIMEOUT)."""

    max_batch: int = 16  # sequences decoding together
    max_waiting: int = 32  # jobs queued for a slot before callers get EngineBusy
    timeout: float | None = 120.0  # seconds per request, queueing included; None = no deadline
    prefix_cache: bool = True  # reuse the system message's key/value cache across requests
    prefix_cache_entries: int = 8
    prefill_batch: int = 8  # prompts prefilled together
    prefill_step: int = 512  # prompt tokens per prefill step (decode steps run in between)
    sampling_candidates: int = 128  # top-p is drawn from this many most likely tokens
    stream_interval: float = 0.02  # seconds text may wait (merged) before reaching callers
    # Prompt + reply longer than this is refused up front (PromptTooLong): it would stall the
    # batch. Not the model's trained window, which tiny models set to their training length.
    max_context_tokens: int = 8192
    # A lone one-candidate request decodes outside the batch (no per-row overhead) until
    # another job arrives; off = every request goes through BatchGenerator.
    solo_fast_path: bool = True
    # OpenBLAS threads while serving (core/blas.py); 0 = one fewer than the CPUs.
    blas_threads: int = 0

    @classmethod
    def from_settings(cls, settings) -> EngineConfig:
        return cls(
            max_batch=settings.engine_max_batch,
            max_waiting=settings.engine_max_waiting,
            timeout=settings.generation_timeout or None,
            prefix_cache=settings.engine_prefix_cache,
            blas_threads=settings.blas_threads,
        )


@dataclass(frozen=True)
class EngineStats:
    """Counters since start; every submitted job ends in exactly one of the outcome counters."""

    running_sequences: int
    waiting_jobs: int
    finished: int
    failed: int
    cancelled: int
    timed_out: int
    refused_busy: int
    restarts: int  # batches discarded after a failed step
    generated_tokens: int
    prompt_tokens: int  # prompt tokens run through the model (cached prefixes not counted)
    prefix_hits: int
    prefix_misses: int


_queue_listener: ContextVar[QueueListener | None] = ContextVar("lilm_queue_listener", default=None)


def trained_window(model) -> int | None:
    """Positions the model was trained on (`max_position_embeddings`), when its config says."""
    value = getattr(getattr(model, "args", None), "max_position_embeddings", None)
    return value if isinstance(value, int) and value > 0 else None


@contextlib.contextmanager
def queue_position_listener(callback: QueueListener) -> Iterator[None]:
    """Requests made inside this block call `callback(ahead)` while they wait for a slot
    (`ahead` = jobs before them, 0 = next). Works through ReplyService unchanged."""
    token = _queue_listener.set(callback)
    try:
        yield
    finally:
        _queue_listener.reset(token)


class GenerationEngine:
    """A `GenerationBackend` that batches all callers' requests. Start with `await start(loader)`."""

    def __init__(self, worker, *, name: str) -> None:
        self._worker = worker
        self.config: EngineConfig = worker.config
        self.model = worker.model
        self.tokenizer = worker.tokenizer
        self.name = name
        self.max_context_tokens = self.config.max_context_tokens
        self.context_window = trained_window(self.model)

    @classmethod
    async def start(cls, loader: Callable[[], tuple[object, object]], *, name: str, config: EngineConfig | None = None):
        """Run `loader` (returns model, tokenizer) on a new worker thread, then serve."""
        from core.engine_worker import EngineWorker

        worker = EngineWorker(loader, config=config or EngineConfig())
        await asyncio.wrap_future(worker.start())
        return cls(worker, name=name)

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False))

    def special_tokens(self) -> tuple[str, ...]:
        return tuple(getattr(self.tokenizer, "all_special_tokens", ()) or ())

    def prompt_tokens(self, messages: Messages) -> list[int]:
        """The chat template applied, ending with the assistant turn's opening."""
        return list(self.tokenizer.apply_chat_template(list(messages), add_generation_prompt=True))

    def system_prefix_len(self, messages: Messages, prompt: Sequence[int]) -> int:
        """Tokens of `prompt` that are the system message alone (shareable across requests), or 0."""
        if not messages or messages[0].get("role") != "system":
            return 0
        prefix = list(self.tokenizer.apply_chat_template([dict(messages[0])], add_generation_prompt=False))
        if 0 < len(prefix) < len(prompt) and list(prompt[: len(prefix)]) == prefix:
            return len(prefix)
        return 0

    def submit(
        self,
        messages: Messages,
        params: Sequence[SamplingParams],
        *,
        timeout: float | None = None,
        on_queue: QueueListener | None = None,
    ) -> GenerationJob:
        """Queue one job of len(params) candidates on the same prompt. Raises at once:
        EngineBusy (queue full), PromptTooLong (does not fit the context window)."""
        if not 1 <= len(params) <= self.config.max_batch:
            raise ValueError(f"a job needs 1..{self.config.max_batch} candidates, got {len(params)}")
        if any(p.max_tokens < 1 for p in params):
            raise ValueError("max_tokens must be >= 1")
        prompt = self.prompt_tokens(messages)
        reply = max(p.max_tokens for p in params)
        if len(prompt) + reply > self.max_context_tokens:
            raise PromptTooLong(
                f"prompt of {len(prompt)} tokens + reply of {reply} exceeds the context window of {self.max_context_tokens}"
            )
        job = GenerationJob(
            prompt=prompt,
            params=params,
            prefix_len=self.system_prefix_len(messages, prompt) if self.config.prefix_cache else 0,
            loop=asyncio.get_running_loop(),
            timeout=self.config.timeout if timeout is None else (timeout or None),
            on_queue=on_queue or _queue_listener.get(),
            on_cancel=self._worker.cancel,
        )
        try:
            self._worker.submit(job)
        except BaseException:
            job.discard()
            raise
        return job

    async def stream(self, messages: Messages, params: SamplingParams) -> AsyncIterator[str]:
        """One reply's text in pieces; closing the iterator cancels the request."""
        job = self.submit(messages, [params])
        try:
            async with contextlib.aclosing(job.pieces()) as pieces:
                async for piece in pieces:
                    yield piece.text
        finally:
            job.cancel()

    async def stream_many(self, messages: Messages, params_list: Sequence[SamplingParams]) -> AsyncIterator[tuple[int, str]]:
        """N candidates for one prompt as ONE batch (prompt prefilled once): (index, text) pieces.
        More candidates than batch slots run as consecutive batches."""
        size = self.config.max_batch
        for offset in range(0, len(params_list), size):
            job = self.submit(messages, params_list[offset : offset + size])
            try:
                async with contextlib.aclosing(job.pieces()) as pieces:
                    async for piece in pieces:
                        yield offset + piece.index, piece.text
            finally:
                job.cancel()

    def stats(self) -> EngineStats:
        return self._worker.stats()

    async def aclose(self) -> None:
        """Fail what is still queued or running, stop the worker and release the model."""
        self._worker.close()
        await asyncio.to_thread(self._worker.join)

"""One generation request as its caller sees it: pieces of text arriving on the caller's loop.

The engine's worker thread never touches asyncio objects directly: it hands batches of
events to `post_events`, which schedules them on each job's loop in one call per loop.
Deadlines run on the caller's loop (`loop.call_later`), so a timeout fires even while the
worker is busy with a long prefill.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass

from core.errors import GenerationTimeout, ModelError
from core.generation import SamplingParams

log = logging.getLogger(__name__)

QueueListener = Callable[[int], Awaitable[None] | None]


@dataclass(frozen=True)
class Piece:
    """New text of candidate `index` (0 for a single reply)."""

    index: int
    text: str


@dataclass(frozen=True)
class QueuePosition:
    """The job is waiting for a batch slot with `ahead` jobs before it."""

    ahead: int


class _Done:
    def __repr__(self) -> str:
        return "DONE"


DONE = _Done()


class GenerationJob:
    """A prompt and one SamplingParams per candidate; iterate `pieces()` on the submitting loop."""

    def __init__(
        self,
        *,
        prompt: list[int],
        params: Sequence[SamplingParams],
        prefix_len: int,
        loop: asyncio.AbstractEventLoop,
        timeout: float | None,
        on_queue: QueueListener | None,
        on_cancel: Callable[[GenerationJob], None],
    ) -> None:
        self.prompt = prompt
        self.params = list(params)
        self.size = len(self.params)
        self.prefix_len = prefix_len  # tokens of a shareable prefix (system message), 0 if none
        self.loop = loop
        self.timeout = timeout
        self.position: int | None = None  # latest jobs-ahead count while waiting
        self.cancelled = False  # set on the loop; the worker reads it
        self.timed_out = False
        self.finished = False
        self._queue: asyncio.Queue = asyncio.Queue()
        self._on_queue = on_queue
        self._on_cancel = on_cancel
        self._timer = loop.call_later(timeout, self._expire) if timeout else None

    def __repr__(self) -> str:
        return f"<GenerationJob {id(self):#x} size={self.size} prompt={len(self.prompt)} tokens>"

    async def pieces(self) -> AsyncIterator[Piece]:
        """Text as it is generated; raises the job's typed error; leaving early cancels the job."""
        try:
            while True:
                item = await self._queue.get()
                if self.timed_out:
                    raise GenerationTimeout(f"no complete reply within {self.timeout:g}s")
                if isinstance(item, QueuePosition):
                    self.position = item.ahead
                    if self._on_queue is not None:
                        result = self._on_queue(item.ahead)
                        if inspect.isawaitable(result):
                            await result
                    continue
                if item is DONE:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self.cancel()

    def cancel(self) -> None:
        """Stop the job (no-op once it finished); the worker drops it from the queue or batch."""
        if self.finished:
            return
        self.cancelled = True
        self._finish()
        self._on_cancel(self)

    def discard(self) -> None:
        """Forget a job that was never queued (submission refused): stops its deadline."""
        self._finish()

    def receive(self, item) -> None:
        """Loop side of `post_events`: queue one event unless the job already ended."""
        if self.finished:
            return
        if item is DONE or isinstance(item, BaseException):
            self._finish()
        self._queue.put_nowait(item)

    def _expire(self) -> None:
        if self.finished:
            return
        self.timed_out = True
        self._finish()
        self._queue.put_nowait(DONE)  # wakes the consumer, which raises GenerationTimeout
        self._on_cancel(self)

    def _finish(self) -> None:
        self.finished = True
        if self._timer is not None:
            self._timer.cancel()


def _deliver(events: list[tuple[GenerationJob, object]]) -> None:
    for job, item in events:
        job.receive(item)


def merge_pieces(events: list[tuple[GenerationJob, object]]) -> list[tuple[GenerationJob, object]]:
    """Join each candidate's consecutive text pieces into one; other events keep their order.

    >>> job = object()
    >>> merge_pieces([(job, Piece(0, "今")), (job, Piece(1, "好")), (job, Piece(0, "晚")), (job, DONE)])
    [(<object ...>, Piece(index=0, text='今晚')), (<object ...>, Piece(index=1, text='好')), (<object ...>, DONE)]
    """
    merged: list[tuple[GenerationJob, object]] = []
    open_pieces: dict[tuple[int, int], int] = {}  # (job id, index) -> position in merged
    for job, item in events:
        if isinstance(item, Piece):
            key = (id(job), item.index)
            if key in open_pieces:
                at = open_pieces[key]
                merged[at] = (job, Piece(item.index, merged[at][1].text + item.text))
                continue
            open_pieces[key] = len(merged)
        else:  # a later piece must not jump ahead of this event
            open_pieces = {k: v for k, v in open_pieces.items() if k[0] != id(job)}
        merged.append((job, item))
    return merged


def post_events(events: list[tuple[GenerationJob, object]]) -> list[GenerationJob]:
    """From the worker thread: deliver events, one wake-up per event loop.

    Returns the jobs whose loop is gone (closed): the worker should drop them.
    """
    by_loop: dict[asyncio.AbstractEventLoop, list] = defaultdict(list)
    for job, item in events:
        by_loop[job.loop].append((job, item))
    orphans = []
    for loop, batch in by_loop.items():
        try:
            loop.call_soon_threadsafe(_deliver, batch)
        except RuntimeError:  # the caller's loop was closed under us
            orphans.extend(job for job, _ in batch)
    return orphans


def engine_closed_error() -> ModelError:
    return ModelError("the generation engine was closed", user_message="個 AI 模型暫停咗，遲啲再試下。")

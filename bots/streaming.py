"""Streaming a growing reply into a chat without flooding it: throttled, ordered deliveries.

Chat platforms limit how often a message may be edited (Telegram: about once a second per
chat, a 429 with `retry_after` otherwise). `ThrottledEdits` sits between the generator and the
platform: `update(content)` never blocks and only the latest content is kept; a single pump
task delivers it with at most one call in flight, at least `min_interval` apart, waiting out
any `retry_after` the platform asks for. `finish(content)` always delivers the final content,
retrying after `retry_after`, and raises if it cannot.

Platform-neutral: the platform gives `deliver(content, final)` and `retry_after(error)`.

    edits = ThrottledEdits(deliver, min_interval=1.5, retry_after=seconds_to_wait)
    async for text in stream: edits.update(text)
    await edits.finish(text)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
Deliver = Callable[[T, bool], Awaitable[None]]
RetryAfterOf = Callable[[BaseException], "float | None"]
Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], float]

FINAL_ATTEMPTS = 5  # deliveries of the final content before giving up
MAX_RETRY_WAIT = 900.0  # seconds; a longer retry_after for the final content is an error

_NOTHING = object()


def _no_retry_after(error: BaseException) -> float | None:
    return None


class RetryTooLong(Exception):
    """The platform asked to wait longer than `max_wait` before the final delivery."""


class ThrottledEdits(Generic[T]):
    """Delivers the latest content through `deliver(content, final)`, one call at a time."""

    def __init__(
        self,
        deliver: Deliver[T],
        *,
        min_interval: float,
        retry_after: RetryAfterOf = _no_retry_after,
        sleep: Sleep = asyncio.sleep,
        clock: Clock = time.monotonic,
        max_wait: float = MAX_RETRY_WAIT,
        final_attempts: int = FINAL_ATTEMPTS,
    ) -> None:
        self._deliver = deliver
        self.min_interval = min_interval
        self._retry_after = retry_after
        self._sleep = sleep
        self._clock = clock
        self.max_wait = max_wait
        self.final_attempts = final_attempts
        self._pending: object = _NOTHING
        self._last: object = _NOTHING
        self._next_at = -math.inf  # pace: the last delivery + min_interval
        self._blocked_until = -math.inf  # the platform's last retry_after
        self._in_flight = False
        self._closed = False
        self._pump_task: asyncio.Task | None = None
        self.deliveries = 0  # successful calls, intermediate and final

    @property
    def closed(self) -> bool:
        return self._closed

    def update(self, content: T) -> None:
        """Show `content` soon; a newer update replaces one not yet delivered. Never blocks."""
        if self._closed:
            return
        self._pending = content
        if self._pump_task is None or self._pump_task.done():
            self._pump_task = asyncio.create_task(self._pump())

    async def finish(self, content: T, *, paced: bool = True) -> None:
        """Deliver `content` as the final state: after the call in flight, at the usual pace
        (unless `paced=False`, when the final goes somewhere the updates did not), waiting out
        each `retry_after`. Raises the platform's error (or RetryTooLong) if it cannot."""
        self._closed = True
        await self._stop_pump()
        for attempt in range(1, self.final_attempts + 1):
            wait = max(self._next_at if paced else -math.inf, self._blocked_until) - self._clock()
            if wait > self.max_wait:
                raise RetryTooLong(f"asked to wait {wait:.0f} s (max {self.max_wait:.0f} s)")
            if wait > 0:
                await self._sleep(wait)
            try:
                await self._deliver(content, True)
            except Exception as error:
                seconds = self._retry_after(error)
                if seconds is None or attempt == self.final_attempts:
                    raise
                self._blocked_until = self._clock() + seconds
                continue
            self.deliveries += 1
            self._next_at = self._clock() + self.min_interval
            return

    async def aclose(self) -> None:
        """Stop without a final delivery (the caller gave up)."""
        self._closed = True
        if self._pump_task is not None and not self._pump_task.done():
            self._pump_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump_task

    async def _stop_pump(self) -> None:
        task = self._pump_task
        if task is None or task.done():
            return
        if self._in_flight:
            await asyncio.shield(task)  # let the call in flight end; the pump stops after it
        else:
            task.cancel()  # only sleeping: nothing is lost
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _pump(self) -> None:
        while self._pending is not _NOTHING and not self._closed:
            wait = max(self._next_at, self._blocked_until) - self._clock()
            if wait > 0:
                await self._sleep(wait)
                continue
            content, self._pending = self._pending, _NOTHING
            if content == self._last:
                continue
            await self._deliver_intermediate(content)

    async def _deliver_intermediate(self, content: object) -> None:
        self._in_flight = True
        try:
            await self._deliver(content, False)  # type: ignore[arg-type]
        except Exception as error:  # noqa: BLE001 - a failed update must not stop the stream
            seconds = self._retry_after(error)
            if seconds is None:
                log.warning("streaming update dropped: %s", error)
                self._next_at = self._clock() + self.min_interval
            else:
                self._blocked_until = self._clock() + seconds
                if self._pending is _NOTHING:
                    self._pending = content  # nothing newer: try this one again later
        else:
            self.deliveries += 1
            self._last = content
            self._next_at = self._clock() + self.min_interval
        finally:
            self._in_flight = False

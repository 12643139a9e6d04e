"""Streaming a growing reply into a chat without flooding it: throttled, ordered deliveries.

Chat platforms limit how often a message may be edited (Telegram: about once a second per
chat, a 429 with `retry_after` otherwise). `ThrottledEdits` sits between the generator and the
platform: `update(content)` never blocks and only the latest content is kept; a single pump
task delivers it with at most one call in flight, at least `min_interval` apart, waiting out
any `retry_after` the platform asks for. `finish(content)` always delivers the final content,
retrying after `retry_after`, and raises if it cannot.

Platform-neutral: the platform gives `deliver(content, final)` and `retry_after(error)`. The
bots deliver `View`s (one state of an answer, whose final form may take several messages)
through an `AnswerOutbox` subclass of their own; `stream_answer` feeds it the model's reply.

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
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from bots.chat_text import Span, answer_spans
from bots.preferences import ChatPreferences
from core.errors import GenerationTimeout
from core.reply import ReplyResult, ReplyService, ThreadPrompt

log = logging.getLogger(__name__)

T = TypeVar("T")
P = TypeVar("P")  # one message's worth of a final answer, as a platform sends it
Deliver = Callable[[T, bool], Awaitable[None]]
RetryAfterOf = Callable[[BaseException], "float | None"]
Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], float]

FINAL_ATTEMPTS = 5  # deliveries of the final content before giving up
MAX_RETRY_WAIT = 900.0  # seconds; a longer retry_after for the final content is an error

_NOTHING = object()


def _no_retry_after(error: BaseException) -> float | None:
    return None


@dataclass
class View:
    """One state of an answer: a queue notice or partial text (`partial`) while it streams,
    then the final text. Views are compared by what they show, so an unchanged one is not
    sent again; `sent` counts the final's messages already delivered."""

    spans: tuple[Span, ...]
    partial: bool = False
    sent: int = field(default=0, compare=False)

    async def send_pieces(self, pieces: Sequence[P], first: Callable[[P], Awaitable[object]], more: Callable[[P], Awaitable[object]]) -> None:
        """Deliver the final's `pieces`, the first by `first` (the answer's own message), the
        rest by `more`; after a failure (a 429 retried by `ThrottledEdits.finish`) a new call
        resumes at the first piece not yet delivered."""
        for index in range(self.sent, len(pieces)):
            await (first if index == 0 else more)(pieces[index])
            self.sent = index + 1


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


class AnswerOutbox:
    """Everything the user sees of one answer, delivered in order through `ThrottledEdits`:
    queue notices, the partial text (held back `hold` seconds, so a quick reply arrives whole
    with no edits), then the final text.

    A platform subclasses it: `deliver_view(view, final)` puts a view in the chat, `shown`
    says whether the answer's message is there yet, and `refusal` is the platform's error for
    a chat closed to the bot (blocked, no permission), kept in `refused` for `check_open`.
    """

    def __init__(
        self,
        *,
        min_interval: float,
        hold: float,
        retry_after: RetryAfterOf,
        refusal: type[BaseException],
        sleep: Sleep = asyncio.sleep,
        clock: Clock = time.monotonic,
    ) -> None:
        self.refused: BaseException | None = None
        self._refusal = refusal
        self._clock = clock
        self._hold = hold
        self._hold_until: float | None = None
        self._edits: ThrottledEdits[View] = ThrottledEdits(
            self._deliver, min_interval=min_interval, retry_after=retry_after, sleep=sleep, clock=clock
        )

    @property
    def shown(self) -> bool:
        """Whether the answer's message is in the chat already (partial text then goes on at once)."""
        raise NotImplementedError

    async def deliver_view(self, view: View, final: bool) -> None:
        """Put `view` in the chat (`final`: the last view, in as many messages as it needs)."""
        raise NotImplementedError

    def notice(self, line: str) -> None:
        self._edits.update(View((Span(line),)))

    def show(self, spans: Sequence[Span]) -> None:
        """Stream partial text, once the reply has taken `hold` seconds or the message is shown."""
        if self._hold_until is None:
            self._hold_until = self._clock() + self._hold
        if not self.shown and self._clock() < self._hold_until:
            return
        self._edits.update(View(tuple(spans), partial=True))

    async def finish(self, spans: Sequence[Span], *, paced: bool = True) -> None:
        """Deliver the final text (see `ThrottledEdits.finish` for `paced`); raises if it cannot."""
        await self._edits.finish(View(tuple(spans)), paced=paced)

    async def close(self) -> None:
        await self._edits.aclose()

    def check_open(self) -> None:
        """Raise the refusal seen on the way, if the chat is closed to the bot."""
        if self.refused is not None:
            raise self.refused

    async def _deliver(self, view: View, final: bool) -> None:
        try:
            await self.deliver_view(view, final)
        except self._refusal as error:
            self.refused = error  # intermediate errors are dropped; the job checks this
            raise


async def stream_answer(
    service: ReplyService,
    prompt: ThreadPrompt,
    out: AnswerOutbox,
    *,
    prefs: ChatPreferences,
    url: str,
    deadline: float | None,
    streaming: bool = True,
) -> ReplyResult:
    """The model's reply to `prompt` with a chat's `prefs`, its partial text shown in `out` in
    the answer's layout (unless not `streaming`). A chat closed to the bot stops generating;
    past the bot's own `deadline` (a stuck model must not hang the chat): GenerationTimeout."""
    shown = service.display_thread(prompt)
    texts: list[str] = []

    async def on_partial(index: int, text: str) -> None:
        out.check_open()
        texts.extend([""] * (index + 1 - len(texts)))  # candidates may stream interleaved
        texts[index] = text
        if streaming:
            out.show(answer_spans(shown, texts, url, streaming=True))

    try:
        async with asyncio.timeout(deadline):
            return await service.reply_to_prompt(
                prompt, n=prefs.candidates, params=prefs.sampling(service.params), system=prefs.system, on_partial=on_partial
            )
    except TimeoutError:
        raise GenerationTimeout(f"no reply within {deadline:.0f} s") from None

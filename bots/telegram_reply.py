"""One answer to one LIHKG link on Telegram: wait in line, fetch, stream, deliver, or fail
with one short Cantonese line.

`Outbox` is everything the user sees of one request: queue notices, the streaming text
(native drafts in private chats, throttled edits elsewhere) and the final reply split into
messages of at most 4096 UTF-16 units, all delivered in order with at most one call in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from telegram import Bot, Message
from telegram.constants import ChatAction, ChatType
from telegram.error import (
    BadRequest,
    Forbidden,
    InvalidToken,
    RetryAfter,
    TelegramError,
)

from bots.access import Ticket, worth_telling
from bots.chat_text import (
    CANCELLED,
    EMPTY_REPLY,
    ONLY_FIRST_LINK,
    UNEXPECTED,
    UNTITLED,
    WORKING,
    Span,
    first_piece,
    queue_position,
    split_spans,
)
from bots.streaming import RetryTooLong, ThrottledEdits
from bots.telegram_send import (
    MESSAGE_LIMIT,
    Destination,
    edit,
    is_gone,
    length,
    retry_after_seconds,
    send,
    send_draft,
    with_retry,
)
from bots.telegram_state import BotState
from core.errors import GenerationTimeout, LilmError
from core.links import ThreadLink
from core.reply import ThreadPrompt, prompt_from_thread
from core.thread import Thread

log = logging.getLogger(__name__)

TYPING_EVERY = 4.5  # seconds; Telegram shows "typing" for about 5


@dataclass(frozen=True)
class LinkRequest:
    """A user's message and the link in it we answer."""

    message: Message
    link: ThreadLink
    user_id: int
    more_links: bool = False


@dataclass(frozen=True)
class View:
    """One state of the answer: a queue notice, partial text, or the final text."""

    spans: tuple[Span, ...]
    kind: str  # notice | partial | final


def reply_spans(thread: ThreadPrompt, replies: Sequence[str], url: str, *, note: str | None = None, streaming: bool = False) -> list[Span]:
    """The answer's layout: 【category】 title (a link to the thread), then the reply or
    numbered candidates. Text is already masked and emoji-rendered by the reply service."""
    spans = [Span(f"【{thread.category}】", bold=True), Span(thread.title or UNTITLED, bold=True, url=url), Span("\n\n")]
    if len(replies) <= 1:
        text = replies[0] if replies else ""
        spans.append(Span(text or (WORKING if streaming else EMPTY_REPLY)))
    else:
        for number, text in enumerate(replies, start=1):
            spans += [Span(f"{number}. ", bold=True), Span(text or EMPTY_REPLY), Span("\n\n")]
        spans.pop()
    if note:
        spans.append(Span(f"\n\n{note}", italic=True))
    return spans


class Outbox:
    """Delivers one request's views in order through `ThrottledEdits`."""

    def __init__(self, bot: Bot, to: Destination, *, drafts: bool, group: bool, state: BotState) -> None:
        self.bot = bot
        self.to = to
        self.drafts = drafts
        self.drafts_failed = False
        self.message_id: int | None = None
        self.refused: Forbidden | None = None
        self._draft_id = to.reply_to or 1
        self._sleep = state.sleep
        self._final_sent: tuple[View, int] | None = None
        self._clock = state.clock
        self._hold = 0.0 if drafts else state.settings.telegram_stream_hold
        self._hold_until: float | None = None
        self._draft_interval = state.settings.telegram_draft_interval
        self._edit_interval = state.edit_interval(group)
        self._edits: ThrottledEdits[View] = ThrottledEdits(
            self._deliver,
            min_interval=self._draft_interval if drafts else self._edit_interval,
            retry_after=retry_after_seconds,
            sleep=state.sleep,
            clock=state.clock,
        )

    def notice(self, line: str) -> None:
        self._edits.update(View((Span(line),), "notice"))

    def show(self, spans: Sequence[Span]) -> None:
        """Stream partial text; with edits, only once the reply has taken `hold` seconds, so
        a quick reply arrives whole as one message."""
        if self._hold_until is None:
            self._hold_until = self._clock() + self._hold
        if self.message_id is None and self._clock() < self._hold_until:
            return
        self._edits.update(View(tuple(spans), "partial"))

    async def finish(self, spans: Sequence[Span]) -> None:
        # After drafts only, the final is a new message: no edit pace to keep.
        await self._edits.finish(View(tuple(spans), "final"), paced=self.message_id is not None)

    async def close(self) -> None:
        await self._edits.aclose()

    def check_open(self) -> None:
        """Raise the Forbidden seen on the way, if the chat is closed to us (blocked, kicked)."""
        if self.refused is not None:
            raise self.refused

    async def _deliver(self, view: View, final: bool) -> None:
        try:
            await self._deliver_view(view, final)
        except Forbidden as error:
            self.refused = error  # intermediate errors are dropped; the job checks this
            raise

    async def _deliver_view(self, view: View, final: bool) -> None:
        if final:
            await self._deliver_final(view)
        elif view.kind == "partial":
            piece = first_piece(view.spans, MESSAGE_LIMIT, length=length)
            if self.drafts and self.message_id is None and await self._draft(piece):
                self._edits.min_interval = self._draft_interval
                return
            await self._put(piece)
        else:
            await self._put(list(view.spans))

    async def _deliver_final(self, view: View) -> None:
        pieces = split_spans(view.spans, MESSAGE_LIMIT, length=length) or [[Span(EMPTY_REPLY)]]
        done = self._final_sent[1] if self._final_sent and self._final_sent[0] is view else 0
        if done == 0:
            await self._put(pieces[0])
            done = 1
            self._final_sent = (view, done)
        for piece in pieces[done:]:
            await with_retry(lambda piece=piece: send(self.bot, self.to, piece, quote=False), self._sleep)
            done += 1
            self._final_sent = (view, done)

    async def _draft(self, piece: list[Span]) -> bool:
        try:
            await send_draft(self.bot, self.to, self._draft_id, piece)
            return True
        except (BadRequest, InvalidToken) as error:  # a Bot API without the method answers 404
            log.info("no native drafts here (%s); streaming by edits", error.message)
            self.drafts, self.drafts_failed = False, True
            return False

    async def _put(self, piece: list[Span]) -> None:
        """Show `piece` in our message: the first time as a reply, then by editing it."""
        if self.message_id is not None:
            try:
                await edit(self.bot, self.to, self.message_id, piece)
                return
            except BadRequest as error:
                if not is_gone(error):
                    raise
                log.info("our message was deleted; sending a new one")
        message = await send(self.bot, self.to, piece)
        self.message_id = message.message_id
        self._edits.min_interval = self._edit_interval  # from now on this message is edited


async def answer_link(state: BotState, bot: Bot, request: LinkRequest, ticket: Ticket) -> None:
    """Wait in line, fetch the thread, stream and deliver the reply. Whatever fails, the user
    gets one short Cantonese line and the log gets the detail; /cancel lands here too."""
    chat_type = request.message.chat.type
    mode = state.stream_mode(chat_type)
    to = Destination.answering(request.message, state.preview(request.link))
    out = Outbox(bot, to, drafts=mode == "draft", group=chat_type != ChatType.PRIVATE, state=state)
    job = asyncio.create_task(_produce(state, out, request, ticket, streaming=mode != "off"))
    ticket.attach(job)
    try:
        await job
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise  # we are being shut down, not cancelled by the user
        await _say(out, ticket.cancel_reason or CANCELLED)
    except LilmError as error:
        log.info("thread %s: %s", request.link.thread_id, error)
        await _say(out, error.user_message)
    except Forbidden as error:
        log.info("chat %s is closed to the bot: %s", to.chat_id, error.message)
    except (TelegramError, RetryTooLong) as error:
        log.warning("could not deliver the reply in chat %s: %s", to.chat_id, error)
        await _say(out, UNEXPECTED)
    except Exception:
        log.exception("replying to thread %s failed", request.link.thread_id)
        await _say(out, UNEXPECTED)
    finally:
        ticket.release()
        await out.close()
        if out.drafts_failed:
            state.drafts = False


async def _wait_in_line(state: BotState, out: Outbox, request: LinkRequest, ticket: Ticket) -> Thread:
    """The thread, fetched while waiting for a worker (so LIHKG problems show at once);
    the user sees their place in line when it is worth telling."""
    told = ticket.position
    if told:
        out.notice(queue_position(told))

    def moved(position: int) -> None:
        nonlocal told
        if worth_telling(told, position):
            told = position
            out.notice(queue_position(position))

    thread = await state.fetch(request.link)
    await ticket.wait_turn(on_move=moved)
    out.check_open()
    return thread


async def _produce(state: BotState, out: Outbox, request: LinkRequest, ticket: Ticket, *, streaming: bool) -> None:
    thread = await _wait_in_line(state, out, request, ticket)
    prompt = prompt_from_thread(thread)
    shown = state.service.display_thread(prompt)
    prefs = state.prefs.get(request.message.chat_id)
    texts: list[str] = []

    async def on_partial(index: int, text: str) -> None:
        out.check_open()  # stops generating for a chat that blocked us
        texts.extend([""] * (index + 1 - len(texts)))  # candidates may stream interleaved
        texts[index] = text
        if streaming:
            out.show(reply_spans(shown, texts, request.link.url, streaming=True))

    typing = asyncio.create_task(_keep_typing(out.bot, out.to))
    try:
        async with asyncio.timeout(state.reply_deadline):  # a stuck model must not hang the chat
            result = await state.service.reply_to_prompt(
                prompt,
                n=prefs.candidates,
                params=state.sampling_for(prefs),
                system=state.system_for(prefs),
                on_partial=on_partial,
            )
    except TimeoutError:
        raise GenerationTimeout(f"no reply within {state.reply_deadline:.0f} s") from None
    finally:
        typing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await typing
    ticket.release()  # the model is free for the next in line while Telegram gets the text
    note = ONLY_FIRST_LINK if request.more_links else None
    await out.finish(reply_spans(result.thread, result.replies, request.link.url, note=note))


async def _say(out: Outbox, line: str) -> None:
    """Show one line as the answer's final state; failures are only logged."""
    try:
        await out.finish([Span(line)])
    except (TelegramError, RetryTooLong) as error:
        log.warning("could not tell chat %s %r: %s", out.to.chat_id, line, error)


async def _keep_typing(bot: Bot, to: Destination) -> None:
    """Show "typing…" until cancelled (Telegram clears it after ~5 s, so repeat)."""
    while True:
        wait = TYPING_EVERY
        try:
            await bot.send_chat_action(to.chat_id, ChatAction.TYPING, message_thread_id=to.thread_id)
        except RetryAfter as error:
            wait = max(wait, retry_after_seconds(error) or 0.0)
        except TelegramError as error:
            log.debug("typing action failed: %s", error)
        await asyncio.sleep(wait)

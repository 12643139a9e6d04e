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

from bots.access import Ticket, place_notices
from bots.chat_text import (
    CANCELLED,
    EMPTY_REPLY,
    ONLY_FIRST_LINK,
    UNEXPECTED,
    Span,
    answer_spans,
    first_piece,
    queue_position,
    split_spans,
)
from bots.streaming import AnswerOutbox, RetryTooLong, View, stream_answer
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
from core.errors import LilmError
from core.links import ThreadLink
from core.reply import ThreadPrompt

log = logging.getLogger(__name__)

TYPING_EVERY = 4.5  # seconds; Telegram shows "typing" for about 5


@dataclass(frozen=True)
class LinkRequest:
    """A user's message and the link in it we answer."""

    message: Message
    link: ThreadLink
    user_id: int
    more_links: bool = False


class Outbox(AnswerOutbox):
    """Telegram's answer: native drafts in private chats, else edits of one message."""

    def __init__(self, bot: Bot, to: Destination, *, drafts: bool, group: bool, state: BotState) -> None:
        self._draft_interval = state.settings.telegram_draft_interval
        self._edit_interval = state.edit_interval(group)
        super().__init__(
            min_interval=self._draft_interval if drafts else self._edit_interval,
            hold=0.0 if drafts else state.settings.telegram_stream_hold,
            retry_after=retry_after_seconds,
            refusal=Forbidden,
            sleep=state.sleep,
            clock=state.clock,
        )
        self.bot = bot
        self.to = to
        self.drafts = drafts
        self.drafts_failed = False
        self.message_id: int | None = None
        self._draft_id = to.reply_to or 1
        self._sleep = state.sleep

    @property
    def shown(self) -> bool:
        return self.message_id is not None

    async def finish(self, spans: Sequence[Span], *, paced: bool = True) -> None:
        # After drafts only, the final is a new message: no edit pace to keep.
        await super().finish(spans, paced=paced and self.message_id is not None)

    async def deliver_view(self, view: View, final: bool) -> None:
        if final:
            await self._deliver_final(view)
        elif view.partial:
            piece = first_piece(view.spans, MESSAGE_LIMIT, length=length)
            if self.drafts and self.message_id is None and await self._draft(piece):
                self._edits.min_interval = self._draft_interval
                return
            await self._put(piece)
        else:
            await self._put(list(view.spans))

    async def _deliver_final(self, view: View) -> None:
        pieces = split_spans(view.spans, MESSAGE_LIMIT, length=length) or [[Span(EMPTY_REPLY)]]
        await view.send_pieces(pieces, self._put, self._send_more)

    async def _send_more(self, piece: list[Span]) -> None:
        """A further message of the final answer: plain (not a reply), waiting out 429s."""
        await with_retry(lambda: send(self.bot, self.to, piece, quote=False), self._sleep)

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


async def _wait_in_line(state: BotState, out: Outbox, request: LinkRequest, ticket: Ticket) -> ThreadPrompt:
    """The thread, fetched while waiting for a worker (so LIHKG problems show at once);
    the user sees their place in line when it is worth telling."""
    on_move = place_notices(ticket.position, lambda position: out.notice(queue_position(position)))
    prompt = await state.service.fetch_prompt(request.link)
    await ticket.wait_turn(on_move=on_move)
    out.check_open()
    return prompt


async def _produce(state: BotState, out: Outbox, request: LinkRequest, ticket: Ticket, *, streaming: bool) -> None:
    prompt = await _wait_in_line(state, out, request, ticket)
    prefs = state.prefs.get(request.message.chat_id)
    typing = asyncio.create_task(_keep_typing(out.bot, out.to))
    try:
        result = await stream_answer(
            state.service, prompt, out, prefs=prefs, url=request.link.url, deadline=state.reply_deadline, streaming=streaming
        )
    finally:
        typing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await typing
    ticket.release()  # the model is free for the next in line while Telegram gets the text
    note = ONLY_FIRST_LINK if request.more_links else None
    await out.finish(answer_spans(result.thread, result.replies, request.link.url, note=note))


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

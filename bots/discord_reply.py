"""One answer to one LIHKG link on Discord: wait in line, fetch, stream, deliver, or fail with
one short Cantonese line.

A `Target` is where the answer shows: a reply to a user's message (then edited), or a
deferred slash command's response (then edited, more pieces as followups). `Outbox` delivers
queue notices, the streaming text and the final reply (split into 2000-character messages)
through `ThrottledEdits`: one call in flight, edits at least DISCORD_EDIT_INTERVAL apart.
Every send uses `AllowedMentions.none()`, so nothing the model writes can ping anyone.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import discord

from bots.access import Ticket, place_notices
from bots.chat_text import (
    CANCELLED,
    EMPTY_REPLY,
    ONLY_FIRST_LINK,
    UNEXPECTED,
    Span,
    answer_spans,
    queue_position,
)
from bots.discord_state import DiscordState, Place
from bots.discord_text import message_pieces, render, streaming_piece
from bots.streaming import AnswerOutbox, RetryTooLong, View, stream_answer
from core.errors import LilmError
from core.links import ThreadLink

log = logging.getLogger(__name__)

TYPING_EVERY = 8.0  # seconds; Discord shows "typing" for about 10
NO_PINGS = discord.AllowedMentions.none()


def retry_after_seconds(error: BaseException) -> float | None:
    """Seconds Discord asked us to wait, when discord.py gave up waiting itself (a 429 longer
    than its max_ratelimit_timeout); shorter 429s discord.py waits out on its own."""
    return float(error.retry_after) if isinstance(error, discord.RateLimited) else None


class MessageTarget:
    """Answers a user's message: a reply (pinging nobody), then edits of it."""

    def __init__(self, message: discord.Message) -> None:
        self.message = message
        self.sent: discord.Message | None = None

    @property
    def where(self) -> str:
        return f"channel {self.message.channel.id}"

    async def put(self, text: str) -> None:
        if self.sent is not None:
            try:
                await self.sent.edit(content=text, allowed_mentions=NO_PINGS)
                return
            except discord.NotFound:
                log.info("our message in %s was deleted; sending a new one", self.where)
        reference = self.message.to_reference(fail_if_not_exists=False)
        self.sent = await self.message.channel.send(
            text, reference=reference, mention_author=False, allowed_mentions=NO_PINGS, suppress_embeds=True
        )

    async def add(self, text: str) -> None:
        await self.message.channel.send(text, allowed_mentions=NO_PINGS, suppress_embeds=True)

    async def typing(self) -> None:
        await self.message.channel.typing()


class InteractionTarget:
    """Answers a deferred slash command: its response is edited, more pieces are followups."""

    def __init__(self, interaction: discord.Interaction) -> None:
        self.interaction = interaction

    @property
    def where(self) -> str:
        return f"interaction in channel {self.interaction.channel_id}"

    async def put(self, text: str) -> None:
        await self.interaction.edit_original_response(content=text, allowed_mentions=NO_PINGS)

    async def add(self, text: str) -> None:
        await self.interaction.followup.send(text, allowed_mentions=NO_PINGS, suppress_embeds=True)

    async def typing(self) -> None:
        return None  # a deferred response already shows "thinking…"


Target = MessageTarget | InteractionTarget


@dataclass(frozen=True)
class LinkRequest:
    """A user's request: where to answer, the link, who and where asked."""

    target: Target
    link: ThreadLink
    place: Place
    more_links: bool = False


class Outbox(AnswerOutbox):
    """Discord's answer: notices and partial text by edits of one message, the final text as
    that message plus as many more as it needs."""

    def __init__(self, target: Target, state: DiscordState) -> None:
        super().__init__(
            min_interval=state.settings.discord_edit_interval,
            hold=state.settings.discord_stream_hold,
            retry_after=retry_after_seconds,
            refusal=discord.Forbidden,
            sleep=state.sleep,
            clock=state.clock,
        )
        self.target = target
        self._shown = False

    @property
    def shown(self) -> bool:
        return self._shown

    async def deliver_view(self, view: View, final: bool) -> None:
        self.check_open()  # the channel is closed to us: nothing more is tried there
        if not final:
            await self.target.put(streaming_piece(view.spans) if view.partial else render(view.spans))
            self._shown = True
            return
        pieces = message_pieces(view.spans) or [EMPTY_REPLY]
        await view.send_pieces(pieces, self.target.put, self.target.add)


async def answer_link(state: DiscordState, request: LinkRequest, ticket: Ticket) -> None:
    """Wait in line, fetch the thread, stream and deliver the reply. Whatever fails, the user
    gets one short Cantonese line and the log one line of detail; /cancel lands here too."""
    out = Outbox(request.target, state)
    job = asyncio.create_task(_produce(state, out, request, ticket))
    ticket.attach(job)
    line: str | None = None
    try:
        await job
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise  # the bot is shutting down; the user's /cancel only cancelled the job
        line = ticket.cancel_reason or CANCELLED
    except Exception as error:  # noqa: BLE001 - one line for the user, one for the log (DEBUG: all of it)
        line = _line_for(error, request)
    finally:
        ticket.release()
    try:
        if line is not None:
            await out.finish([Span(line)])
    except (discord.HTTPException, RetryTooLong) as error:
        log.warning("could not tell %s %r: %s", request.target.where, line, _short(error))
    finally:
        await out.close()


def _line_for(error: Exception, request: LinkRequest) -> str | None:
    """What the user reads about `error` (None: nothing can reach them), after logging it."""
    where = request.target.where
    match error:
        case LilmError():
            log.info("thread %s in %s: %s", request.link.thread_id, where, error)
            return error.user_message
        case discord.Forbidden():
            log.info("%s is closed to the bot: %s", where, error.text or error.status)
            return None
        case discord.HTTPException() | RetryTooLong():
            log.warning("could not deliver the reply in %s: %s", where, _short(error))
        case _:
            log.error("replying to thread %s failed: %s", request.link.thread_id, _short(error))
            log.debug("the failure in full", exc_info=error)
    return UNEXPECTED


async def _produce(state: DiscordState, out: Outbox, request: LinkRequest, ticket: Ticket) -> None:
    typing = asyncio.create_task(_keep_typing(request.target))  # from the start: we are on it
    try:
        prompt = await state.service.fetch_prompt(request.link)  # while waiting: LIHKG problems show at once
        await ticket.wait_turn(on_move=place_notices(ticket.position, lambda position: out.notice(queue_position(position))))
        out.check_open()
        prefs = state.prefs.get(request.place.prefs_key)
        result = await stream_answer(state.service, prompt, out, prefs=prefs, url=request.link.url, deadline=state.reply_deadline)
    finally:
        typing.cancel()
    ticket.release()  # the model is free for the next in line while Discord gets the text
    note = ONLY_FIRST_LINK if request.more_links else None
    await out.finish(answer_spans(result.thread, result.replies, request.link.url, note=note))


async def _keep_typing(target: Target) -> None:
    """Show "typing…" until cancelled (Discord clears it after ~10 s, so repeat)."""
    while True:
        try:
            await target.typing()
        except discord.HTTPException as error:
            log.debug("typing failed in %s: %s", target.where, _short(error))
        await asyncio.sleep(TYPING_EVERY)


def _short(error: BaseException) -> str:
    """One line about `error` for the log: its type and first line, nothing more."""
    first = str(error).splitlines()[0] if str(error) else ""
    return f"{type(error).__name__}: {first[:200]}"

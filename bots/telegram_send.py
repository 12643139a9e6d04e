"""Sending to Telegram safely: HTML from `Span`s, plain-text retry, `retry_after` honoured.

Never legacy Markdown: text is HTML with `< > &` escaped, and if Telegram still refuses it
(a 400 BadRequest) the same text goes again as plain text. Where a message goes (chat, forum
topic, the message it answers, link preview) travels as one `Destination`.
"""

from __future__ import annotations

import html
import logging
import warnings
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TypeVar

from telegram import Bot, LinkPreviewOptions, Message, ReplyParameters
from telegram.constants import ParseMode
from telegram.error import BadRequest, RetryAfter
from telegram.warnings import PTBDeprecationWarning

from bots.chat_text import Markup, Span, plain_text, utf16_len

log = logging.getLogger(__name__)

MESSAGE_LIMIT = 4096  # UTF-16 units of visible text, after entity parsing
SEND_ATTEMPTS = 4  # tries of one send when Telegram answers 429
MAX_RETRY_WAIT = 900.0  # seconds; a longer retry_after is not waited out

T = TypeVar("T")
Sleep = Callable[[float], Awaitable[None]]


def length(text: str) -> int:
    """Telegram's length of visible text (UTF-16 code units)."""
    return utf16_len(text)


HTML = Markup(
    escape=lambda text: html.escape(text, quote=False),
    bold="<b>{}</b>",
    italic="<i>{}</i>",
    code="<code>{}</code>",
    link='<a href="{url}">{}</a>',
    quote_url=lambda url: html.escape(url, quote=True),
)


def render_html(spans: Sequence[Span]) -> str:
    """Telegram HTML for `spans`, every piece of text escaped.

    >>> render_html([Span("<標題> & 1", bold=True, url="https://lih.kg/1?a=1&b=2"), Span(" 好")])
    '<a href="https://lih.kg/1?a=1&amp;b=2"><b>&lt;標題&gt; &amp; 1</b></a> 好'
    """
    return HTML.render(spans)


def retry_after_seconds(error: BaseException) -> float | None:
    """Seconds Telegram asked us to wait, if `error` is a 429; else None."""
    if not isinstance(error, RetryAfter):
        return None
    with warnings.catch_warnings():  # PTB 22 warns that the int form will become a timedelta
        warnings.simplefilter("ignore", PTBDeprecationWarning)
        value = error.retry_after
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


def is_not_modified(error: BadRequest) -> bool:
    return "not modified" in error.message.lower()


def is_gone(error: BadRequest) -> bool:
    """The message to edit no longer exists (deleted by someone)."""
    text = error.message.lower()
    return "message to edit not found" in text or "message can't be edited" in text


async def with_retry(call: Callable[[], Awaitable[T]], sleep: Sleep, *, attempts: int = SEND_ATTEMPTS) -> T:
    """`await call()`, waiting out 429 `retry_after` between attempts."""
    for attempt in range(1, attempts + 1):
        try:
            return await call()
        except RetryAfter as error:
            seconds = retry_after_seconds(error) or 1.0
            if attempt == attempts or seconds > MAX_RETRY_WAIT:
                raise
            log.info("Telegram asked to wait %.0f s (429); waiting", seconds)
            await sleep(seconds)
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class Destination:
    """Where one answer goes: a chat, its forum topic, the message answered, link preview."""

    chat_id: int
    thread_id: int | None = None
    reply_to: int | None = None
    preview: LinkPreviewOptions = field(default_factory=lambda: LinkPreviewOptions(is_disabled=True))

    @classmethod
    def answering(cls, message: Message, preview: LinkPreviewOptions | None = None) -> Destination:
        """A reply to `message`, in its forum topic if it is in one."""
        thread_id = message.message_thread_id if message.is_topic_message else None
        return cls(message.chat_id, thread_id, message.message_id, preview or LinkPreviewOptions(is_disabled=True))


async def send(bot: Bot, to: Destination, spans: Sequence[Span], *, quote: bool = True) -> Message:
    """Send `spans` as HTML; on a 400, send the same text as plain text."""
    reply = ReplyParameters(message_id=to.reply_to, allow_sending_without_reply=True) if quote and to.reply_to else None
    options = {"message_thread_id": to.thread_id, "reply_parameters": reply, "link_preview_options": to.preview}
    try:
        return await bot.send_message(to.chat_id, render_html(spans), parse_mode=ParseMode.HTML, **options)
    except BadRequest as error:
        log.warning("Telegram refused a message as HTML (%s); sending it as plain text", error.message)
        return await bot.send_message(to.chat_id, plain_text(spans), parse_mode=None, **options)


async def edit(bot: Bot, to: Destination, message_id: int, spans: Sequence[Span]) -> None:
    """Edit a message to `spans` (HTML, then plain text on a 400). Unchanged text is fine;
    BadRequest escapes only when the message is gone (see `is_gone`)."""
    options = {"chat_id": to.chat_id, "message_id": message_id, "link_preview_options": to.preview}
    try:
        await bot.edit_message_text(render_html(spans), parse_mode=ParseMode.HTML, **options)
        return
    except BadRequest as error:
        if is_not_modified(error):
            return
        if is_gone(error):
            raise
        log.warning("Telegram refused an edit as HTML (%s); sending it as plain text", error.message)
    try:
        await bot.edit_message_text(plain_text(spans), parse_mode=None, **options)
    except BadRequest as error:
        if not is_not_modified(error):
            raise


async def send_draft(bot: Bot, to: Destination, draft_id: int, spans: Sequence[Span]) -> None:
    """Show `spans` as the chat's streaming draft (private chats; Bot API 9.5+)."""
    try:
        await bot.send_message_draft(to.chat_id, draft_id, render_html(spans), message_thread_id=to.thread_id, parse_mode=ParseMode.HTML)
    except BadRequest as error:
        if "parse entities" not in error.message.lower():
            raise
        await bot.send_message_draft(to.chat_id, draft_id, plain_text(spans), message_thread_id=to.thread_id, parse_mode=None)


async def send_line(bot: Bot, to: Destination, line: str, sleep: Sleep) -> Message:
    """One short line as a reply, waiting out 429s."""
    return await with_retry(lambda: send(bot, to, [Span(line)]), sleep)

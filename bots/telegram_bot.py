"""The Telegram bot: share a LIHKG link, get a LIHKG-style Cantonese reply.

`lilm telegram` loads the model, builds the application with `build_application(settings,
service)` and runs it with `serve` (long polling, or a webhook when TELEGRAM_WEBHOOK_URL is
set). Handlers are small: they decide at once (so queue places follow arrival order) and hand
anything that talks to Telegram to a task, so one slow chat never holds up the others.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Coroutine
from typing import Any
from urllib.parse import urlsplit

from telegram import BotCommand, Message, MessageEntity, Update, User
from telegram.constants import ChatMemberStatus, ChatType
from telegram.error import Forbidden, InvalidToken, NetworkError, TelegramError
from telegram.ext import (
    Application,
    ApplicationBuilder,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

from bots.access import AccessDenied, Busy
from bots.chat_text import (
    CANCELLED,
    NO_LINK_IN_COMMAND,
    NOTHING_TO_CANCEL,
    SHUTTING_DOWN,
    UNEXPECTED,
    help_text,
)
from bots.log_redaction import redact_logs
from bots.preferences import SettingRejected
from bots.telegram_reply import LinkRequest, answer_link
from bots.telegram_send import Destination, send_line
from bots.telegram_state import (
    STATE_KEY,
    BotApiUnavailable,
    BotState,
    Clock,
    Sleep,
    bot_state,
    check_settings,
)
from core.errors import ConfigError, LinkError
from core.links import ThreadLink, find_links
from core.reply import ReplyService
from core.runtime import open_reply_service
from core.settings import Settings

log = logging.getLogger(__name__)

COMMANDS = (
    BotCommand("lihkg", "回覆一條 LIHKG 連結"),
    BotCommand("help", "點樣用"),
    BotCommand("settings", "呢個對話嘅設定"),
    BotCommand("cancel", "取消你做緊嘅請求"),
    BotCommand("start", "開始"),
)
POLL_TIMEOUT = 10.0  # seconds a getUpdates long poll may wait
CONNECTIONS = 32  # to the Bot API; PTB's 256 makes every request scan hundreds of idle ones
POOL_TIMEOUT = 30.0  # seconds a send may wait for a free connection in a burst (PTB's default: 1)
Context = ContextTypes.DEFAULT_TYPE


# --- handlers -----------------------------------------------------------------------------


async def on_help(update: Update, context: Context) -> None:
    """/start and /help: what the bot does, an example link, the commands (Cantonese)."""
    state, message = bot_state(context), update.effective_message
    text = help_text(group=message.chat.type != ChatType.PRIVATE)
    user_id = _user_id(update)
    if not state.policy.allows(user_id, message.chat_id, private=message.chat.type == ChatType.PRIVATE):
        text += "\n\n" + AccessDenied.line_for(user_id)
    _spawn(context, update, send_line(context.bot, Destination.answering(message), text, state.sleep))


async def on_lihkg(update: Update, context: Context) -> None:
    """/lihkg <link>: answer the link, or the link in the message this one replies to."""
    message = update.effective_message
    links = find_links(" ".join(context.args or ()))
    if not links and message.reply_to_message is not None:
        links = message_links(message.reply_to_message)
    if not links:
        _tell(update, context, NO_LINK_IN_COMMAND)
        return
    _take_request(update, context, links, addressed=True)


async def on_message(update: Update, context: Context) -> None:
    """A LIHKG link: answered in private chats, and in groups when addressed (or privacy is off)."""
    state, message = bot_state(context), update.effective_message
    addressed = addressed_to_bot(message, context.bot.bot)
    links = message_links(message)
    if not links and addressed and message.reply_to_message is not None:
        links = message_links(message.reply_to_message)
    if links and (addressed or state.answers_every_link):
        _take_request(update, context, links, addressed=addressed)
    elif addressed:
        _tell(update, context, LinkError.user_message)


async def on_settings(update: Update, context: Context) -> None:
    """/settings [name value | reset]: show or change this chat's candidates, temperature, style."""
    state, message, args = bot_state(context), update.effective_message, list(context.args or ())
    chat_id, user_id = message.chat_id, _user_id(update)
    if not state.policy.allows(user_id, chat_id, private=message.chat.type == ChatType.PRIVATE):
        _tell(update, context, AccessDenied.line_for(user_id))
        return
    if args and not await _may_change_settings(update, context):
        _tell(update, context, "群組設定只有管理員可以改。", always=True)
        return
    try:
        if args and args[0].lower() in ("reset", "還原"):
            prefs = state.prefs.reset(chat_id)
        elif len(args) >= 2:
            prefs = state.prefs.change(chat_id, args[0], " ".join(args[1:]))
        else:
            prefs = state.prefs.get(chat_id)
    except SettingRejected as error:
        _tell(update, context, error.user_message, always=True)
        return
    _tell(update, context, prefs.describe(state.prefs.max_candidates), always=True)


async def on_cancel(update: Update, context: Context) -> None:
    """/cancel: stop the user's own waiting or running request."""
    if not bot_state(context).queue.cancel(_user_id(update), CANCELLED):
        _tell(update, context, NOTHING_TO_CANCEL, always=True)


async def on_error(update: object, context: Context) -> None:
    """Log the failure first, then tell the chat one short line (never the details)."""
    log.error("update %s failed", getattr(update, "update_id", "-"), exc_info=context.error)
    if not isinstance(update, Update) or update.effective_message is None:
        return
    if isinstance(context.error, (Forbidden, NetworkError)):
        return  # telling the chat would fail the same way
    try:
        await send_line(context.bot, Destination.answering(update.effective_message), UNEXPECTED, bot_state(context).sleep)
    except TelegramError as error:
        log.warning("could not report the failure to the chat: %s", error)


async def on_startup(application: Application) -> None:
    """post_init: learn whether groups show us every message, publish the command list."""
    state, me = application.bot_data[STATE_KEY], application.bot.bot
    state.read_all_group_messages = bool(me.can_read_all_group_messages)
    try:
        await application.bot.set_my_commands(list(COMMANDS))
    except TelegramError as error:
        log.warning("could not set the command list: %s", error)
    log.info("Telegram bot @%s ready; reads all group messages: %s", me.username, state.read_all_group_messages)


def build_application(settings: Settings, service: ReplyService, *, sleep: Sleep = asyncio.sleep, clock: Clock = time.monotonic) -> Application:
    """The bot, every handler registered; `serve` runs it. `sleep`/`clock` are for tests."""
    state = BotState.from_settings(settings, service, sleep=sleep, clock=clock)
    secrets = [settings.telegram_bot_token, settings.telegram_bot_token.partition(":")[2], settings.telegram_webhook_secret]
    undo_redaction = redact_logs(secrets)  # before build(): the Bot logs its API URL

    async def on_shutdown(application: Application) -> None:
        undo_redaction()

    application = (
        ApplicationBuilder()
        .token(settings.telegram_bot_token)
        .base_url(settings.telegram_base_url)
        .connection_pool_size(CONNECTIONS)
        .pool_timeout(POOL_TIMEOUT)
        .post_init(on_startup)
        .post_shutdown(on_shutdown)
        .build()
    )
    application.bot_data[STATE_KEY] = state
    text_or_caption = (filters.TEXT | filters.CAPTION) & ~filters.COMMAND
    application.add_handlers(
        [
            CommandHandler(["start", "help"], on_help),
            CommandHandler("lihkg", on_lihkg),
            CommandHandler("settings", on_settings, block=False),
            CommandHandler("cancel", on_cancel),
            MessageHandler(filters.UpdateType.MESSAGE & text_or_caption, on_message),
        ]
    )
    application.add_error_handler(on_error)
    return application


# --- running ------------------------------------------------------------------------------


async def serve(application: Application, stop: asyncio.Event, *, poll_timeout: float = POLL_TIMEOUT) -> None:
    """Run until `stop` is set, in run_polling's order: initialize, post_init, updates (long
    polling, or the webhook when TELEGRAM_WEBHOOK_URL is set), start; then cancel open
    requests, stop, shut down, post_shutdown."""
    state: BotState = application.bot_data[STATE_KEY]
    settings = state.settings
    try:
        await application.initialize()
    except (InvalidToken, NetworkError) as error:
        await application.post_shutdown(application)
        if isinstance(error, InvalidToken):
            raise ConfigError("TELEGRAM_BOT_TOKEN was rejected by the Bot API: check it with @BotFather") from None
        where = urlsplit(settings.telegram_base_url).netloc
        raise BotApiUnavailable(f"cannot reach the Bot API at {where}: {error}") from None
    try:
        await application.post_init(application)
        await _start_updates(application, settings, poll_timeout)
        await application.start()
        await stop.wait()
    finally:
        if application.updater.running:
            await application.updater.stop()
        state.queue.cancel_all(SHUTTING_DOWN)  # requests still waiting or running end politely
        if application.running:
            await application.stop()
        await application.shutdown()
        await application.post_shutdown(application)


async def _start_updates(application: Application, settings: Settings, poll_timeout: float) -> None:
    if not settings.telegram_webhook_url:
        await application.updater.start_polling(timeout=poll_timeout, allowed_updates=[Update.MESSAGE])
        return
    await application.updater.start_webhook(
        listen=settings.telegram_webhook_listen,
        port=settings.telegram_webhook_port,
        url_path=urlsplit(settings.telegram_webhook_url).path.lstrip("/"),
        webhook_url=settings.telegram_webhook_url,
        secret_token=settings.telegram_webhook_secret or None,
        allowed_updates=[Update.MESSAGE],
    )


async def run_telegram(args: argparse.Namespace, settings: Settings) -> int:
    """`lilm telegram`: check settings, load the model, answer Telegram until Ctrl-C/SIGTERM."""
    check_settings(settings)  # before the (possibly slow) model load
    logging.getLogger("httpx").setLevel(max(logging.WARNING, logging.getLogger("httpx").level))
    async with open_reply_service(settings) as service:
        application = build_application(settings, service)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(signum, stop.set)
        await serve(application, stop)
    return 0


# --- deciding what a message asks for -----------------------------------------------------


def message_links(message: Message) -> list[ThreadLink]:
    """LIHKG links in a message's text or caption, including hidden link targets."""
    text = message.text or message.caption or ""
    entities = message.entities or message.caption_entities or ()
    targets = [e.url for e in entities if e.type == MessageEntity.TEXT_LINK and e.url]
    return find_links(" ".join([text, *targets]))


def addressed_to_bot(message: Message, me: User) -> bool:
    """Private chat, a reply to one of our messages, or a mention of the bot."""
    if message.chat.type == ChatType.PRIVATE:
        return True
    replied = message.reply_to_message
    if replied is not None and replied.from_user is not None and replied.from_user.id == me.id:
        return True
    found = message.parse_entities([MessageEntity.MENTION, MessageEntity.TEXT_MENTION]) or message.parse_caption_entities(
        [MessageEntity.MENTION, MessageEntity.TEXT_MENTION]
    )
    username = f"@{me.username}".lower() if me.username else None
    return any(
        (entity.type == MessageEntity.MENTION and text.lower() == username) or (entity.user is not None and entity.user.id == me.id)
        for entity, text in found.items()
    )


def _take_request(update: Update, context: Context, links: list[ThreadLink], *, addressed: bool) -> None:
    """Admit the request now (queue order = arrival order); the answer runs as a task."""
    state, message, user_id = bot_state(context), update.effective_message, _user_id(update)
    if not state.policy.allows(user_id, message.chat_id, private=message.chat.type == ChatType.PRIVATE):
        if addressed:
            _tell(update, context, AccessDenied.line_for(user_id))
        return
    try:
        ticket = state.admit(user_id)
    except Busy as refusal:
        _tell(update, context, refusal.user_message)
        return
    request = LinkRequest(message, links[0], user_id, more_links=len(links) > 1)
    _spawn(context, update, answer_link(state, context.bot, request, ticket))


def _tell(update: Update, context: Context, line: str, *, always: bool = False) -> None:
    """Answer with one line, unless this user was told things too often just now."""
    state = bot_state(context)
    if always or state.may_notify(_user_id(update)):
        _spawn(context, update, send_line(context.bot, Destination.answering(update.effective_message), line, state.sleep))


def _spawn(context: Context, update: Update, coroutine: Coroutine[Any, Any, Any]) -> None:
    """Run `coroutine` as an application task (errors reach `on_error`; stop awaits it)."""
    tasks = bot_state(context).tasks
    task = context.application.create_task(coroutine, update=update)
    tasks.add(task)
    task.add_done_callback(tasks.discard)


def _user_id(update: Update) -> int:
    user = update.effective_user
    return user.id if user is not None else update.effective_chat.id


async def _may_change_settings(update: Update, context: Context) -> bool:
    message = update.effective_message
    if message.chat.type == ChatType.PRIVATE or bot_state(context).policy.is_admin(_user_id(update)):
        return True
    try:
        member = await context.bot.get_chat_member(message.chat_id, _user_id(update))
    except TelegramError as error:
        log.warning("could not check chat admins: %s", error)
        return False
    return member.status in (ChatMemberStatus.ADMINISTRATOR, ChatMemberStatus.OWNER)

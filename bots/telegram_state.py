"""What the Telegram handlers share: settings, the reply service, fairness, per-chat prefs.

One `BotState` is built by `bots.telegram_bot.build_application` and kept in
`application.bot_data`; handlers reach it with `bot_state(context)`. No module globals.
"""

from __future__ import annotations

import asyncio
import importlib.util
import re
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from telegram import LinkPreviewOptions
from telegram.constants import ChatType
from telegram.ext import CallbackContext

from bots.access import (
    NOTICES_PER_USER,
    AccessPolicy,
    Fairness,
    RateLimiter,
    RequestQueue,
    parse_ids,
    reply_deadline,
)
from bots.preferences import ChatPreferences, PreferenceStore
from bots.streaming import Clock, Sleep
from core.errors import ConfigError, LilmError
from core.links import ThreadLink
from core.reply import ReplyService
from core.settings import Settings

STATE_KEY = "lilm"
STREAM_MODES = ("auto", "draft", "edit", "off")
PREVIEW_MODES = ("off", "thread")
MAX_QUEUE_SIZE = 1000


class BotApiUnavailable(LilmError):
    """The Bot API could not be reached or refused the bot at startup."""

    user_message = "連唔到 Telegram，睇下網絡同 TELEGRAM_BASE_URL。"


@dataclass
class BotState(Fairness):
    """Everything the handlers share (who may ask and how often: `Fairness`); see `from_settings`."""

    settings: Settings
    service: ReplyService
    prefs: PreferenceStore
    sleep: Sleep = asyncio.sleep
    clock: Clock = time.monotonic
    read_all_group_messages: bool = False
    drafts: bool = True  # turned off if the Bot API has no sendMessageDraft
    tasks: set[asyncio.Task] = field(default_factory=set)  # answers and lines being sent

    @classmethod
    def from_settings(cls, settings: Settings, service: ReplyService, *, sleep: Sleep = asyncio.sleep, clock: Clock = time.monotonic) -> BotState:
        check_settings(settings)
        policy = AccessPolicy(
            users=parse_ids(settings.telegram_allowed_users, "TELEGRAM_ALLOWED_USERS"),
            chats=parse_ids(settings.telegram_allowed_chats, "TELEGRAM_ALLOWED_CHATS"),
            admins=parse_ids(settings.telegram_admin_ids, "TELEGRAM_ADMIN_IDS"),
        )
        defaults = ChatPreferences(
            candidates=min(service.candidates, settings.telegram_max_candidates),
            temperature=service.params.temperature,
        )
        return cls(
            settings=settings,
            service=service,
            policy=policy,
            limiter=RateLimiter(settings.telegram_rate_limit, settings.telegram_rate_window, clock=clock),
            notices=RateLimiter(*NOTICES_PER_USER, clock=clock),
            queue=RequestQueue(workers=settings.telegram_workers, max_waiting=settings.telegram_queue_size),
            prefs=PreferenceStore(defaults, max_candidates=settings.telegram_max_candidates),
            sleep=sleep,
            clock=clock,
        )

    @property
    def answers_every_link(self) -> bool:
        """In groups: answer links nobody addressed to us (needs privacy mode off)."""
        return self.settings.telegram_group_all_links and self.read_all_group_messages

    @property
    def reply_deadline(self) -> float | None:
        """Seconds one generation may take here (None: LILM_GENERATION_TIMEOUT is 0, no limit)."""
        return reply_deadline(self.settings.generation_timeout)

    def stream_mode(self, chat_type: str) -> str:
        """draft, edit or off for a chat of this type."""
        mode = self.settings.telegram_stream
        if mode == "auto":
            return "draft" if chat_type == ChatType.PRIVATE and self.drafts else "edit"
        if mode == "draft" and (chat_type != ChatType.PRIVATE or not self.drafts):
            return "edit"
        return mode

    def edit_interval(self, group: bool) -> float:
        """Seconds between edits of one message (groups have the tighter flood limit)."""
        return self.settings.telegram_group_edit_interval if group else self.settings.telegram_edit_interval

    def preview(self, link: ThreadLink) -> LinkPreviewOptions:
        if self.settings.telegram_link_preview == "thread":
            return LinkPreviewOptions(url=link.url, prefer_small_media=True)
        return LinkPreviewOptions(is_disabled=True)


def bot_state(context: CallbackContext) -> BotState:
    return context.application.bot_data[STATE_KEY]


def check_settings(settings: Settings) -> None:
    """ConfigError for Telegram settings that cannot work, naming the variable."""
    s = settings
    if not s.telegram_bot_token.strip():
        raise ConfigError("TELEGRAM_BOT_TOKEN is empty: create a bot with @BotFather and put its token in .env")
    if not re.fullmatch(r"\d+:[A-Za-z0-9_-]+", s.telegram_bot_token.strip()):
        raise ConfigError("TELEGRAM_BOT_TOKEN does not look like a bot token (digits, a colon, then letters)")
    if not s.telegram_base_url.startswith(("http://", "https://")):
        raise ConfigError(f"TELEGRAM_BASE_URL must start with http:// or https://, got {s.telegram_base_url!r}")
    if s.telegram_stream not in STREAM_MODES:
        raise ConfigError(f"TELEGRAM_STREAM must be one of {', '.join(STREAM_MODES)}, got {s.telegram_stream!r}")
    if s.telegram_link_preview not in PREVIEW_MODES:
        raise ConfigError(f"TELEGRAM_LINK_PREVIEW must be off or thread, got {s.telegram_link_preview!r}")
    if s.telegram_workers < 1 or not 0 <= s.telegram_queue_size <= MAX_QUEUE_SIZE:
        raise ConfigError(f"TELEGRAM_WORKERS must be >= 1 and TELEGRAM_QUEUE_SIZE in 0..{MAX_QUEUE_SIZE}")
    if not 1 <= s.telegram_max_candidates <= 8:
        raise ConfigError(f"TELEGRAM_MAX_CANDIDATES must be in 1..8, got {s.telegram_max_candidates}")
    waits = (s.telegram_edit_interval, s.telegram_group_edit_interval, s.telegram_draft_interval, s.telegram_stream_hold)
    if min(*waits, s.telegram_rate_window) < 0:
        raise ConfigError("TELEGRAM_*_INTERVAL, TELEGRAM_STREAM_HOLD and TELEGRAM_RATE_WINDOW must be >= 0")
    if s.telegram_webhook_url:
        check_webhook(s)


def check_webhook(s: Settings) -> None:
    if not s.telegram_webhook_url.startswith("https://") or not urlsplit(s.telegram_webhook_url).hostname:
        raise ConfigError(f"TELEGRAM_WEBHOOK_URL must be a public https:// URL, got {s.telegram_webhook_url!r}")
    if s.telegram_webhook_secret and not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", s.telegram_webhook_secret):
        raise ConfigError("TELEGRAM_WEBHOOK_SECRET may only hold letters, digits, _ and - (1-256 of them)")
    if importlib.util.find_spec("tornado") is None:
        raise ConfigError('webhook mode needs python-telegram-bot[webhooks]: pip install "python-telegram-bot[webhooks]"')

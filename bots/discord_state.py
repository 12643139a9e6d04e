"""What the Discord bot's handlers share: settings, the reply service, fairness, per-server prefs.

One `DiscordState` is built by `bots.discord_bot.build_bot` and passed into the bot; no
module globals. Who may ask is decided here from plain ids, so it is easy to test.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import dataclass, field, fields, replace

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
from core.reply import ReplyService
from core.settings import Settings

MAX_QUEUE_SIZE = 1000


class DiscordUnavailable(LilmError):
    """Discord could not be reached at startup."""

    user_message = "連唔到 Discord，睇下網絡。"


@dataclass(frozen=True)
class Place:
    """Where a request comes from, as ids: the user, their roles, the channel and server."""

    user_id: int
    channel_id: int
    guild_id: int | None = None
    parent_id: int | None = None  # a thread's or forum post's channel
    roles: tuple[int, ...] = ()

    @property
    def private(self) -> bool:
        return self.guild_id is None

    @property
    def prefs_key(self) -> int:
        """Settings are per server; in DMs, per DM channel."""
        return self.guild_id if self.guild_id is not None else self.channel_id


@dataclass
class DiscordState(Fairness):
    """Everything the handlers share (who may ask and how often: `Fairness`); see `from_settings`."""

    settings: Settings
    service: ReplyService
    guilds: frozenset[int]
    auto_link_channels: frozenset[int]
    prefs: PreferenceStore
    sleep: Sleep = asyncio.sleep
    clock: Clock = time.monotonic
    tasks: set[asyncio.Task] = field(default_factory=set)  # answers and lines being sent

    @classmethod
    def from_settings(cls, settings: Settings, service: ReplyService, *, sleep: Sleep = asyncio.sleep, clock: Clock = time.monotonic) -> DiscordState:
        check_settings(settings)
        s = settings
        policy = AccessPolicy(
            users=parse_ids(s.discord_allowed_users, "DISCORD_ALLOWED_USERS"),
            chats=parse_ids(s.discord_allowed_channels, "DISCORD_ALLOWED_CHANNELS"),
            admins=parse_ids(s.discord_admin_ids, "DISCORD_ADMIN_IDS"),
            roles=parse_ids(s.discord_allowed_roles, "DISCORD_ALLOWED_ROLES"),
        )
        defaults = ChatPreferences(candidates=min(service.candidates, s.discord_max_candidates), temperature=service.params.temperature)
        return cls(
            settings=s,
            service=service,
            policy=policy,
            guilds=parse_ids(s.discord_allowed_guilds, "DISCORD_ALLOWED_GUILDS"),
            auto_link_channels=parse_ids(s.discord_auto_link_channels, "DISCORD_AUTO_LINK_CHANNELS"),
            limiter=RateLimiter(s.discord_rate_limit, s.discord_rate_window, clock=clock),
            notices=RateLimiter(*NOTICES_PER_USER, clock=clock),
            queue=RequestQueue(workers=s.discord_workers, max_waiting=s.discord_queue_size),
            prefs=PreferenceStore(defaults, max_candidates=s.discord_max_candidates),
            sleep=sleep,
            clock=clock,
        )

    def allows(self, place: Place) -> bool:
        """The allow-lists: servers, channels (a thread by its parent too), users or roles; DMs
        only when DISCORD_ALLOW_DMS is on. Admins pass everything."""
        if self.policy.is_admin(place.user_id):
            return True
        if place.private:
            if not self.settings.discord_allow_dms:
                return False
            # Channel and server lists are about servers: in DMs only the user (or role) lists count.
            return replace(self.policy, chats=frozenset()).allows(place.user_id, place.channel_id)
        if self.guilds and place.guild_id not in self.guilds:
            return False
        parents = () if place.parent_id is None else (place.parent_id,)
        return self.policy.allows(place.user_id, place.channel_id, roles=place.roles, parents=parents)

    def answers_every_link(self, place: Place) -> bool:
        """Whether links nobody addressed to the bot are answered here (needs the intent)."""
        channels = {place.channel_id, place.parent_id}
        return self.settings.discord_message_content and not self.auto_link_channels.isdisjoint(channels)

    @property
    def reply_deadline(self) -> float | None:
        """Seconds one generation may take here (None: LILM_GENERATION_TIMEOUT is 0, no limit)."""
        return reply_deadline(self.settings.generation_timeout)


def check_settings(settings: Settings) -> None:
    """ConfigError for Discord settings that cannot work, naming the variable."""
    s = settings
    token = s.discord_bot_token.strip()
    if not token:
        raise ConfigError("DISCORD_BOT_TOKEN is empty: create a bot at https://discord.com/developers/applications")
    if any(char.isspace() for char in token) or token.count(".") != 2:
        raise ConfigError("DISCORD_BOT_TOKEN does not look like a bot token (three parts separated by dots)")
    if s.discord_workers < 1 or not 0 <= s.discord_queue_size <= MAX_QUEUE_SIZE:
        raise ConfigError(f"DISCORD_WORKERS must be >= 1 and DISCORD_QUEUE_SIZE in 0..{MAX_QUEUE_SIZE}")
    if not 1 <= s.discord_max_candidates <= 8:
        raise ConfigError(f"DISCORD_MAX_CANDIDATES must be in 1..8, got {s.discord_max_candidates}")
    if min(s.discord_edit_interval, s.discord_stream_hold, s.discord_rate_window) < 0:
        raise ConfigError("DISCORD_EDIT_INTERVAL, DISCORD_STREAM_HOLD and DISCORD_RATE_WINDOW must be >= 0")
    for name, value in _id_settings(s):
        parse_ids(value, name)
    if len(parse_ids(s.discord_dev_guild, "DISCORD_DEV_GUILD")) > 1:
        raise ConfigError(f"DISCORD_DEV_GUILD takes one server id, got {s.discord_dev_guild!r}")
    if s.discord_auto_link_channels.strip() and not s.discord_message_content:
        raise ConfigError("DISCORD_AUTO_LINK_CHANNELS needs DISCORD_MESSAGE_CONTENT=1 (and the intent enabled in the portal)")


def _id_settings(s: Settings) -> Iterable[tuple[str, str]]:
    """Every setting that lists Discord ids, by its variable name."""
    for f in fields(s):
        name = f.metadata["env"]
        if name.startswith("DISCORD_") and (name.startswith("DISCORD_ALLOWED_") or name.endswith(("_IDS", "_CHANNELS", "_GUILD"))):
            yield name, getattr(s, f.name)

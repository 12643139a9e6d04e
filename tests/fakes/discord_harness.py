"""Running the real Discord bot against the fake REST API, fed raw gateway payloads.

`running_discord_bot(fake, service, env=...)` builds the bot exactly as `lilm discord` does
(`build_bot`), logs it in over real HTTP to the fake (which runs `setup_hook`: the cog and the
command sync) and yields a `DiscordBot` handle. The handle turns test actions into gateway
payloads for the bot's real `ConnectionState` parsers: a server appears (`GUILD_CREATE`),
someone writes (`MESSAGE_CREATE`), someone runs a slash command (`INTERACTION_CREATE`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from discord.http import Route

from bots.discord_bot import LilmBot, build_bot
from bots.discord_state import DiscordState
from core.settings import Settings, load_settings
from tests.fakes import discord_payloads as payloads
from tests.fakes.discord_api import FakeDiscord, StoredMessage

TOKEN = "MTIzNDU2Nzg5MDEyMzQ1Njc4.GaBcDe.Secret-Token_part-abcdefghijklmnopqrstuvwx"
SECRET_PART = TOKEN.rsplit(".", 1)[1]


def discord_settings(**env: str) -> Settings:
    """Settings for a bot on the fake; `env` overrides. Streaming starts at once unless a test
    sets DISCORD_STREAM_HOLD."""
    base = {"DISCORD_BOT_TOKEN": TOKEN, "DISCORD_STREAM_HOLD": "0", "DISCORD_EDIT_INTERVAL": "0.5"}
    return load_settings(env_file=None, environ={**base, **env})


@dataclass
class DiscordBot:
    """A logged-in bot, the fake it talks to, and helpers that play Discord's gateway."""

    bot: LilmBot
    fake: FakeDiscord
    ids: payloads.Ids = field(default_factory=payloads.Ids)

    @property
    def state(self) -> DiscordState:
        return self.bot.state

    def feed(self, event: str, data: dict[str, Any]) -> None:
        """One gateway dispatch, through the real parser."""
        self.bot._connection.parsers[event](data)

    def server(self, guild_id: int, *, channels=(), threads=(), roles=()) -> None:
        self.feed("GUILD_CREATE", payloads.guild_create(guild_id, channels=list(channels), threads=list(threads), roles=list(roles)))

    def say(self, channel_id: int, author: dict, text: str, *, guild_id: int | None = None, mention: bool = False, roles=()) -> dict:
        """Someone posts `text` (with `mention`, it @mentions the bot first)."""
        if mention:
            text = f"<@{payloads.BOT_ID}> {text}"
        mentions = [payloads.BOT_USER] if mention else []
        data = payloads.message_payload(self.ids(), channel_id, author, text, guild_id=guild_id, mentions=mentions, roles=list(roles))
        self.feed("MESSAGE_CREATE", data)
        return data

    def slash(self, name: str, options: dict, *, channel: dict, author: dict, guild_id: int | None = None, **member: Any) -> dict:
        """Someone runs `/name` with `options`; returns the interaction payload."""
        data = payloads.command_interaction(self.ids(), name, options, channel=channel, author=author, guild_id=guild_id, **member)
        self.feed("INTERACTION_CREATE", data)
        return data

    def idle(self) -> bool:
        state = self.state
        return not state.tasks and state.queue.running == 0 and state.queue.waiting == 0

    async def settled(self, timeout: float = 30.0) -> None:
        """Wait until the bot has been idle for 5 checks in a row."""
        streak = 0

        def quiet_long_enough() -> bool:
            nonlocal streak
            streak = streak + 1 if self.idle() else 0
            return streak >= 5

        state = self.state
        await self.fake.wait_for(quiet_long_enough, timeout, f"the bot to be idle ({len(state.tasks)} tasks, {state.queue.running} running)")

    async def answer(self, message: dict, timeout: float = 30.0) -> StoredMessage:
        """The bot's single reply to a message, once the bot has settled."""
        message_id = int(message["id"])
        await self.fake.wait_for(lambda: self.fake.replies_to(message_id), timeout, "a reply")
        await self.settled(timeout)
        replies = self.fake.replies_to(message_id)
        assert len(replies) == 1, [r.content for r in replies]
        return replies[0]

    async def response(self, interaction: dict, timeout: float = 30.0, *, settle: bool = True) -> list[StoredMessage]:
        """What a slash command showed (its response, then followups), once the bot settled
        (or, with `settle=False`, as soon as there is a response)."""
        await self.fake.wait_for(lambda: self.fake.for_interaction(interaction["token"]), timeout, "a response")
        if settle:
            await self.settled(timeout)
        return self.fake.for_interaction(interaction["token"])


@asynccontextmanager
async def running_discord_bot(fake: FakeDiscord, service, *, env: dict[str, str] | None = None, time=None) -> AsyncIterator[DiscordBot]:
    """Build the bot, log it in to `fake` (setup_hook syncs the commands there), yield it,
    close it. discord.py's REST base URL points at the fake for the duration."""
    from tests.bots.harness import VirtualTime

    time = time or VirtualTime()
    bot = build_bot(discord_settings(**(env or {})), service, sleep=time.sleep, clock=time.clock)
    original_base = Route.BASE
    Route.BASE = fake.base_url
    try:
        await bot.login(TOKEN)
        yield DiscordBot(bot, fake)
    finally:
        await bot.close()
        Route.BASE = original_base

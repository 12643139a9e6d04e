"""The Discord bot: mention it with a LIHKG link (or DM it one, or `/lihkg link:`), get a
LIHKG-style Cantonese reply.

`lilm discord` loads the model, builds the bot with `build_bot(settings, service)` and runs it
with `serve`. Handlers decide at once (so queue places follow arrival order) and hand anything
that talks to Discord to a task, so one slow channel never holds up the others.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import re
import signal
import sys
import time
from collections.abc import Coroutine
from typing import Any

import aiohttp
import discord
from discord import app_commands
from discord.ext import commands

from bots.access import AccessDenied, Busy
from bots.chat_text import (
    CANCELLED,
    NO_LINK_IN_COMMAND,
    NOTHING_TO_CANCEL,
    SHUTTING_DOWN,
    UNEXPECTED,
    help_text,
)
from bots.discord_reply import (
    NO_PINGS,
    InteractionTarget,
    LinkRequest,
    MessageTarget,
    answer_link,
)
from bots.discord_state import (
    DiscordState,
    DiscordUnavailable,
    Place,
    check_settings,
)
from bots.discord_text import escape
from bots.log_redaction import DEFAULT_PREFIXES, redact_logs
from bots.preferences import STYLES, SettingRejected
from bots.streaming import Clock, Sleep
from core.errors import ConfigError, LinkError
from core.links import ThreadLink, find_links
from core.reply import ReplyService
from core.runtime import open_reply_service
from core.settings import Settings

log = logging.getLogger(__name__)

MAX_RATELIMIT_WAIT = 30.0  # seconds discord.py itself waits on a 429; longer ones reach ThrottledEdits
ADMINS_ONLY = "伺服器設定只有管理員（Manage Server）可以改。"
LOG_PREFIXES = (*DEFAULT_PREFIXES, "discord", "aiohttp")
# discord.py logs webhook and interaction-callback URLs, whose path carries the interaction's token.
INTERACTION_TOKEN_IN_URL = re.compile(r"/(?:webhooks|interactions)/\d+/([A-Za-z0-9_.\-]+)")


class LilmBot(commands.Bot):
    """The bot with its shared state passed in; app commands are added and synced in setup_hook."""

    def __init__(self, state: DiscordState, *, intents: discord.Intents) -> None:
        super().__init__(
            command_prefix=commands.when_mentioned,  # no prefix commands; slash commands instead
            intents=intents,
            help_command=None,
            allowed_mentions=NO_PINGS,
            max_ratelimit_timeout=MAX_RATELIMIT_WAIT,
            chunk_guilds_at_startup=False,
        )
        self.state = state
        self._undo_redaction = redact_logs(
            [state.settings.discord_bot_token.strip()], prefixes=LOG_PREFIXES, patterns=[INTERACTION_TOKEN_IN_URL]
        )

    async def setup_hook(self) -> None:
        """Register the slash commands and publish them (to DISCORD_DEV_GUILD only, if set)."""
        await self.add_cog(LihkgCommands(self))
        self.tree.on_error = self.on_app_command_error
        dev_guild = self.state.settings.discord_dev_guild.strip()
        try:
            if dev_guild:
                guild = discord.Object(int(dev_guild))
                self.tree.copy_global_to(guild=guild)
                synced = await self.tree.sync(guild=guild)
            else:
                synced = await self.tree.sync()
            log.info("published %d slash commands%s", len(synced), f" to server {dev_guild}" if dev_guild else "")
        except discord.HTTPException as error:
            log.warning("could not publish the slash commands: %s", error.status)

    async def on_ready(self) -> None:
        log.info("Discord bot %s ready in %d servers; message-content intent: %s", self.user, len(self.guilds), self.intents.message_content)

    async def on_message(self, message: discord.Message) -> None:
        """A LIHKG link in a DM, in a message that mentions the bot, or anywhere in an
        auto-link channel (with the message-content intent)."""
        if message.author.bot or self.user is None:
            return
        place = place_of_message(message)
        addressed = place.private or any(user.id == self.user.id for user in message.mentions)
        links = find_links(message.content)
        if links and (addressed or self.state.answers_every_link(place)):
            self.take_request(MessageTarget(message), links, place, addressed=addressed)
        elif addressed and self.state.allows(place):
            self.tell(message, LinkError.user_message)

    def take_request(self, target: MessageTarget | InteractionTarget, links: list[ThreadLink], place: Place, *, addressed: bool) -> None:
        """Admit the request now (queue order = arrival order); the answer runs as a task."""
        state = self.state
        if not state.allows(place):
            if addressed:
                self.answer_line(target, place, AccessDenied.line_for(place.user_id))
            return
        try:
            ticket = state.admit(place.user_id)
        except Busy as refusal:
            self.answer_line(target, place, refusal.user_message)
            return
        self.spawn(answer_link(state, LinkRequest(target, links[0], place, more_links=len(links) > 1), ticket))

    def answer_line(self, target: MessageTarget | InteractionTarget, place: Place, line: str) -> None:
        """One short line as the answer; to a message only if this user was not told much just now."""
        if isinstance(target, InteractionTarget) or self.state.may_notify(place.user_id):
            self.spawn(_quietly(target.put(escape(line))))

    def tell(self, message: discord.Message, line: str) -> None:
        self.answer_line(MessageTarget(message), place_of_message(message), line)

    def spawn(self, coroutine: Coroutine[Any, Any, Any]) -> None:
        """Run `coroutine` as a task the state keeps (shutdown waits for these)."""
        task = asyncio.create_task(coroutine)
        self.state.tasks.add(task)
        task.add_done_callback(self.state.tasks.discard)

    async def on_app_command_error(self, interaction: discord.Interaction, error: app_commands.AppCommandError) -> None:
        """Log one line, tell the user one line (never the details)."""
        log.error("slash command %s failed: %s", interaction.command.name if interaction.command else "-", type(error).__name__)
        with contextlib.suppress(discord.HTTPException):
            if interaction.response.is_done():
                await interaction.followup.send(UNEXPECTED, ephemeral=True)
            else:
                await interaction.response.send_message(UNEXPECTED, ephemeral=True)

    async def on_error(self, event_method: str, /, *args: Any, **kwargs: Any) -> None:
        error = sys.exc_info()[1]
        log.error("handling %s failed: %s", event_method, type(error).__name__ if error else "-")

    async def close(self) -> None:
        self.state.queue.cancel_all(SHUTTING_DOWN)  # requests still waiting or running end politely
        pending = list(self.state.tasks)
        if pending:
            await asyncio.wait(pending, timeout=10)
        await super().close()
        self._undo_redaction()


class LihkgCommands(commands.Cog):
    """The slash commands: /lihkg, /settings, /cancel, /help."""

    def __init__(self, bot: LilmBot) -> None:
        self.bot = bot
        self.state = bot.state

    @app_commands.command(name="lihkg", description="回覆一條 LIHKG 連結")
    @app_commands.describe(link="LIHKG 帖文連結，例如 https://lih.kg/3699748")
    async def lihkg(self, interaction: discord.Interaction, link: str) -> None:
        """/lihkg link:<url>: deferred at once, so Discord's 3-second limit never bites."""
        await interaction.response.defer(thinking=True)
        target, place = InteractionTarget(interaction), place_of_interaction(interaction)
        links = find_links(link)
        if not links:
            self.bot.answer_line(target, place, NO_LINK_IN_COMMAND.replace("/lihkg ", "/lihkg link:"))
            return
        self.bot.take_request(target, links, place, addressed=True)

    @app_commands.command(name="settings", description="呢個伺服器嘅設定（候選數量、溫度、風格）")
    @app_commands.describe(candidates="候選數量", temperature="溫度，越高越亂噏", style="回覆風格", reset="還原預設")
    @app_commands.choices(style=[app_commands.Choice(name=s.label, value=s.key) for s in STYLES])
    @app_commands.default_permissions(manage_guild=True)
    async def settings(
        self,
        interaction: discord.Interaction,
        candidates: app_commands.Range[int, 1, 8] | None = None,
        temperature: app_commands.Range[float, 0.0, 1.5] | None = None,
        style: str | None = None,
        reset: bool = False,
    ) -> None:
        """Show this server's settings; server admins (Manage Server) change them."""
        place, prefs = place_of_interaction(interaction), self.state.prefs
        changes = {"candidates": candidates, "temperature": temperature, "style": style}
        changes = {key: value for key, value in changes.items() if value is not None}
        if not self.state.allows(place):
            await interaction.response.send_message(AccessDenied.line_for(place.user_id), ephemeral=True)
            return
        if (changes or reset) and not self._may_change_settings(interaction):
            await interaction.response.send_message(ADMINS_ONLY, ephemeral=True)
            return
        try:
            current = prefs.reset(place.prefs_key) if reset else prefs.get(place.prefs_key)
            for key, value in changes.items():
                current = prefs.change(place.prefs_key, key, str(value))
        except SettingRejected as error:
            await interaction.response.send_message(error.user_message, ephemeral=True)
            return
        where = "呢個對話" if place.private else "呢個伺服器"
        text = current.describe(prefs.max_candidates, usage="/settings {}:{}", where=where)
        await interaction.response.send_message(escape(text), ephemeral=True)

    @app_commands.command(name="cancel", description="取消你做緊嘅請求")
    async def cancel(self, interaction: discord.Interaction) -> None:
        cancelled = self.state.queue.cancel(interaction.user.id, CANCELLED)
        await interaction.response.send_message(CANCELLED if cancelled else NOTHING_TO_CANCEL, ephemeral=True)

    @app_commands.command(name="help", description="點樣用")
    async def help(self, interaction: discord.Interaction) -> None:
        text = help_text(group=interaction.guild_id is not None)
        await interaction.response.send_message(escape(text), ephemeral=True)

    def _may_change_settings(self, interaction: discord.Interaction) -> bool:
        if interaction.guild_id is None or self.state.policy.is_admin(interaction.user.id):
            return True
        return interaction.permissions.manage_guild


def place_of_message(message: discord.Message) -> Place:
    channel = message.channel
    return Place(
        user_id=message.author.id,
        channel_id=channel.id,
        guild_id=message.guild.id if message.guild is not None else None,
        parent_id=getattr(channel, "parent_id", None),
        roles=tuple(role.id for role in getattr(message.author, "roles", ())),
    )


def place_of_interaction(interaction: discord.Interaction) -> Place:
    channel = interaction.channel
    return Place(
        user_id=interaction.user.id,
        channel_id=interaction.channel_id or 0,
        guild_id=interaction.guild_id,
        parent_id=getattr(channel, "parent_id", None),
        roles=tuple(role.id for role in getattr(interaction.user, "roles", ())),
    )


async def _quietly(call: Coroutine[Any, Any, Any]) -> None:
    try:
        await call
    except discord.HTTPException as error:
        log.info("could not send a line: %s %s", error.status, error.code)


def build_bot(settings: Settings, service: ReplyService, *, sleep: Sleep = asyncio.sleep, clock: Clock = time.monotonic) -> LilmBot:
    """The bot with its state; `serve` runs it. `sleep`/`clock` are for tests."""
    state = DiscordState.from_settings(settings, service, sleep=sleep, clock=clock)
    intents = discord.Intents.default()
    intents.message_content = settings.discord_message_content
    return LilmBot(state, intents=intents)


async def serve(bot: LilmBot, stop: asyncio.Event) -> None:
    """Log in, connect to the gateway and answer until `stop` is set or the connection ends."""
    token = bot.state.settings.discord_bot_token.strip()
    try:
        async with bot:
            runner = asyncio.create_task(bot.start(token))
            stopper = asyncio.create_task(stop.wait())
            await asyncio.wait({runner, stopper}, return_when=asyncio.FIRST_COMPLETED)
            stopper.cancel()
            if runner.done():
                runner.result()
            await bot.close()
            await runner
    except discord.LoginFailure:
        raise ConfigError("DISCORD_BOT_TOKEN was rejected by Discord: reset it in the Developer Portal") from None
    except discord.PrivilegedIntentsRequired:
        raise ConfigError(
            "DISCORD_MESSAGE_CONTENT=1 needs the Message Content Intent: Developer Portal -> your app -> Bot -> turn it on"
        ) from None
    except (aiohttp.ClientError, OSError) as error:
        raise DiscordUnavailable(f"cannot reach Discord: {type(error).__name__}") from None


async def run_discord(args: argparse.Namespace, settings: Settings) -> int:
    """`lilm discord`: check settings, load the model, answer Discord until Ctrl-C/SIGTERM."""
    if getattr(args, "dev_guild", None):
        settings = dataclasses.replace(settings, discord_dev_guild=str(args.dev_guild))
    check_settings(settings)  # before the (possibly slow) model load
    stop = _set_on_signals(asyncio.Event())
    async with open_reply_service(settings) as service:
        await serve(build_bot(settings, service), stop)
    return 0


def _set_on_signals(event: asyncio.Event) -> asyncio.Event:
    """`event`, set by Ctrl-C or SIGTERM (where the platform lets us handle them)."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            asyncio.get_running_loop().add_signal_handler(signum, event.set)
    return event

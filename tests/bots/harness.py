"""Running the real Telegram bot against the fake Bot API and the fake LIHKG server.

`running_bot(api, service, env=...)` builds the application exactly as `lilm telegram` does
(`build_application` + `serve`, long polling the fake) and yields a `Bot` handle with the
fake, the application's shared state and the virtual time the bot waits in.
"""

from __future__ import annotations

import asyncio
import time as time_module
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from telegram.ext import Application

from bots.telegram_bot import build_application, serve
from bots.telegram_state import STATE_KEY, BotState
from core.settings import Settings, load_settings
from tests.fakes.scripted_backend import ScriptedBackend
from tests.fakes.telegram_api import FakeBotApi, SentMessage

TOKEN = "123456789:TEST-secret_token-abcdefghijklmnopqrst"
SECRET_PART = TOKEN.split(":", 1)[1]


class VirtualTime:
    """The bot's clock and sleep: sleeping moves the clock at once and is recorded."""

    def __init__(self) -> None:
        self.now = 1_000.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += max(0.0, seconds)
        await asyncio.sleep(0)

    def advance(self, seconds: float) -> None:
        self.now += seconds


class RealTime(VirtualTime):
    """Real waiting (for soaks, where instant virtual waits would turn off all throttling)."""

    def clock(self) -> float:
        return time_module.monotonic()

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        await asyncio.sleep(seconds)


@dataclass
class GatedBackend(ScriptedBackend):
    """A scripted model that waits for `gate` before producing anything; counts started
    and finished (or cancelled) generations."""

    gate: asyncio.Event = field(default_factory=asyncio.Event)
    started: int = 0
    finished: int = 0

    async def stream(self, messages, params):
        self.started += 1
        try:
            await self.gate.wait()
            async for piece in super().stream(messages, params):
                yield piece
        finally:
            self.finished += 1


def telegram_settings(api: FakeBotApi, **env: str) -> Settings:
    """Settings for a bot talking to `api`; `env` overrides (TELEGRAM_RATE_LIMIT="1", ...).
    Streaming by edits starts at once unless a test sets TELEGRAM_STREAM_HOLD."""
    base = {"TELEGRAM_BOT_TOKEN": api.token, "TELEGRAM_BASE_URL": api.base_url, "TELEGRAM_STREAM_HOLD": "0"}
    return load_settings(env_file=None, environ={**base, **env})


@dataclass
class Bot:
    """A running bot: the fake it talks to, its application and state, its virtual time."""

    api: FakeBotApi
    application: Application
    time: VirtualTime

    @property
    def state(self) -> BotState:
        return self.application.bot_data[STATE_KEY]

    def idle(self) -> bool:
        """No update waiting, nothing queued or running, no answer being sent."""
        state = self.state
        return (
            self.api.pending_updates == 0
            and self.application.update_queue.empty()
            and not state.tasks
            and state.queue.running == 0
            and state.queue.waiting == 0
        )

    async def settled(self, timeout: float = 30.0) -> None:
        """Wait until the bot has been idle for several checks in a row."""
        quiet = 0
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while quiet < 5:
            quiet = quiet + 1 if self.idle() else 0
            if loop.time() > deadline:
                raise TimeoutError(f"bot not idle: {self.api.pending_updates} updates, {len(self.state.tasks)} tasks")
            await asyncio.sleep(0.01)

    async def first_reply(self, message: dict, timeout: float = 30.0) -> SentMessage:
        """The bot's first reply to a user's message, as soon as it exists."""
        chat_id = message["chat"]["id"]
        replies = await self.api.wait_for(lambda: self.api.replies_to(chat_id, message["message_id"]), timeout, "a reply")
        return replies[0]

    async def answer(self, message: dict, timeout: float = 30.0) -> SentMessage:
        """The bot's (single) reply to a user's message, once the bot has settled."""
        chat_id = message["chat"]["id"]
        await self.api.wait_for(lambda: self.api.replies_to(chat_id, message["message_id"]), timeout, "a reply")
        await self.settled(timeout)
        replies = self.api.replies_to(chat_id, message["message_id"])
        assert len(replies) == 1, [r.text for r in replies]
        return replies[0]


@asynccontextmanager
async def running_bot(api: FakeBotApi, service, *, env: dict[str, str] | None = None, time: VirtualTime | None = None) -> AsyncIterator[Bot]:
    """Build and serve the bot until the block ends; startup errors are raised here."""
    time = time or VirtualTime()
    application = build_application(telegram_settings(api, **(env or {})), service, sleep=time.sleep, clock=time.clock)
    stop = asyncio.Event()
    task = asyncio.create_task(serve(application, stop, poll_timeout=1.0))
    await api.wait_for(lambda: task.done() or (application.running and application.updater.running), 20, "the bot to start")
    if task.done():
        task.result()
    try:
        yield Bot(api, application, time)
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)

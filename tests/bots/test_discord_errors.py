"""Failures through the real Discord bot: every one is one short Cantonese line in the chat,
one line in the log, and never the token; edits stay throttled through Discord's 429s."""

import itertools
import logging

import pytest

from bots.chat_text import UNEXPECTED
from bots.discord_text import escape
from core.errors import (
    LihkgBadResponse,
    LihkgBlocked,
    LihkgRateLimited,
    ModelError,
    ThreadNotFound,
)
from tests.bots.conftest import SHOWN_REPLY, THREAD_ID, make_service
from tests.bots.harness import VirtualTime
from tests.fakes import discord_payloads as p
from tests.fakes.discord_api import FakeDiscord, Fault
from tests.fakes.discord_harness import SECRET_PART, TOKEN, running_discord_bot
from tests.fakes.lihkg_server import Scenario
from tests.fakes.scripted_backend import ScriptedBackend

pytestmark = pytest.mark.timeout(60)

ANN, BOB = p.user(1, "Ann"), p.user(2, "Bob")
LINK = f"https://lih.kg/{THREAD_ID}"
GUILD, CHANNEL = 10, 11


@pytest.fixture
async def fake():
    async with FakeDiscord(token=TOKEN) as server:
        yield server


@pytest.mark.parametrize(
    "scenario, error",
    [
        (Scenario.not_found(), ThreadNotFound),
        (Scenario.forbidden(), LihkgBlocked),
        (Scenario.rate_limited(retry_after="1"), LihkgRateLimited),
        (Scenario.malformed_json(), LihkgBadResponse),
    ],
    ids=["gone", "blocked", "lihkg-429", "malformed"],
)
async def test_lihkg_failures_are_one_cantonese_line(fake, service, backend, threads, scenario, error):
    threads.set_scenario(scenario)
    async with running_discord_bot(fake, service) as bot:
        reply = await bot.answer(bot.say(77, ANN, LINK))
        interaction = bot.slash("lihkg", {"link": LINK}, channel={"id": "78", "type": p.DM}, author=BOB)
        shown = await bot.response(interaction)
    assert reply.content == escape(error.user_message)
    assert [m.content for m in shown] == [escape(error.user_message)]
    assert backend.calls == []


@pytest.mark.parametrize(
    "failure, line",
    [(ModelError("weights missing at /secret/path"), ModelError.user_message), (RuntimeError("boom at /secret/path"), UNEXPECTED)],
    ids=["model-error", "bug"],
)
async def test_model_failures_show_no_internals(fake, lihkg, masker, failure, line):
    backend = ScriptedBackend(["冇用"], fail_with=failure)
    async with running_discord_bot(fake, make_service(backend, lihkg, masker)) as bot:
        reply = await bot.answer(bot.say(77, ANN, LINK))
    assert reply.content == escape(line) and "secret" not in reply.content


async def test_the_token_never_reaches_the_log(fake, lihkg, masker, caplog):
    caplog.set_level(logging.DEBUG)
    backend = ScriptedBackend(["冇用"], fail_with=RuntimeError(f"boom with {TOKEN} inside"))
    fake.inject(Fault.rate_limited("PATCH", "/webhooks/", 0.01))  # discord.py logs the URL, token and all
    async with running_discord_bot(fake, make_service(backend, lihkg, masker)) as bot:
        reply = await bot.answer(bot.say(77, ANN, LINK))
        interaction = bot.slash("lihkg", {"link": LINK}, channel={"id": "78", "type": p.DM}, author=BOB)
        shown = await bot.response(interaction)
        bot.slash("nonexistent", {}, channel={"id": "79", "type": p.DM}, author=BOB)
        await bot.settled()
    assert reply.content == escape(UNEXPECTED) and shown[0].content == escape(UNEXPECTED)
    assert "rate limited" in caplog.text and interaction["token"] not in caplog.text
    assert "[redacted]" in caplog.text  # the failure's text did carry the token, and was scrubbed
    assert TOKEN not in caplog.text and SECRET_PART not in caplog.text
    assert "Traceback" not in "\n".join(r.getMessage() for r in caplog.records if r.levelno >= logging.INFO)
    assert fake.bad_auth == 0


async def test_edits_are_throttled_one_at_a_time_through_429s(fake, lihkg, masker):
    time = VirtualTime()
    fake.clock = time.clock
    fake.inject(Fault.rate_limited("PATCH", r"/channels/\d+/messages/\d+", 0.05, times=3))  # discord.py waits these out
    fake.inject(Fault.rate_limited("PATCH", r"/channels/\d+/messages/\d+", 45.0, times=1))  # too long: RateLimited
    backend = ScriptedBackend(["一二三四五六七八九十" * 8], chunk=2, delay=0.02)
    env = {"DISCORD_EDIT_INTERVAL": "1.5"}
    async with running_discord_bot(fake, make_service(backend, lihkg, masker), env=env, time=time) as bot:
        reply = await bot.answer(bot.say(77, ANN, LINK))
    assert reply.content.endswith("一二三四五六七八九十" * 8)  # the final text always arrives
    assert fake.max_edits_in_flight == 1
    done = [c.started for c in fake.calls_to("PATCH", "/messages/") if c.status == 200]
    assert len(done) >= 2 and all(later - earlier >= 1.5 for earlier, later in itertools.pairwise(done))
    assert any(seconds >= 44 for seconds in time.slept)  # the long retry_after was honoured
    assert len([c for c in fake.calls if c.status == 429]) == 4


async def test_a_deleted_reply_is_sent_again_and_a_closed_channel_stops_quietly(fake, service):
    fake.inject(Fault.not_found("PATCH", r"/channels/77/messages/\d+"))
    fake.inject(Fault.forbidden("POST", r"/channels/88/messages"))
    async with running_discord_bot(fake, service) as bot:
        message = bot.say(77, ANN, LINK)
        closed = bot.say(88, BOB, LINK)
        await bot.settled()
        later = await bot.answer(bot.say(89, BOB, LINK))
    assert [m.content for m in fake.replies_to(int(message["id"]))][-1].endswith(SHOWN_REPLY)
    assert fake.replies_to(int(closed["id"])) == [] and len(fake.calls_to("POST", "/channels/88/messages")) == 1
    assert later.content.endswith(SHOWN_REPLY)


async def test_a_message_without_guild_roles_or_text_is_ignored_safely(fake, service):
    async with running_discord_bot(fake, service) as bot:
        bot.server(GUILD, channels=[p.channel(CHANNEL, GUILD)])
        by_bot = bot.say(CHANNEL, p.user(3, "other bot", bot=True), LINK, guild_id=GUILD, mention=True)
        empty = bot.say(CHANNEL, ANN, "", guild_id=GUILD)
        await bot.settled()
    assert fake.replies_to(int(by_bot["id"])) == [] and fake.replies_to(int(empty["id"])) == []

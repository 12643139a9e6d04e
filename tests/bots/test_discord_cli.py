"""`lilm discord` as an operator meets it: the subcommand, settings checks, a rejected token,
and the real tiny model end to end."""

import argparse
import asyncio
import dataclasses
from pathlib import Path

import pytest
from discord.http import Route

from bots.discord_bot import build_bot, run_discord, serve
from bots.discord_state import check_settings
from core.errors import ConfigError
from core.runtime import open_reply_service
from core.settings import load_settings
from lilm.cli import build_parser
from tests.bots.conftest import SHOWN_TITLE, THREAD_ID
from tests.fakes import discord_payloads as p
from tests.fakes.discord_api import FakeDiscord
from tests.fakes.discord_harness import TOKEN, discord_settings, running_discord_bot

ROOT = Path(__file__).resolve().parents[2]
MODEL_DIR = ROOT / "model" / "lilm-tiny"


@pytest.fixture
async def fake():
    async with FakeDiscord(token=TOKEN) as server:
        yield server


def test_the_subcommand_takes_a_dev_guild():
    args = build_parser().parse_args(["discord", "--dev-guild", "4242"])
    assert args.dev_guild == 4242 and args.run.__name__ == "_run_discord"


async def test_a_missing_token_fails_before_any_model_loads(tmp_path):
    settings = load_settings(env_file=None, environ={"LILM_MODEL": str(tmp_path / "no-such-model")})
    with pytest.raises(ConfigError, match="DISCORD_BOT_TOKEN is empty"):
        await run_discord(argparse.Namespace(dev_guild=None), settings)


@pytest.mark.parametrize(
    "env, fragment",
    [
        ({"DISCORD_BOT_TOKEN": "not a token"}, "does not look like"),
        ({"DISCORD_ALLOWED_ROLES": "admins"}, "DISCORD_ALLOWED_ROLES"),
        ({"DISCORD_AUTO_LINK_CHANNELS": "5"}, "DISCORD_MESSAGE_CONTENT=1"),
        ({"DISCORD_MAX_CANDIDATES": "9"}, "DISCORD_MAX_CANDIDATES"),
        ({"DISCORD_DEV_GUILD": "my server"}, "DISCORD_DEV_GUILD"),
    ],
)
def test_bad_settings_name_the_variable(env, fragment):
    with pytest.raises(ConfigError, match=fragment):
        check_settings(discord_settings(**env))


async def test_a_rejected_token_is_one_config_error_naming_the_setting(fake, service):
    settings = dataclasses.replace(discord_settings(), discord_bot_token="MTIz.AbCdEf.wrong-token")
    bot = build_bot(settings, service)
    original, Route.BASE = Route.BASE, fake.base_url
    try:
        with pytest.raises(ConfigError, match="DISCORD_BOT_TOKEN was rejected"):
            await serve(bot, asyncio.Event())
    finally:
        Route.BASE = original
    assert fake.bad_auth == 1


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.skipif(not (MODEL_DIR / "model.safetensors").is_file(), reason="model/lilm-tiny is not built")
async def test_the_tiny_model_answers_a_mention_end_to_end(fake, threads, tmp_path):
    environ = {"LIHKG_BASE_URL": threads.base_url, "LIHKG_RETRIES": "0", "LILM_STATE_DIR": str(tmp_path), "LILM_MAX_TOKENS": "40"}
    async with (
        open_reply_service(load_settings(env_file=None, environ=environ)) as service,
        running_discord_bot(fake, service, env={"DISCORD_EDIT_INTERVAL": "0.3"}) as bot,
    ):
        bot.server(10, channels=[p.channel(11, 10)])
        reply = await bot.answer(bot.say(11, p.user(1, "Ann"), f"https://lih.kg/{THREAD_ID}", guild_id=10, mention=True), timeout=240)
        interaction = bot.slash("lihkg", {"link": "https://lih.kg/100"}, channel=p.channel(11, 10), author=p.user(2, "Bob"), guild_id=10)
        shown = await bot.response(interaction, timeout=240)
    header, _, text = reply.content.partition("\n\n")
    assert "時事台" in header and SHOWN_TITLE.split("<")[0] in header
    assert text.strip() and not text.endswith(" …")
    assert "今晚食咩好" in shown[0].content and not shown[0].content.endswith(" …")

"""The Discord bot through the real discord.py stack: raw gateway payloads in, real HTTP out
to a fake REST API on loopback, the fake LIHKG server behind the reply service."""

import pytest

from bots.chat_text import EMPTY_REPLY
from bots.discord_text import escape
from core.errors import LinkError
from tests.bots.conftest import SHOWN_REPLY, SHOWN_TITLE, THREAD_ID
from tests.fakes import discord_payloads as p
from tests.fakes.discord_api import FakeDiscord
from tests.fakes.discord_harness import TOKEN, running_discord_bot

pytestmark = pytest.mark.timeout(60)

GUILD, CHANNEL, FORUM, POST, THREAD = 10, 11, 12, 13, 14
ANN, BOB = p.user(1, "Ann"), p.user(2, "Bob")
LINK = f"https://lihkg.com/thread/{THREAD_ID}/page/1"


@pytest.fixture
async def fake():
    async with FakeDiscord(token=TOKEN) as server:
        yield server


def add_server(bot, **kwargs):
    channels = [p.channel(CHANNEL, GUILD), p.channel(FORUM, GUILD, "forum", kind=p.FORUM)]
    threads = [p.thread(POST, GUILD, FORUM, "forum post"), p.thread(THREAD, GUILD, CHANNEL, "a thread")]
    bot.server(GUILD, channels=channels, threads=threads, **kwargs)


async def test_login_publishes_the_slash_commands(fake, service):
    async with running_discord_bot(fake, service):
        pass
    assert {c["name"] for c in fake.synced} == {"lihkg", "settings", "cancel", "help"}
    assert fake.sync_paths == [f"/applications/{p.APP_ID}/commands"]
    settings = next(c for c in fake.synced if c["name"] == "settings")
    assert int(settings["default_member_permissions"]) == p.MANAGE_GUILD


async def test_dev_guild_gets_the_commands_instead(fake, service):
    async with running_discord_bot(fake, service, env={"DISCORD_DEV_GUILD": "4242"}):
        pass
    assert fake.sync_paths == [f"/applications/{p.APP_ID}/guilds/4242/commands"]


async def test_a_mention_with_a_link_gets_a_reply_that_pings_nobody(fake, service):
    async with running_discord_bot(fake, service) as bot:
        add_server(bot)
        message = bot.say(CHANNEL, ANN, f"睇下 {LINK}", guild_id=GUILD, mention=True)
        reply = await bot.answer(message)
    assert reply.content.startswith("**【時事台】**[**")
    assert SHOWN_TITLE.replace("<", "\\<").replace(">", "\\>") in reply.content
    assert reply.content.endswith(SHOWN_REPLY)
    assert f"(<{LINK}>)" in reply.content  # the title links to the thread, with no embed
    sent = fake.calls_to("POST", f"/channels/{CHANNEL}/messages")[0]
    assert sent.body["allowed_mentions"] == {"parse": [], "replied_user": False}
    assert all(c.body["allowed_mentions"] == {"parse": []} for c in fake.calls_to("PATCH", "/messages/"))
    assert sent.body["message_reference"]["fail_if_not_exists"] is False
    assert sent.body["flags"] & 4  # SUPPRESS_EMBEDS
    assert fake.calls_to("POST", f"/channels/{CHANNEL}/typing")


async def test_without_a_mention_links_are_left_alone_and_a_bare_mention_gets_a_hint(fake, service):
    async with running_discord_bot(fake, service) as bot:
        add_server(bot)
        ignored = bot.say(CHANNEL, ANN, LINK, guild_id=GUILD)
        hinted = bot.say(CHANNEL, BOB, "你好", guild_id=GUILD, mention=True)
        reply = await bot.answer(hinted)
    assert reply.content == escape(LinkError.user_message)
    assert fake.replies_to(int(ignored["id"])) == []


async def test_a_dm_with_a_link_is_answered(fake, service):
    async with running_discord_bot(fake, service) as bot:
        message = bot.say(77, ANN, f"https://lih.kg/{THREAD_ID}")
        reply = await bot.answer(message)
    assert reply.channel_id == 77 and SHOWN_REPLY in reply.content


@pytest.mark.parametrize("where", [POST, THREAD], ids=["forum post", "thread"])
async def test_threads_and_forum_posts_are_answered_in_place(fake, service, where):
    async with running_discord_bot(fake, service, env={"DISCORD_ALLOWED_CHANNELS": f"{CHANNEL},{FORUM}"}) as bot:
        add_server(bot)
        message = bot.say(where, ANN, LINK, guild_id=GUILD, mention=True)
        reply = await bot.answer(message)
    assert reply.channel_id == where and SHOWN_REPLY in reply.content


async def test_slash_command_defers_first_then_shows_the_reply(fake, service):
    async with running_discord_bot(fake, service) as bot:
        add_server(bot)
        interaction = bot.slash("lihkg", {"link": LINK}, channel=p.channel(CHANNEL, GUILD), author=ANN, guild_id=GUILD)
        shown = await bot.response(interaction)
    calls = [c for c in fake.calls if interaction["token"] in c.path]
    assert calls[0].path.endswith("/callback") and calls[0].body["type"] == 5  # deferred, "thinking…"
    assert all(c.method == "PATCH" for c in calls[1:])
    assert len(shown) == 1 and shown[0].content.endswith(SHOWN_REPLY)
    assert shown[0].allowed_mentions == {"parse": []}


async def test_slash_command_without_a_link_says_how(fake, service):
    async with running_discord_bot(fake, service) as bot:
        interaction = bot.slash("lihkg", {"link": "hello"}, channel={"id": "88", "type": p.DM}, author=ANN)
        shown = await bot.response(interaction)
    assert "/lihkg link\\:" in shown[0].content


async def test_generated_mentions_never_ping_and_show_broken(fake, lihkg, masker, backend):
    backend.replies = ["@everyone 快啲睇 <@123456789012345678> @here"]
    from tests.bots.conftest import make_service

    async with running_discord_bot(fake, make_service(backend, lihkg, masker)) as bot:
        reply = await bot.answer(bot.say(77, ANN, LINK))
    text = reply.content.split("\n\n", 1)[1]
    assert "@\u200beveryone" in text and "@\u200bhere" in text and "@\u200b123456789012345678" in text
    assert "@everyone" not in reply.content and "<@1" not in reply.content
    assert all(c.body.get("allowed_mentions", {}).get("parse") == [] for c in fake.calls if c.method in ("POST", "PATCH") and "content" in c.body)


async def test_a_long_reply_is_split_into_clean_messages(fake, lihkg, masker, backend):
    backend.replies = ["呢個真係好長嘅回覆，" * 150 + "完。\n\n" + "第二段好正。" * 400]
    backend.chunk = 400
    from tests.bots.conftest import make_service

    async with running_discord_bot(fake, make_service(backend, lihkg, masker)) as bot:
        message = bot.say(77, ANN, LINK)
        await bot.answer(message)
    first = fake.replies_to(int(message["id"]))[0]
    pieces = [m for m in fake.in_channel(77)]
    assert pieces[0] is first and len(pieces) == 3
    assert all(len(m.content.encode("utf-16-le")) // 2 <= 2000 for m in pieces)
    assert pieces[0].content.endswith("完。") and pieces[1].content.startswith("第二段")
    assert pieces[1].content.endswith("。") and pieces[2].content.startswith("第二段")  # cut between sentences
    joined = "".join(m.content for m in pieces)
    assert joined.count("好正") == 400 and EMPTY_REPLY not in joined

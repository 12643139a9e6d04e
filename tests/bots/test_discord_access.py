"""Access and fairness through the real Discord bot: allow-lists of servers, channels, roles
and users; the rate limit; one request per user; queue places; /cancel; /settings."""

import pytest

from bots.access import AlreadyQueued, QueueFull
from bots.chat_text import CANCELLED, NOTHING_TO_CANCEL, queue_position
from bots.discord_bot import ADMINS_ONLY
from bots.discord_text import escape
from tests.bots.conftest import SHOWN_REPLY, make_service
from tests.bots.harness import GatedBackend
from tests.fakes import discord_payloads as p
from tests.fakes.discord_api import FakeDiscord
from tests.fakes.discord_harness import TOKEN, running_discord_bot

pytestmark = pytest.mark.timeout(60)

GUILD, OTHER_GUILD, CHANNEL, OTHER_CHANNEL, THREAD = 10, 20, 11, 12, 13
MEMBERS = 500
ANN, BOB, CAT, BOSS = p.user(1, "Ann"), p.user(2, "Bob"), p.user(3, "Cat"), p.user(9, "Boss")
LINK = "https://lih.kg/3699748"


@pytest.fixture
async def fake():
    async with FakeDiscord(token=TOKEN) as server:
        yield server


def servers(bot):
    bot.server(
        GUILD,
        channels=[p.channel(CHANNEL, GUILD), p.channel(OTHER_CHANNEL, GUILD, "other")],
        threads=[p.thread(THREAD, GUILD, CHANNEL)],
        roles=[p.role(MEMBERS, "members")],
    )
    bot.server(OTHER_GUILD, channels=[p.channel(21, OTHER_GUILD)])


async def ask(bot, channel_id, author, *, guild_id=GUILD, roles=(), text=LINK):
    return await bot.answer(bot.say(channel_id, author, text, guild_id=guild_id, mention=guild_id is not None, roles=roles))


async def test_server_and_channel_lists_with_threads_counting_as_their_channel(fake, service, backend):
    env = {"DISCORD_ALLOWED_GUILDS": str(GUILD), "DISCORD_ALLOWED_CHANNELS": str(CHANNEL)}
    async with running_discord_bot(fake, service, env=env) as bot:
        servers(bot)
        listed = await ask(bot, CHANNEL, ANN)
        in_thread = await ask(bot, THREAD, ANN)
        other_channel = await ask(bot, OTHER_CHANNEL, ANN)
        other_guild = await ask(bot, 21, ANN, guild_id=OTHER_GUILD)
    assert listed.content.endswith(SHOWN_REPLY) and in_thread.content.endswith(SHOWN_REPLY)
    assert "未開放" in other_channel.content and "未開放" in other_guild.content
    assert len(backend.calls) == 2


async def test_users_or_role_holders_and_admins_anywhere(fake, service, backend, threads):
    env = {"DISCORD_ALLOWED_USERS": "2", "DISCORD_ALLOWED_ROLES": str(MEMBERS), "DISCORD_ADMIN_IDS": "9", "DISCORD_ALLOWED_GUILDS": str(GUILD)}
    async with running_discord_bot(fake, service, env=env) as bot:
        servers(bot)
        by_role = await ask(bot, CHANNEL, ANN, roles=[MEMBERS])
        by_user = await ask(bot, CHANNEL, BOB)
        refused = await ask(bot, CHANNEL, CAT)
        boss_elsewhere = await ask(bot, 21, BOSS, guild_id=OTHER_GUILD)
        cat_dm = await ask(bot, 77, CAT, guild_id=None)
        bob_dm = await ask(bot, 78, BOB, guild_id=None)
    assert all(r.content.endswith(SHOWN_REPLY) for r in (by_role, by_user, boss_elsewhere, bob_dm))
    assert "未開放" in refused.content and "3" in refused.content and "未開放" in cat_dm.content
    assert len(backend.calls) == 4 and len(threads.requests) <= 4  # nothing fetched for Cat


async def test_dms_can_be_turned_off_and_strangers_links_get_no_answer(fake, service):
    env = {"DISCORD_ALLOW_DMS": "0", "DISCORD_MESSAGE_CONTENT": "1", "DISCORD_AUTO_LINK_CHANNELS": str(CHANNEL), "DISCORD_ALLOWED_USERS": "2"}
    async with running_discord_bot(fake, service, env=env) as bot:
        servers(bot)
        dm = await ask(bot, 77, BOB, guild_id=None)
        stranger = bot.say(CHANNEL, ANN, LINK, guild_id=GUILD)  # not addressed: silence
        auto = await bot.answer(bot.say(CHANNEL, BOB, f"睇下 {LINK}", guild_id=GUILD))
    assert "未開放" in dm.content
    assert fake.replies_to(int(stranger["id"])) == []
    assert auto.content.endswith(SHOWN_REPLY)  # any link in an auto-link channel, no mention needed


async def test_rate_limit_refuses_then_recovers_after_the_window(fake, service, backend):
    from tests.bots.harness import VirtualTime

    time = VirtualTime()
    async with running_discord_bot(fake, service, env={"DISCORD_RATE_LIMIT": "2", "DISCORD_RATE_WINDOW": "60"}, time=time) as bot:
        for _ in range(2):
            assert (await ask(bot, 77, ANN, guild_id=None)).content.endswith(SHOWN_REPLY)
        limited = await ask(bot, 77, ANN, guild_id=None)
        time.advance(61)
        again = await ask(bot, 77, ANN, guild_id=None)
    assert "太密" in limited.content and "秒" in limited.content
    assert again.content.endswith(SHOWN_REPLY) and len(backend.calls) == 3


async def test_queue_places_one_request_per_user_and_a_full_queue(fake, lihkg, masker):
    gated = GatedBackend(["輪到你"], chunk=2)
    async with running_discord_bot(fake, make_service(gated, lihkg, masker), env={"DISCORD_WORKERS": "1", "DISCORD_QUEUE_SIZE": "1"}) as bot:
        running = bot.say(77, ANN, LINK)
        await fake.wait_for(lambda: gated.started)
        waiting = bot.say(78, BOB, LINK)
        await fake.wait_for(lambda: fake.replies_to(int(waiting["id"])), what="the queue notice")
        full = bot.say(79, CAT, LINK)
        second = bot.say(77, ANN, "https://lih.kg/100")
        await fake.wait_for(lambda: fake.replies_to(int(full["id"])) and fake.replies_to(int(second["id"])))
        gated.gate.set()
        first_reply, queued_reply = await bot.answer(running), await bot.answer(waiting)
    assert fake.replies_to(int(full["id"]))[0].content == escape(QueueFull.user_message)
    assert fake.replies_to(int(second["id"]))[0].content == escape(AlreadyQueued.user_message)
    assert first_reply.content.endswith("輪到你")
    assert queued_reply.versions[0] == queue_position(1) and queued_reply.content.endswith("輪到你")  # the notice became the reply
    assert gated.started == 2


async def test_cancel_stops_only_the_users_own_request(fake, lihkg, masker):
    gated = GatedBackend(["唔會講完"])
    channel = p.channel(CHANNEL, GUILD)
    async with running_discord_bot(fake, make_service(gated, lihkg, masker)) as bot:
        servers(bot)
        request = bot.slash("lihkg", {"link": LINK}, channel=channel, author=ANN, guild_id=GUILD)
        await fake.wait_for(lambda: gated.started)
        not_yours = await bot.response(bot.slash("cancel", {}, channel=channel, author=BOB, guild_id=GUILD), settle=False)
        mine = bot.slash("cancel", {}, channel=channel, author=ANN, guild_id=GUILD)
        cancelled = await bot.response(request)
        assert gated.finished == 1  # the model stopped
        gated.gate.set()
        after = await ask(bot, CHANNEL, ANN)
    assert not_yours[0].content == NOTHING_TO_CANCEL and not_yours[0].ephemeral
    assert fake.for_interaction(mine["token"])[0].content == CANCELLED
    assert cancelled[0].content == CANCELLED
    assert after.content.endswith("唔會講完")


async def test_settings_are_per_server_and_only_admins_change_them(fake, service, backend):
    channel = p.channel(CHANNEL, GUILD)
    async with running_discord_bot(fake, service, env={"DISCORD_ADMIN_IDS": "9"}) as bot:
        servers(bot)
        refused = await bot.response(bot.slash("settings", {"temperature": 0.2}, channel=channel, author=ANN, guild_id=GUILD))
        by_manager = await bot.response(
            bot.slash("settings", {"temperature": 0.3, "style": "snarky"}, channel=channel, author=BOB, guild_id=GUILD, permissions=p.MANAGE_GUILD)
        )
        too_many = await bot.response(bot.slash("settings", {"candidates": 5}, channel=channel, author=BOSS, guild_id=GUILD))
        await ask(bot, CHANNEL, ANN)
        await ask(bot, 21, BOB, guild_id=OTHER_GUILD)
    assert refused[0].content == ADMINS_ONLY and refused[0].ephemeral
    assert "0.3" in by_manager[0].content and "毒舌" in by_manager[0].content
    assert "1 至 3" in too_many[0].content
    (here_messages, here_params), (there_messages, there_params) = backend.calls
    assert here_params.temperature == 0.3 and "寸佢" in here_messages[0]["content"]
    assert there_params.temperature == 0.8 and "寸佢" not in there_messages[0]["content"]

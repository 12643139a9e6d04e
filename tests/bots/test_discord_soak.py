"""Soak: 1,000 mixed gateway events through the real Discord bot. Every valid link is
answered, nothing crashes, nothing internal reaches a channel, and memory stays flat."""

import gc
import itertools
import random
import tracemalloc

import pytest

from bots.discord_text import escape
from core.errors import LinkError, ThreadNotFound
from tests.bots.conftest import make_service
from tests.bots.harness import RealTime
from tests.bots.test_telegram_soak import (  # the same yardsticks
    _garbage,
    _retained_by_project,
    _rss,
)
from tests.fakes import discord_payloads as p
from tests.fakes.discord_api import FakeDiscord, Fault
from tests.fakes.discord_harness import TOKEN, running_discord_bot
from tests.fakes.lihkg_threads import make_thread
from tests.fakes.scripted_backend import ScriptedBackend

EVENTS = 1000
WARM_UP = 200
TRACED = 100  # tracemalloc makes everything ~3x slower: watch a window, not the whole run
THREADS = range(1000, 1020)
MISSING = 990_000
GUILD, CHANNEL, FORUM, POST, THREAD = 10, 11, 12, 13, 14
REPLIES = ["正呀", "講乜撚嘢 @everyone", "呢個真係好正🤡，" * 3, "頂你", "真係冇眼睇", "長文。" * 1300]  # the last: 3 messages
RSS_GROWTH_LIMIT = 64 * 2**20  # generous: allocator high-water marks and the fake's own records
RETAINED_LIMIT = 256 * 2**10  # bytes still held by bots/ and core/ allocations of the window


@pytest.fixture
async def fake():
    async with FakeDiscord(token=TOKEN) as server:
        yield server


def _link(rng: random.Random, thread_id: int) -> str:
    shapes = ["https://lihkg.com/thread/{id}/page/{page}", "睇下 lih.kg/{id} 笑死", "https://m.lihkg.com/thread/{id}?post=3。", "{junk} https://www.lihkg.com/thread/{id}/page/1 {junk}"]
    return rng.choice(shapes).format(id=thread_id, page=rng.randint(1, 9), junk=_garbage(rng, 20))


def _mixed_events(bot, rng: random.Random):
    """(event, expected): expected is the thread id whose reply must come, a Cantonese line
    (or nothing: hints may be held back), or None (no answer required)."""
    for index in range(EVENTS):
        author = p.user(10_000 + index, "巴打")  # one link per user: none waits on its own
        dm = 100_000 + index
        kind = rng.random()
        if kind < 0.30:
            thread_id = rng.choice(THREADS)
            where = rng.random()
            if where < 0.4:
                yield bot.say(dm, author, _link(rng, thread_id)), thread_id
            elif where < 0.7:
                channel = rng.choice([CHANNEL, POST, THREAD])
                yield bot.say(channel, author, _link(rng, thread_id), guild_id=GUILD, mention=True), thread_id
            else:
                yield bot.slash("lihkg", {"link": _link(rng, thread_id)}, channel=p.channel(CHANNEL, GUILD), author=author, guild_id=GUILD), thread_id
        elif kind < 0.35:
            yield bot.say(dm, author, f"https://lih.kg/{MISSING + index}"), ThreadNotFound.user_message
        elif kind < 0.55:
            yield bot.say(dm, author, _garbage(rng, rng.randint(1, 300))), LinkError.user_message
        elif kind < 0.62:
            yield bot.say(dm, author, _garbage(rng, 4000)), LinkError.user_message
        elif kind < 0.72:
            url = rng.choice(["https://example.com/thread/1/page/1", "https://lihkg.com.evil.com/thread/2", "lihkg.com/threads/3"])
            yield bot.say(dm, author, f"呢個 {url}", ), LinkError.user_message
        elif kind < 0.85:
            yield bot.say(CHANNEL, author, f"吹水 {_garbage(rng, 50)} https://lih.kg/{rng.choice(THREADS)}", guild_id=GUILD), None
        else:
            command = rng.choice(["help", "cancel", "settings"])
            yield bot.slash(command, {}, channel={"id": str(dm), "type": p.DM}, author=author), None


def _shown(fake, event) -> list[str]:
    if "token" in event:
        return [m.content for m in fake.for_interaction(event["token"])]
    return [m.content for m in fake.replies_to(int(event["id"]))]


@pytest.mark.timeout(300)
async def test_a_thousand_mixed_events(fake, lihkg_server, lihkg, masker):
    for thread_id in THREADS:
        lihkg_server.add_thread(make_thread(thread_id, f"帖{thread_id}", cat_id=1 + thread_id % 30, posts=["一樓"]))
    fake.inject(Fault.rate_limited("PATCH", "/messages/", 0.01, times=20))
    fake.edit_latency = 0.0
    backend = ScriptedBackend(REPLIES, chunk=200, delay=0.001)
    env = {"DISCORD_QUEUE_SIZE": "1000", "DISCORD_RATE_LIMIT": "0", "DISCORD_EDIT_INTERVAL": "0.2"}
    expected = []
    async with running_discord_bot(fake, make_service(backend, lihkg, masker), env=env, time=RealTime()) as bot:
        channels = [p.channel(CHANNEL, GUILD), p.channel(FORUM, GUILD, "forum", kind=p.FORUM)]
        bot.server(GUILD, channels=channels, threads=[p.thread(POST, GUILD, FORUM), p.thread(THREAD, GUILD, CHANNEL)])
        events = _mixed_events(bot, random.Random(4))

        async def play(count: int) -> None:
            expected.extend(itertools.islice(events, count))
            await bot.settled(120)

        await play(WARM_UP)
        rss_before = _rss()
        tracemalloc.start()  # a window of events: whatever they leave behind is a leak
        await play(TRACED)
        gc.collect()
        snapshot = tracemalloc.take_snapshot()
        tracemalloc.stop()
        await play((EVENTS - WARM_UP - TRACED) // 2)
        rss_middle = _rss()  # allocator high-water marks are reached by now
        await play(EVENTS)  # the rest
        rss_after = _rss()
        probe = await bot.answer(bot.say(5, p.user(1, "Ann"), "https://lih.kg/1000"))
        state = bot.state

    assert "帖1000" in probe.content
    links = 0
    for event, want in expected:
        shown = _shown(fake, event)
        if isinstance(want, int):
            links += 1
            assert shown and shown[0].startswith("**【") and f"帖{want}" in shown[0], (event.get("content"), shown)
            assert "@everyone" not in "".join(shown)
        elif isinstance(want, str):
            assert shown in ([escape(want)], []), event.get("content")
    assert links > 250
    every_text = [m.content for m in fake.messages.values()]
    assert not any("Traceback" in text or fake.token in text for text in every_text)
    assert all(len(text.encode("utf-16-le")) // 2 <= 2000 for text in every_text)
    assert state.queue.running == state.queue.waiting == 0 and not state.tasks
    assert rss_after - rss_before < RSS_GROWTH_LIMIT
    assert rss_after - rss_middle < RSS_GROWTH_LIMIT / 2  # the second half adds little more
    assert _retained_by_project(snapshot) < RETAINED_LIMIT

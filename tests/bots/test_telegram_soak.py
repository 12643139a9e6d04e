"""Soak: 1,000 mixed updates through the real bot. Every valid link is answered, nothing
crashes, nothing internal reaches a chat, and memory stays flat."""

import gc
import random
import tracemalloc
from pathlib import Path

import psutil
import pytest

from core.errors import LinkError, ThreadNotFound
from tests.bots.conftest import make_service
from tests.bots.harness import RealTime, running_bot
from tests.fakes.lihkg_threads import make_thread
from tests.fakes.scripted_backend import ScriptedBackend
from tests.fakes.telegram_api import Fault

UPDATES = 1000
WARM_UP = 200
TRACED = 100  # tracemalloc makes everything ~3x slower: watch a window, not the whole run
THREADS = range(1000, 1020)
MISSING = 990_000
REPLIES = ["正呀", "講乜撚嘢", "呢個真係好正🤡，" * 3, "頂你", "真係冇眼睇", "長文。" * 1500]  # the last: 3 messages
PROJECT = Path(__file__).resolve().parents[2]
RSS_GROWTH_LIMIT = 64 * 2**20  # generous: measured ~30 MB, mostly allocator high-water marks
# and the fake's own records of every call, which live in this process too
RETAINED_LIMIT = 256 * 2**10  # bytes still held by bots/ and core/ allocations of the window


def _garbage(rng: random.Random, size: int) -> str:
    ranges = [(0x20, 0x7E), (0x4E00, 0x9FFF), (0x1F300, 0x1FAFF), (0x0300, 0x036F), (0x200B, 0x200F), (0x202A, 0x202E), (0xFFF0, 0xFFFD)]
    return "".join(chr(rng.randint(*rng.choice(ranges))) for _ in range(size))


def _link(rng: random.Random, thread_id: int) -> str:
    shapes = [
        "https://lihkg.com/thread/{id}/page/{page}",
        "睇下 lih.kg/{id} 笑死",
        "https://m.lihkg.com/thread/{id}?post=3。",
        "{junk} https://www.lihkg.com/thread/{id}/page/1 {junk}",
    ]
    return rng.choice(shapes).format(id=thread_id, page=rng.randint(1, 9), junk=_garbage(rng, 20))


def _mixed_updates(api, rng: random.Random):
    """(message, expected) pairs; expected is the thread id whose reply must come, a
    Cantonese line, or None (no answer required)."""
    groups = [api.group(-1000 - g, f"群{g}") for g in range(5)]
    forum = api.group(-2000, "論壇", forum=True)
    next_user = iter(range(10_000, 10_000 + UPDATES))
    for index in range(UPDATES):
        user = api.user(next(next_user), "巴打")  # one link per user: none waits on its own
        kind = rng.random()
        if kind < 0.30:
            thread_id = rng.choice(THREADS)
            where = rng.random()
            if where < 0.6:
                yield api.send(api.private_chat(user), user, _link(rng, thread_id)), thread_id
            elif where < 0.8:
                yield api.send(rng.choice(groups), user, f"/lihkg {_link(rng, thread_id)}"), thread_id
            else:
                yield api.send(forum, user, f"@{api.bot.username} {_link(rng, thread_id)}", topic=7), thread_id
        elif kind < 0.35:
            yield api.send(api.private_chat(user), user, f"https://lih.kg/{MISSING + index}"), ThreadNotFound.user_message
        elif kind < 0.55:
            yield api.send(api.private_chat(user), user, _garbage(rng, rng.randint(1, 300))), LinkError.user_message
        elif kind < 0.62:
            yield api.send(api.private_chat(user), user, _garbage(rng, 4096)), LinkError.user_message
        elif kind < 0.72:
            url = rng.choice(["https://example.com/thread/1/page/1", "https://lihkg.com.evil.com/thread/2", "lihkg.com/threads/3"])
            yield api.send(api.private_chat(user), user, f"呢個 {url}"), LinkError.user_message
        elif kind < 0.85:
            yield api.send(rng.choice(groups), user, f"吹水 {_garbage(rng, 50)} https://lih.kg/{rng.choice(THREADS)}"), None
        else:
            command = rng.choice(["/help", "/start", "/settings", "/cancel", "/settings temperature 9", "/unknown", "/lihkg 冇嘢"])
            yield api.send(api.private_chat(user), user, command), None


def _rss() -> int:
    gc.collect()
    return psutil.Process().memory_info().rss


def _retained_by_project(snapshot: tracemalloc.Snapshot) -> int:
    filters = [tracemalloc.Filter(True, str(PROJECT / "bots" / "*")), tracemalloc.Filter(True, str(PROJECT / "core" / "*"))]
    return sum(stat.size for stat in snapshot.filter_traces(filters).statistics("filename"))


@pytest.mark.timeout(300)
async def test_a_thousand_mixed_updates(api, lihkg_server, lihkg, masker):
    for thread_id in THREADS:
        lihkg_server.add_thread(make_thread(thread_id, f"帖{thread_id}", cat_id=1 + thread_id % 30, posts=["一樓"]))
    api.inject("editMessageText", Fault.retry_after_seconds(1, times=20))
    api.inject("sendMessage", Fault.cant_parse_entities(times=10, when=lambda p: p.get("parse_mode") == "HTML"))
    backend = ScriptedBackend(REPLIES, chunk=200, delay=0.001)
    rng = random.Random(4)
    intervals = {f"TELEGRAM_{kind}_INTERVAL": "0.2" for kind in ("EDIT", "GROUP_EDIT", "DRAFT")}
    env = {"TELEGRAM_QUEUE_SIZE": "1000", "TELEGRAM_RATE_LIMIT": "0", **intervals}
    expected = []
    async with running_bot(api, make_service(backend, lihkg, masker), env=env, time=RealTime()) as bot:
        updates = _mixed_updates(api, rng)
        expected += [next(updates) for _ in range(WARM_UP)]
        await bot.settled(120)
        rss_before = _rss()
        tracemalloc.start()  # a window of updates: whatever they leave behind is a leak
        expected += [next(updates) for _ in range(TRACED)]
        await bot.settled(120)
        gc.collect()
        snapshot = tracemalloc.take_snapshot()
        tracemalloc.stop()
        half = (UPDATES - WARM_UP - TRACED) // 2
        expected += [next(updates) for _ in range(half)]
        await bot.settled(120)
        rss_middle = _rss()  # allocator high-water marks are reached by now
        expected.extend(updates)
        await bot.settled(120)
        rss_after = _rss()
        assert bot.application.running
        ann = api.user(1, "Ann")
        probe = await bot.answer(api.send(api.private_chat(ann), ann, "/help"))
        state = bot.state

    assert "LiLM" in probe.text
    links = 0
    for message, want in expected:
        replies = api.replies_to(message["chat"]["id"], message["message_id"])
        if isinstance(want, int):
            links += 1
            assert len(replies) == 1, (message.get("text"), [r.text for r in replies])
            assert replies[0].text.startswith("【") and f"帖{want}" in replies[0].text
            assert replies[0].thread_id == message.get("message_thread_id")
        elif isinstance(want, str):
            assert [r.text for r in replies] in ([want], []), message.get("text")  # hints may be held back
    assert links > 250
    every_text = [m.text for chat in {msg["chat"]["id"] for msg, _ in expected} for m in api.messages(chat)]
    assert not any("Traceback" in text or api.token in text for text in every_text)
    assert state.queue.running == state.queue.waiting == 0 and not state.tasks
    assert len(state.prefs) == 0  # /settings with a bad value stores nothing
    assert rss_after - rss_before < RSS_GROWTH_LIMIT
    assert rss_after - rss_middle < RSS_GROWTH_LIMIT / 2  # the second half adds little more
    assert _retained_by_project(snapshot) < RETAINED_LIMIT

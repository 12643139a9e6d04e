"""The scraper end to end in-process: the fake LIHKG server over loopback HTTP, a real SQLite file."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from core.errors import LihkgBlocked
from pipeline.scrape import ScrapeOptions, Scraper, ScrapeResult, parse_list_page
from pipeline.scrape_limits import (
    Exit,
    ExitPool,
    PoliteFetcher,
    ScrapeClient,
    SpacingLimiter,
)
from pipeline.scrape_store import ScrapeStore
from tests.fakes.lihkg_server import FakeLihkgServer, RateLimitPolicy
from tests.fakes.lihkg_threads import FakePost, FakeThread, make_corpus, make_thread

pytestmark = pytest.mark.timeout(60)
DEVICE = "0123456789abcdef0123456789abcdef01234567"


async def run_scrape(server: FakeLihkgServer, db: Path, *, rpm: float = 30_000, max_attempts: int = 3,
                     **options) -> ScrapeResult:
    pool = ExitPool([Exit("direct", None, SpacingLimiter(rpm))])
    client = ScrapeClient(server.base_url, retries=0, device_id=DEVICE, cache_ttl=0, timeout=5)
    fetcher = PoliteFetcher(pool, {"direct": client}, max_attempts=max_attempts, sleep=_no_wait)
    try:
        with ScrapeStore.open(db) as store:
            return await Scraper(store, fetcher, ScrapeOptions(**options)).run()
    finally:
        await client.aclose()


async def _no_wait(seconds: float) -> None:
    pass


def stored(db: Path) -> tuple[dict[int, tuple], dict[int, list[tuple]]]:
    """Thread rows (without fetched_at) and each thread's posts in order."""
    with sqlite3.connect(db) as connection:
        threads = {row[0]: row[1:-1] for row in connection.execute("SELECT * FROM threads")}
        posts: dict[int, list[tuple]] = {}
        for row in connection.execute("SELECT * FROM posts ORDER BY thread_id, msg_num"):
            posts.setdefault(row[1], []).append(row)
    return threads, posts


def expected_posts(thread: FakeThread) -> list[tuple]:
    rows = []
    for n, post in enumerate(thread.posts, 1):
        user_id, nickname = thread.poster(n)
        quoted = thread.post_id(post.quote) if post.quote else ""
        rows.append((thread.post_id(n), thread.thread_id, n, user_id, nickname, post.like_count, post.dislike_count,
                     quoted, post.msg, thread.reply_time(n), post.status))
    return rows


def page_requests(server: FakeLihkgServer) -> list[str]:
    return [r.path for r in server.requests if "/page/" in r.path]


@pytest.fixture
def corpus(lihkg_server: FakeLihkgServer) -> list[FakeThread]:
    threads = make_corpus(90, first_id=1000, cat_ids=(5,), seed=1)  # 90 in one category: two list pages
    threads += make_corpus(6, first_id=2000, cat_ids=(7,), seed=2)  # reached only through the id range
    for thread in threads:
        lihkg_server.add_thread(thread)
    return threads


async def test_lists_and_an_id_range_store_every_page_of_every_thread(lihkg_server, corpus, tmp_path):
    db = tmp_path / "lihkg.sqlite3"
    result = await run_scrape(lihkg_server, db, categories=(5,), latest=True, id_range=(1995, 2010), concurrency=4)

    threads, posts = stored(db)
    assert sorted(threads) == sorted(t.thread_id for t in corpus)
    assert any(t.total_page >= 4 for t in corpus)
    for thread in corpus:
        assert posts[thread.thread_id] == expected_posts(thread), thread.thread_id  # every page, every field
        cat_id, category, title, user_id, nickname, replies, likes, _, total_page, created, last_reply = \
            threads[thread.thread_id]
        assert (cat_id, category, title, user_id, nickname) == (thread.cat_id, thread.category_name, thread.title,
                                                                 thread.author_id, thread.author_nickname)
        assert (replies, likes, total_page, created, last_reply) == (
            len(thread.posts), thread.like_count, thread.total_page, thread.create_time, thread.last_reply_time)
    assert result.saved == 96 and result.posts == sum(len(t.posts) for t in corpus) and result.failed == 0
    assert result.gone == 10  # 1995-1999 and 2006-2010 do not exist
    category_pages = [r.query["page"] for r in lihkg_server.requests if r.path.endswith("/category")]
    assert category_pages == ["1", "2", "3"]  # 60 + 30, then LIHKG's "no more" envelope
    assert len(page_requests(lihkg_server)) == sum(t.total_page for t in corpus) + 10  # each page once
    with sqlite3.connect(db) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_a_rerun_fetches_only_new_or_changed_threads(lihkg_server, corpus, tmp_path):
    db = tmp_path / "lihkg.sqlite3"
    await run_scrape(lihkg_server, db, categories=(5,), id_range=(1995, 2010))
    lihkg_server.requests.clear()

    again = await run_scrape(lihkg_server, db, categories=(5,), id_range=(1995, 2010))
    assert page_requests(lihkg_server) == [] and again.saved == 0 and again.unchanged == 90

    grown = corpus[3]
    grown = lihkg_server.add_thread(make_thread(grown.thread_id, grown.title, grown.cat_id,
                                                [*grown.posts, *(FakePost(f"新回覆 {n}") for n in range(30))]))
    lihkg_server.add_thread(make_thread(1500, "新帖", 5, ["一樓", "二樓"]))
    lihkg_server.requests.clear()
    third = await run_scrape(lihkg_server, db, categories=(5,), id_range=(1995, 2010))

    fetched = {int(path.split("/")[3]) for path in page_requests(lihkg_server)}
    assert fetched == {grown.thread_id, 1500} and third.saved == 2
    _, posts = stored(db)
    assert posts[grown.thread_id] == expected_posts(grown) and len(posts[1500]) == 2


async def test_a_thread_whose_page_keeps_failing_is_not_stored_in_part_and_the_next_run_gets_it(lihkg_server, tmp_path):
    long = lihkg_server.add_thread(make_thread(10, "長", 1, [f"第{n}個" for n in range(1, 61)]))
    lihkg_server.add_thread(make_thread(11, "短", 1, ["一樓"]))
    lihkg_server.add_raw_page(10, 2, "<html><body>upstream error</body></html>")
    db = tmp_path / "lihkg.sqlite3"

    first = await run_scrape(lihkg_server, db, categories=(1,), max_attempts=2)
    threads, _ = stored(db)
    assert first.failed == 1 and sorted(threads) == [11]
    assert sum(1 for r in lihkg_server.requests if r.path == "/api_v2/thread/10/page/2") == 2  # bounded

    lihkg_server.remove_raw_page(10, 2)
    second = await run_scrape(lihkg_server, db, categories=(1,))
    threads, posts = stored(db)
    assert second.saved == 1 and sorted(threads) == [10, 11] and posts[10] == expected_posts(long)


async def test_when_every_ip_is_banned_the_run_stops_and_keeps_only_whole_threads(lihkg_server, corpus, tmp_path):
    lihkg_server.enforce_rate_limit(RateLimitPolicy(requests_per_minute=60, burst=25, retry_after=0.01, ban_after=3))
    db = tmp_path / "lihkg.sqlite3"
    with pytest.raises(LihkgBlocked, match="every IP is banned"):
        await run_scrape(lihkg_server, db, categories=(5,), concurrency=4)
    threads, posts = stored(db)
    assert 0 < len(threads) < 90
    for thread_id, row in threads.items():
        assert len(posts[thread_id]) == row[5]  # no_of_reply: all of it or nothing
    assert lihkg_server.ip_stats()["direct"].banned


async def test_list_depth_is_bounded(lihkg_server, corpus, tmp_path):
    result = await run_scrape(lihkg_server, tmp_path / "db.sqlite3", categories=(5,), list_pages=1)
    assert result.list_pages == 1 and result.saved == 60


def test_list_pages_read_the_captured_shape_and_the_end_envelope():
    # Trimmed from a real /thread/category answer (2022): ids and counts as strings, times as ints.
    item = {"thread_id": "2941730", "cat_id": "8", "title": "[高清版] ONEPIECE 海賊王1044", "no_of_reply": "212",
            "like_count": 25, "create_time": 1648198577, "last_reply_time": 1648203310, "total_page": 9}
    page = {"success": 1, "server_time": 1648203329,
            "response": {"category": {"cat_id": "8", "name": "動漫台"}, "is_pagination": True, "items": [item]}}
    assert [(t.thread_id, t.no_of_reply, t.last_reply_time) for t in parse_list_page(page)] == [(2941730, 212, 1648203310)]
    assert parse_list_page({"success": 0, "error_code": 100, "error_message": "沒有更多"}) == []


async def test_the_progress_bar_shows_counts_rate_and_eta(lihkg_server, tmp_path, capsys):
    for thread in make_corpus(12, cat_ids=(5,), seed=4):
        lihkg_server.add_thread(thread)
    await run_scrape(lihkg_server, tmp_path / "db.sqlite3", categories=(5,), progress=True)
    bar = capsys.readouterr().err.split("\r")[-1]
    assert "12/12" in bar and "thread/s" in bar and "<00:00" in bar  # done/total, rate, elapsed<remaining
    assert "posts=" in bar and "r429=0" in bar

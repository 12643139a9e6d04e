"""The fake LIHKG server's list endpoints and per-IP limiter, and the tagging proxies, over HTTP."""

from __future__ import annotations

import httpx
import pytest

from tests.fakes.lihkg_ip_limit import CLIENT_IP_HEADER, IpRateLimiter, RateLimitPolicy
from tests.fakes.lihkg_server import FakeLihkgServer
from tests.fakes.lihkg_threads import make_thread
from tests.fakes.tagging_proxy import TaggingProxy

pytestmark = pytest.mark.timeout(60)


def get(server: FakeLihkgServer, path: str, *, proxy: str | None = None, **params) -> httpx.Response:
    with httpx.Client(base_url=server.base_url, proxy=proxy, trust_env=False, timeout=5) as client:
        return client.get(path, params=params)


def test_category_list_pages_sixty_at_a_time_then_says_no_more(lihkg_server):
    for thread_id in range(1, 131):
        lihkg_server.add_thread(make_thread(thread_id, f"帖{thread_id}", cat_id=5 if thread_id % 2 else 6,
                                            posts=["一樓"] * (thread_id % 4 + 1), create_time=1_700_000_000 + thread_id))
    pages = [get(lihkg_server, "/api_v2/thread/category", cat_id=5, page=p, count=60, type="now").json() for p in (1, 2, 3)]
    assert [len(p["response"]["items"]) for p in pages[:2]] == [60, 5]
    assert pages[2]["success"] == 0 and pages[2]["error_code"] == 100
    listed = [int(i["thread_id"]) for p in pages[:2] for i in p["response"]["items"]]
    assert sorted(listed) == list(range(1, 131, 2))
    times = [i["last_reply_time"] for p in pages[:2] for i in p["response"]["items"]]
    assert times == sorted(times, reverse=True)  # type=now: the latest reply first
    first = pages[0]["response"]["items"][0]
    assert first["category"]["name"] == "時事台" and first["no_of_reply"] == str(int(first["thread_id"]) % 4 + 1)
    latest = get(lihkg_server, "/api_v2/thread/latest", cat_id=1, page=1, count=60).json()["response"]["items"]
    assert int(latest[0]["thread_id"]) == 130
    hot = get(lihkg_server, "/api_v2/thread/hot", cat_id=2, page=1, count=60, type="now").json()["response"]["items"]
    assert int(hot[0]["no_of_reply"]) == 4


def test_limiter_answers_429_beyond_the_rate_then_bans_for_good():
    clock = [0.0]
    limiter = IpRateLimiter(RateLimitPolicy(requests_per_minute=60, burst=2, ban_after=3), clock=lambda: clock[0])
    assert [limiter.check("a") for _ in range(3)] == ["ok", "ok", "limited"]
    assert limiter.check("b") == "ok"  # another IP has its own bucket
    clock[0] = 1.0
    assert limiter.check("a") == "ok"  # one token a second
    assert [limiter.check("a") for _ in range(3)] == ["limited", "limited", "banned"]
    clock[0] = 1000.0
    assert limiter.check("a") == "banned"
    stats = limiter.stats()
    assert stats["a"].banned and stats["a"].limited == 3 and stats["a"].forbidden == 2 and not stats["b"].banned


def test_proxies_are_separate_ips_to_the_server(lihkg_server):
    lihkg_server.add_thread(make_thread(7, "標題", posts=["一樓"]))
    lihkg_server.enforce_rate_limit(RateLimitPolicy(requests_per_minute=1, burst=1, retry_after=42, ban_after=2))
    with TaggingProxy("hk-1") as proxy:
        assert get(lihkg_server, "/api_v2/thread/7/page/1").status_code == 200
        limited = get(lihkg_server, "/api_v2/thread/7/page/1")
        assert limited.status_code == 429 and limited.headers["retry-after"] == "42"
        assert get(lihkg_server, "/api_v2/thread/7/page/1").status_code == 429  # the second 429 in the window...
        assert get(lihkg_server, "/api_v2/thread/7/page/1").status_code == 403  # ...banned this IP for good
        through_proxy = get(lihkg_server, "/api_v2/thread/7/page/1", proxy=proxy.url)
        assert through_proxy.status_code == 200 and through_proxy.json()["response"]["title"] == "標題"
        assert proxy.forwarded == 1
    assert lihkg_server.requests[-1].header(CLIENT_IP_HEADER) == "hk-1"
    stats = lihkg_server.ip_stats()
    assert stats["direct"].banned and stats["hk-1"].ok == 1 and not stats["hk-1"].banned


def test_without_a_policy_nothing_is_limited(lihkg_server):
    lihkg_server.add_thread(make_thread(7, "標題"))
    assert all(get(lihkg_server, "/api_v2/thread/7/page/1").status_code == 200 for _ in range(20))
    assert lihkg_server.ip_stats() == {}

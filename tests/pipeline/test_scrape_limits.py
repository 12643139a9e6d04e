"""Per-IP limiter, exit pool and the retrying fetcher: pure parts on a fake clock, the rest
against the fake LIHKG server and tagging proxies over loopback HTTP."""

from __future__ import annotations

import asyncio
import itertools
import logging

import httpx
import pytest

from core.errors import ConfigError, LihkgBadResponse, LihkgBlocked, ThreadNotFound
from core.lihkg_parse import parse_thread_page
from pipeline.scrape_limits import (
    Exit,
    ExitPool,
    PoliteFetcher,
    ScrapeClient,
    SpacingLimiter,
    build_exits,
    load_proxies,
)
from tests.fakes.lihkg_server import (
    FakeLihkgServer,
    RateLimitPolicy,
    Scenario,
    make_thread,
)
from tests.fakes.tagging_proxy import TaggingProxy

pytestmark = pytest.mark.timeout(60)
DEVICE = "0123456789abcdef0123456789abcdef01234567"


class FakeTime:
    """A clock whose sleeps advance it at once, recording each wait."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.waits: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += max(0.0, seconds)
        await asyncio.sleep(0)


def exits(*labels: str, rpm: float = 60) -> list[Exit]:
    return [Exit(label, None, SpacingLimiter(rpm)) for label in labels]


async def test_each_ip_keeps_its_own_pace_and_the_pool_uses_them_all():
    time = FakeTime()
    pool = ExitPool(exits("direct", "proxy 1", "proxy 2"), clock=time.clock, sleep=time.sleep)
    sent: dict[str, list[float]] = {}
    for _ in range(30):
        chosen = await pool.acquire()
        sent.setdefault(chosen.label, []).append(time.now)
    assert sorted(sent) == ["direct", "proxy 1", "proxy 2"]
    for times in sent.values():
        assert len(times) == 10
        assert all(b - a >= 1.0 - 1e-9 for a, b in itertools.pairwise(times))  # 60/min = 1 s apart
    assert time.now - 1000.0 == pytest.approx(9.0)  # three IPs: 30 requests in 9 s (one IP: 29 s)


def test_requests_woken_together_after_a_stall_do_not_leave_together():
    limiter = SpacingLimiter(60)
    slots = [limiter.reserve(now=0.0) for _ in range(3)]
    assert slots == [0.0, 1.0, 2.0]
    # The event loop was busy until t=5: all three wake at once; only one may go.
    assert [limiter.may_send(5.0) for _ in slots] == [True, False, False]
    assert limiter.reserve(now=5.0) >= 6.0 and limiter.may_send(6.0)


async def test_parked_ips_wait_out_retry_after_and_retired_ips_are_never_used_again():
    time = FakeTime()
    pool = ExitPool(exits("direct", "proxy 1"), clock=time.clock, sleep=time.sleep)
    direct, proxy = pool.exits
    pool.retire(proxy, "HTTP 403 (banned)")
    pool.park(direct, 300.0)
    chosen = await pool.acquire()
    assert chosen is direct and time.now >= 1300.0
    pool.retire(direct, "HTTP 403 (banned)")
    with pytest.raises(LihkgBlocked, match="every IP is banned"):
        await pool.acquire()


async def test_a_429_slows_that_ip_down_once_per_episode_and_never_below_a_quarter():
    time = FakeTime()
    pool = ExitPool(exits("direct", "proxy 1", rpm=600), clock=time.clock, sleep=time.sleep)
    direct, proxy = pool.exits
    for _ in range(3):  # three requests in flight on one IP all answered 429
        pool.rate_limited(direct, 10.0)
    assert direct.limiter.requests_per_minute == pytest.approx(500) and direct.parked_until == 1010.0
    assert proxy.limiter.requests_per_minute == pytest.approx(600)
    for _ in range(20):
        time.now += 11
        pool.rate_limited(direct, 10.0)
    assert direct.limiter.requests_per_minute == pytest.approx(150)


def test_proxies_come_from_the_setting_and_a_file(tmp_path):
    listed = tmp_path / "proxies.txt"
    listed.write_text("# mine\nhttp://u:p@10.0.0.2:8080\n\nsocks5://10.0.0.3:1080  # cheap\nhttp://10.0.0.1:3128\n")
    proxies = load_proxies("http://10.0.0.1:3128", str(listed))
    assert proxies == ["http://10.0.0.1:3128", "http://u:p@10.0.0.2:8080", "socks5://10.0.0.3:1080"]
    built = build_exits(proxies=proxies, direct=True, direct_proxy=None, requests_per_minute=30)
    assert [e.label for e in built] == ["direct", "proxy 1", "proxy 2", "proxy 3"]
    assert "u:p" not in repr(built)
    with pytest.raises(ConfigError) as error:
        load_proxies("ftp://user:s3cret@host:21")
    assert "s3cret" not in str(error.value)
    with pytest.raises(ConfigError):
        ExitPool(build_exits(proxies=[], direct=False, direct_proxy=None, requests_per_minute=30))


# ------------------------------------------------------------------ against the fake server


def fetcher_for(server: FakeLihkgServer, proxies: dict[str, str | None], *, rpm: float = 6000, **options) -> PoliteFetcher:
    pool = ExitPool([Exit(label, url, SpacingLimiter(rpm)) for label, url in proxies.items()])
    clients = {label: ScrapeClient(server.base_url, retries=0, proxy=url, device_id=DEVICE, cache_ttl=0, timeout=5)
               for label, url in proxies.items()}
    return PoliteFetcher(pool, clients, **options)


async def fetch_page(fetcher: PoliteFetcher, thread_id: int, page: int = 1):
    return await fetcher.fetch(f"/api_v2/thread/{thread_id}/page/{page}", {"order": "reply_time"},
                               referer="https://lihkg.com/", parse=parse_thread_page)


async def close(fetcher: PoliteFetcher) -> None:
    for client in fetcher.clients.values():
        await client.aclose()


async def test_a_banned_ip_is_retired_and_its_request_goes_out_through_another(lihkg_server):
    lihkg_server.add_thread(make_thread(7, "標題", posts=["一樓", "二樓"]))
    lihkg_server.enforce_rate_limit(RateLimitPolicy(requests_per_minute=1, burst=1, ban_after=1))
    async with httpx.AsyncClient(base_url=lihkg_server.base_url) as direct:
        await direct.get("/api_v2/thread/7/page/1")
        await direct.get("/api_v2/thread/7/page/1")  # a 429, and with ban_after=1 a ban
    with TaggingProxy("hk-1") as proxy:
        fetcher = fetcher_for(lihkg_server, {"direct": None, "proxy 1": proxy.url})
        try:
            first = await fetch_page(fetcher, 7)
        finally:
            await close(fetcher)
    assert [p.msg for p in first.posts] == ["一樓", "二樓"]
    direct_exit, proxy_exit = fetcher.pool.exits
    assert "403" in direct_exit.retired and not proxy_exit.retired
    assert lihkg_server.ip_stats()["hk-1"].ok == 1


async def test_429_parks_the_ip_for_retry_after_then_the_request_succeeds(lihkg_server):
    lihkg_server.add_thread(make_thread(7, "標題"))
    lihkg_server.set_scenario(Scenario.rate_limited(retry_after="0.2", times=2))
    fetcher = fetcher_for(lihkg_server, {"direct": None})
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        thread = await fetch_page(fetcher, 7)
    finally:
        await close(fetcher)
    assert thread.title == "標題" and fetcher.stats.rate_limited == 2
    assert loop.time() - started >= 0.4  # both Retry-Afters were waited out, not ignored
    assert len(lihkg_server.requests) == 3


async def test_cloudflare_page_parks_that_ip_and_another_ip_answers(lihkg_server):
    lihkg_server.add_thread(make_thread(7, "標題"))
    lihkg_server.set_scenario(Scenario.challenge(times=1))
    with TaggingProxy("hk-1") as proxy:
        fetcher = fetcher_for(lihkg_server, {"direct": None, "proxy 1": proxy.url}, challenge_pause=600)
        try:
            assert (await fetch_page(fetcher, 7)).title == "標題"
            assert (await fetch_page(fetcher, 7)).title == "標題"
        finally:
            await close(fetcher)
    assert fetcher.stats.challenges == 1
    parked = [e for e in fetcher.pool.exits if e.parked_until > 0]
    assert [e.label for e in parked] == ["direct"] and not parked[0].retired  # the first request went direct
    assert proxy.forwarded == 2  # both answers came through the other IP


@pytest.mark.parametrize("bad", ["<html><body>502 Bad Gateway</body></html>", '{"success": 1, "response": {"th'])
async def test_html_or_broken_json_is_retried_a_bounded_number_of_times(lihkg_server, bad):
    lihkg_server.add_raw_page(7, 1, bad)
    backoff = FakeTime()
    fetcher = fetcher_for(lihkg_server, {"direct": None}, max_attempts=3, sleep=backoff.sleep)
    try:
        with pytest.raises(LihkgBadResponse):
            await fetch_page(fetcher, 7)
    finally:
        await close(fetcher)
    assert len(lihkg_server.requests) == 3  # never spins forever
    assert len(backoff.waits) == 2 and all(w > 0 for w in backoff.waits)  # and backs off between tries


async def test_error_envelope_means_missing_at_once(lihkg_server):
    fetcher = fetcher_for(lihkg_server, {"direct": None})
    try:
        with pytest.raises(ThreadNotFound):
            await fetch_page(fetcher, 404404)
    finally:
        await close(fetcher)
    assert len(lihkg_server.requests) == 1


async def test_dead_proxies_are_retired_and_their_secrets_never_shown(lihkg_server, caplog):
    caplog.set_level(logging.DEBUG)
    lihkg_server.add_thread(make_thread(7, "標題"))
    with TaggingProxy("dead") as proxy:
        proxy.refuse = True
        secret_url = proxy.url.replace("http://", "http://scraper:s3cret@")
        fetcher = fetcher_for(lihkg_server, {"proxy 1": secret_url}, max_attempts=50, sleep=FakeTime().sleep)
        try:
            with pytest.raises(LihkgBlocked) as error:
                await fetch_page(fetcher, 7)
        finally:
            await close(fetcher)
    assert "connection failures" in fetcher.pool.exits[0].retired
    assert "s3cret" not in str(error.value) and "s3cret" not in caplog.text
    assert lihkg_server.requests == []

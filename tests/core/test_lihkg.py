"""The LIHKG client against the fake LIHKG server over real loopback HTTP."""

from __future__ import annotations

import asyncio
import email.utils
import re
import socket
import time
from dataclasses import dataclass

import httpx
import pytest

from core.device import load_device_id
from core.errors import (
    ConfigError,
    LihkgBadResponse,
    LihkgBlocked,
    LihkgChallenge,
    LihkgError,
    LihkgRateLimited,
    LihkgTimeout,
    ThreadNotFound,
)
from core.lihkg import LihkgClient, parse_thread_page
from core.settings import Settings
from core.ttl_cache import TTLCache
from tests.fakes.lihkg_server import FakeLihkgServer, FakePost, Scenario, make_thread

DEVICE = "0123456789abcdef0123456789abcdef01234567"
CJK = re.compile(r"[\u4e00-\u9fff]")


class SleepRecorder:
    """Stands in for asyncio.sleep: records each backoff instead of waiting."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@dataclass(frozen=True)
class Link:
    """Shaped like core.links.ThreadLink."""

    thread_id: int
    page: int = 1
    post: int | None = None


@pytest.fixture
def sleeps() -> SleepRecorder:
    return SleepRecorder()


@pytest.fixture
def server(lihkg_server: FakeLihkgServer) -> FakeLihkgServer:
    lihkg_server.add_thread(
        make_thread(
            3699748,
            "今日好熱",
            5,
            [
                "熱到溶<br />\n救命<img src=\"/assets/faces/normal/dead.gif\" class=\"hkgmoji\" />",
                FakePost("開冷氣啦", like_count=30, dislike_count=2, quote=1),
                FakePost("冇錢交電費", quote=2),
            ],
            category_name="時事台",
        )
    )
    lihkg_server.add_thread(make_thread(777, "長 post", 1, [f"第{n}個" for n in range(1, 61)]))
    return lihkg_server


def client_for(server: FakeLihkgServer, sleeps: SleepRecorder, **options) -> LihkgClient:
    settings = {"timeout": 2.0, "retries": 2, "max_retry_after": 30.0, "device_id": DEVICE, "cache_ttl": 60.0, "sleep": sleeps}
    settings.update(options)
    return LihkgClient(server.base_url, **settings)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ---------------------------------------------------------------------------- success


async def test_fetch_thread_gives_category_title_and_first_post(server, sleeps) -> None:
    async with client_for(server, sleeps) as client:
        thread = await client.fetch_thread(3699748)
    assert (thread.thread_id, thread.title, thread.cat_id, thread.category) == (3699748, "今日好熱", 5, "時事台")
    assert thread.first_post.msg.startswith("熱到溶<br />")
    assert [p.msg_num for p in thread.posts] == [1, 2, 3]
    reply = thread.posts[1]
    assert (reply.like_count, reply.dislike_count, reply.vote_score) == (30, 2, 28)
    assert reply.user_nickname == "巴打2" and reply.user_id == "20002"
    assert thread.posts[2].quote.msg_num == 2 and thread.posts[2].quote.quote.msg_num == 1
    assert thread.total_page == 1 and thread.page == 1
    [request] = server.requests
    assert (request.method, request.path, request.query) == ("GET", "/api_v2/thread/3699748/page/1", {"order": "reply_time"})


async def test_page_two_of_a_long_thread(server, sleeps) -> None:
    async with client_for(server, sleeps) as client:
        page2 = await client.fetch_page(777, 2)
        page3 = await client.fetch_page(777, 3, order="score")
    assert page2.total_page == 3 and page2.page == 2
    assert [p.msg_num for p in page2.posts] == list(range(26, 51))
    assert [p.msg_num for p in page3.posts] == list(range(51, 61))
    assert [(r.path, r.query["order"]) for r in server.requests] == [
        ("/api_v2/thread/777/page/2", "reply_time"),
        ("/api_v2/thread/777/page/3", "score"),
    ]


async def test_thread_link_objects_are_accepted(server, sleeps) -> None:
    async with client_for(server, sleeps) as client:
        page = await client.fetch_page(Link(777, page=2, post=30))
        first = await client.fetch_thread(Link(777, page=3))
    assert page.page == 2 and first.page == 1
    assert [r.path for r in server.requests] == ["/api_v2/thread/777/page/2", "/api_v2/thread/777/page/1"]


async def test_bad_arguments_raise_before_any_request(server, sleeps) -> None:
    async with client_for(server, sleeps) as client:
        for call in (client.fetch_page(0), client.fetch_page(777, -1), client.fetch_page(777, order="new")):
            with pytest.raises(ValueError):
                await call
    assert server.requests == []


# ---------------------------------------------------------------------------- failures


@pytest.mark.parametrize(
    ("scenario", "expected"),
    [
        (Scenario.forbidden(), LihkgBlocked),
        (Scenario.not_found(), ThreadNotFound),
        (Scenario.error_envelope(), ThreadNotFound),
        (Scenario.error_envelope(code=999, message="系統錯誤"), LihkgBadResponse),
        (Scenario.challenge(status=403), LihkgChallenge),
        (Scenario.challenge(status=503), LihkgChallenge),
        (Scenario.malformed_json(), LihkgBadResponse),
        (Scenario.redirect("http://example.invalid/elsewhere"), LihkgBadResponse),
    ],
    ids=lambda value: getattr(value, "kind", None) or getattr(value, "__name__", ""),
)
async def test_failures_raise_typed_errors_without_retrying(server, sleeps, scenario, expected) -> None:
    server.set_scenario(scenario, thread_id=3699748)
    async with client_for(server, sleeps) as client:
        with pytest.raises(expected) as caught:
            await client.fetch_thread(3699748)
    assert type(caught.value) is expected
    assert caught.value.user_message == expected.user_message and CJK.search(caught.value.user_message)
    assert len(server.requests) == 1 and sleeps.waits == []


async def test_unknown_thread_is_not_found(server, sleeps) -> None:
    async with client_for(server, sleeps) as client:
        with pytest.raises(ThreadNotFound):
            await client.fetch_thread(424242)
        with pytest.raises(ThreadNotFound):
            await client.fetch_page(3699748, 2)  # past total_page


async def test_server_error_then_ok_is_retried_with_backoff(server, sleeps) -> None:
    server.set_scenario(Scenario.server_error(status=502, times=1))
    async with client_for(server, sleeps) as client:
        thread = await client.fetch_thread(3699748)
    assert thread.title == "今日好熱"
    assert len(server.requests) == 2
    [wait] = sleeps.waits
    assert 0.25 <= wait <= 0.5


async def test_server_errors_give_up_after_bounded_retries(server, sleeps) -> None:
    server.set_scenario(Scenario.server_error(status=500, times=None))
    async with client_for(server, sleeps, retries=3) as client:
        with pytest.raises(LihkgError) as caught:
            await client.fetch_thread(3699748)
    assert "HTTP 500" in str(caught.value) and "4 of 4" in str(caught.value)
    assert len(server.requests) == 4
    assert len(sleeps.waits) == 3
    for attempt, wait in enumerate(sleeps.waits):  # exponential with jitter
        assert 0.25 * 2**attempt <= wait <= 0.5 * 2**attempt


async def test_rate_limit_honours_retry_after_seconds(server, sleeps) -> None:
    server.set_scenario(Scenario.rate_limited(retry_after="2", times=2))
    async with client_for(server, sleeps) as client:
        thread = await client.fetch_thread(3699748)
    assert thread.thread_id == 3699748
    assert sleeps.waits == [2.0, 2.0] and len(server.requests) == 3


async def test_rate_limit_honours_retry_after_http_date(server, sleeps) -> None:
    server.set_scenario(Scenario.rate_limited(retry_after=email.utils.formatdate(time.time() + 10, usegmt=True), times=1))
    async with client_for(server, sleeps) as client:
        await client.fetch_thread(3699748)
    [wait] = sleeps.waits
    assert 8 <= wait <= 10


async def test_rate_limit_that_never_ends_raises_with_retry_after(server, sleeps) -> None:
    server.set_scenario(Scenario.rate_limited(retry_after="3"))
    async with client_for(server, sleeps, retries=2) as client:
        with pytest.raises(LihkgRateLimited) as caught:
            await client.fetch_thread(3699748)
    assert caught.value.retry_after == 3.0
    assert sleeps.waits == [3.0, 3.0] and len(server.requests) == 3


@pytest.mark.parametrize(("header", "expected"), [("600", 600.0), (None, 300.0)])
async def test_too_long_retry_after_gives_up_at_once(server, sleeps, header, expected) -> None:
    server.set_scenario(Scenario.rate_limited(retry_after=header))
    async with client_for(server, sleeps, max_retry_after=30.0) as client:
        with pytest.raises(LihkgRateLimited) as caught:
            await client.fetch_thread(3699748)
    assert caught.value.retry_after == expected
    assert sleeps.waits == [] and len(server.requests) == 1


async def test_slow_answers_time_out_after_retries(server, sleeps) -> None:
    server.set_scenario(Scenario.slow(2.0))
    async with client_for(server, sleeps, timeout=0.2, retries=1) as client:
        with pytest.raises(LihkgTimeout) as caught:
            await client.fetch_thread(3699748)
    assert caught.value.user_message == LihkgTimeout.user_message
    assert len(sleeps.waits) == 1
    # The server may record the second (abandoned) request a moment after the client gave up.
    for _ in range(100):
        if len(server.requests) == 2:
            break
        await asyncio.sleep(0.02)
    assert len(server.requests) == 2


async def test_one_slow_answer_is_retried(server, sleeps) -> None:
    server.set_scenario(Scenario.slow(2.0, times=1))
    async with client_for(server, sleeps, timeout=0.2, retries=1) as client:
        thread = await client.fetch_thread(3699748)
    assert thread.title == "今日好熱" and len(server.requests) == 2


async def test_connection_refused_becomes_lihkg_error(sleeps) -> None:
    client = LihkgClient(f"http://127.0.0.1:{closed_port()}", retries=1, sleep=sleeps, device_id=DEVICE)
    async with client:
        with pytest.raises(LihkgError) as caught:
            await client.fetch_thread(1)
    assert type(caught.value) is LihkgError and "ConnectError" in str(caught.value)
    assert len(sleeps.waits) == 1


# ---------------------------------------------------------------------------- headers, hosts, proxy


async def test_browser_headers_are_sent(server, sleeps) -> None:
    async with client_for(server, sleeps) as client:
        await client.fetch_page(777, 2)
    [request] = server.requests
    assert request.header("Accept") == "application/json, text/plain, */*"
    assert request.header("User-Agent").startswith("Mozilla/5.0") and "Chrome/" in request.header("User-Agent")
    assert request.header("Referer") == f"{server.base_url}/thread/777/page/1"
    assert request.header("X-LI-DEVICE") == DEVICE
    assert request.header("X-LI-DEVICE-TYPE") == "browser"


async def test_device_id_is_stable_per_state_dir(server, sleeps, tmp_path) -> None:
    settings = Settings(lihkg_base_url=server.base_url, state_dir=str(tmp_path / "state"))
    for _ in range(2):
        async with LihkgClient.from_settings(settings) as client:
            await client.fetch_page(777, 1)
            client._cache.clear()
    other = Settings(lihkg_base_url=server.base_url, state_dir=str(tmp_path / "other"))
    async with LihkgClient.from_settings(other) as client:
        await client.fetch_page(777, 1)
    first, second, third = (r.header("X-LI-DEVICE") for r in server.requests)
    assert first == second != third
    assert re.fullmatch(r"[0-9a-f]{40}", first)
    assert (tmp_path / "state" / "device_id").read_text().strip() == first


def test_device_id_falls_back_to_memory_when_dir_is_unwritable(tmp_path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    first, second = load_device_id(blocker / "state"), load_device_id(blocker / "state")
    assert re.fullmatch(r"[0-9a-f]{40}", first) and first != second


def test_corrupt_device_id_file_is_replaced(tmp_path) -> None:
    (tmp_path / "device_id").write_text("garbage")
    device_id = load_device_id(tmp_path)
    assert re.fullmatch(r"[0-9a-f]{40}", device_id)
    assert load_device_id(tmp_path) == device_id


async def test_redirects_are_not_followed_to_another_host(server, sleeps) -> None:
    with FakeLihkgServer() as elsewhere:
        server.set_scenario(Scenario.redirect(f"{elsewhere.base_url}/api_v2/thread/1/page/1"))
        async with client_for(server, sleeps) as client:
            with pytest.raises(LihkgBadResponse):
                await client.fetch_thread(3699748)
        assert elsewhere.requests == []
    assert {r.header("Host") for r in server.requests} == {f"127.0.0.1:{server.port}"}


async def test_proxy_carries_the_requests(server, sleeps) -> None:
    # The fake server also answers absolute-URL requests, so it can play the proxy.
    client = LihkgClient("http://lihkg.invalid", proxy=server.base_url, sleep=sleeps, device_id=DEVICE)
    async with client:
        thread = await client.fetch_thread(3699748)
    assert thread.title == "今日好熱"
    assert server.requests[0].header("Host") == "lihkg.invalid"


async def test_proxy_url_never_appears_in_errors(sleeps) -> None:
    proxy = f"http://alice:s3cr3t-pw@127.0.0.1:{closed_port()}"
    client = LihkgClient("http://lihkg.invalid", proxy=proxy, retries=1, sleep=sleeps, device_id=DEVICE)
    async with client:
        with pytest.raises(LihkgError) as caught:
            await client.fetch_thread(3699748)
    error = caught.value
    for text in (str(error), repr(error), error.user_message):
        assert "s3cr3t" not in text and "alice" not in text
    assert error.__cause__ is None and error.__context__ is None


async def test_proxy_secrets_are_scrubbed_from_library_messages(sleeps) -> None:
    proxy = "http://alice:s3cr3t-pw@proxy.example:3128"

    def fail(request: httpx.Request) -> httpx.Response:
        raise httpx.ProxyError(f"cannot tunnel via {proxy} (user alice, password s3cr3t-pw)")

    client = LihkgClient(proxy=proxy, transport=httpx.MockTransport(fail), retries=0, sleep=sleeps, device_id=DEVICE)
    async with client:
        with pytest.raises(LihkgError) as caught:
            await client.fetch_thread(1)
    assert "ProxyError" in str(caught.value) and "***" in str(caught.value)
    assert "s3cr3t" not in str(caught.value) and "alice" not in str(caught.value)


def test_unusable_proxy_is_a_config_error_without_the_secret() -> None:
    with pytest.raises(ConfigError) as caught:
        LihkgClient(proxy="ftp://bob:hunter2@proxy.example:21")
    assert "hunter2" not in str(caught.value)


# ---------------------------------------------------------------------------- cache


async def test_same_thread_twice_is_one_request(server, sleeps) -> None:
    async with client_for(server, sleeps) as client:
        first = await client.fetch_thread(3699748)
        second = await client.fetch_thread(Link(3699748, page=1))
    assert first == second and len(server.requests) == 1


async def test_cache_entries_expire_after_ttl(server, sleeps) -> None:
    now = [1000.0]
    async with client_for(server, sleeps, cache_ttl=60.0, clock=lambda: now[0]) as client:
        await client.fetch_thread(3699748)
        now[0] += 59
        await client.fetch_thread(3699748)
        now[0] += 2
        await client.fetch_thread(3699748)
    assert len(server.requests) == 2


async def test_concurrent_requests_share_one_fetch(server, sleeps) -> None:
    server.set_scenario(Scenario.slow(0.3, times=1))
    async with client_for(server, sleeps) as client:
        threads = await asyncio.gather(*(client.fetch_thread(3699748) for _ in range(5)))
    assert len(server.requests) == 1
    assert all(t == threads[0] for t in threads)


async def test_failures_are_not_cached(server, sleeps) -> None:
    server.set_scenario(Scenario.forbidden(times=1))
    async with client_for(server, sleeps) as client:
        with pytest.raises(LihkgBlocked):
            await client.fetch_thread(3699748)
        thread = await client.fetch_thread(3699748)
    assert thread.title == "今日好熱" and len(server.requests) == 2


def test_ttl_cache_evicts_least_recently_used() -> None:
    cache: TTLCache[str, int] = TTLCache(ttl=10, max_size=2, clock=lambda: 0.0)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # now "b" is the least recently used
    cache.put("c", 3)
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == (1, None, 3)


async def test_ttl_cache_survives_a_cancelled_waiter() -> None:
    cache: TTLCache[str, str] = TTLCache(ttl=10)
    calls = []

    async def load() -> str:
        calls.append(1)
        await asyncio.sleep(0.05)
        return "value"

    impatient = asyncio.ensure_future(cache.get_or_load("k", load))
    patient = asyncio.ensure_future(cache.get_or_load("k", load))
    await asyncio.sleep(0)
    impatient.cancel()
    assert await patient == "value"
    assert await cache.get_or_load("k", load) == "value" and len(calls) == 1


# ---------------------------------------------------------------------------- parsing


def test_string_and_int_shaped_payloads_parse_alike() -> None:
    posts = ["一樓", FakePost("二樓", like_count=12, quote=1)]
    old = parse_thread_page(make_thread(9, "t", 33, posts, category_name="政事台").page_payload(1))
    new = parse_thread_page(make_thread(9, "t", 33, posts, category_name="政事台", int_counts=True).page_payload(1))
    assert old == new
    assert old.posts[1].like_count == 12 and old.posts[1].quote.msg == "一樓"


def test_missing_optional_keys_are_tolerated() -> None:
    payload = {
        "success": 1,
        "response": {"thread_id": "5", "title": "t", "cat_id": 32, "item_data": [{"post_id": "p", "msg_num": 1}]},
    }
    thread = parse_thread_page(payload)
    assert (thread.category, thread.no_of_reply, thread.parent_thread_id) == ("黑\u3000洞", 0, None)
    assert (thread.first_post.msg, thread.first_post.user_id, thread.first_post.quote) == ("", "", None)


@pytest.mark.parametrize(
    "payload",
    [
        [],
        {"success": 1},
        {"success": 1, "response": {"title": "no id"}},
        {"success": 1, "response": {"thread_id": "abc", "title": "t"}},
        {"success": 1, "response": {"thread_id": "1", "title": "t", "item_data": {"0": {}}}},
        {"success": 1, "response": {"thread_id": "1", "title": "t", "item_data": [{"msg_num": "1"}]}},
        {"success": 1, "response": {"thread_id": "1", "title": "t", "item_data": [{"post_id": "p", "msg_num": "x"}]}},
        {"server_time": 1},
        {"success": 0, "error_code": 998, "error_message": "系統維護中"},
    ],
)
def test_wrong_shapes_are_bad_responses(payload) -> None:
    with pytest.raises(LihkgBadResponse):
        parse_thread_page(payload)


@pytest.mark.parametrize(
    "envelope",
    [
        {"success": 0, "error_code": 100, "error_message": "找不到主題"},
        {"success": "0", "error_code": "100", "error_message": ""},
        {"success": 0, "error_code": 105, "error_message": "此主題已被刪除"},
    ],
)
def test_error_envelopes_for_missing_threads(envelope) -> None:
    with pytest.raises(ThreadNotFound):
        parse_thread_page(envelope)

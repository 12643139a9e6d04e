"""A fake LIHKG API: a real HTTP server on 127.0.0.1 (ephemeral port) in a daemon thread.

It serves `GET /api_v2/thread/{id}/page/{p}` for the threads it holds, in the exact JSON
shape of a real LIHKG answer (see `make_thread`), and the thread lists `/api_v2/thread/category`,
`/thread/latest` and `/thread/hot` (60 a page, `error_code: 100` past the end). It records every
request, and can be told to misbehave the ways LIHKG does (`Scenario`): 403 bans, 429 with
Retry-After, 404, error envelopes, Cloudflare challenge pages, slow answers, malformed JSON, 5xx,
redirects. `enforce_rate_limit(RateLimitPolicy(...))` turns on a per-IP limiter (off by default).

    with FakeLihkgServer() as server:
        server.add_thread(make_thread(100, "標題", 1, ["第一個 post"]))
        server.set_scenario(Scenario.server_error(times=1))
        ... LihkgClient(server.base_url) ...
        assert len(server.requests) == 2
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from tests.fakes.lihkg_ip_limit import (
    CLIENT_IP_HEADER,
    DIRECT,
    IpRateLimiter,
    IpStats,
    RateLimitPolicy,
)
from tests.fakes.lihkg_threads import PAGE_SIZE, FakePost, FakeThread, make_thread
from tests.fakes.loopback import LoopbackServer

__all__ = [
    "PAGE_SIZE",
    "FakeLihkgServer",
    "FakePost",
    "FakeThread",
    "IpStats",
    "RateLimitPolicy",
    "RecordedRequest",
    "Scenario",
    "make_thread",
]

THREAD_PAGE_RE = re.compile(r"^/api_v2/thread/(\d+)/page/(\d+)$")
LIST_PATHS = {"/api_v2/thread/category": "category", "/api_v2/thread/latest": "latest", "/api_v2/thread/hot": "hot"}
LIST_PAGE_SIZE = 60
MISSING_CODE = 100
MISSING_MESSAGE = "找不到主題"
NO_MORE_MESSAGE = "沒有更多主題"
CHALLENGE_HTML = (
    "<!DOCTYPE html><html lang=\"en-US\"><head><title>Just a moment...</title></head><body>"
    "<noscript>Enable JavaScript and cookies to continue</noscript>"
    "<script src=\"/cdn-cgi/challenge-platform/h/g/orchestrate/chl_page/v1\"></script>"
    "</body></html>"
)


# ---------------------------------------------------------------------------- scenarios


@dataclass(frozen=True)
class Scenario:
    """One way of misbehaving; `times=None` means on every request, N the next N requests."""

    kind: str
    times: int | None = None
    status: int = 200
    retry_after: str | None = None
    delay: float = 0.0
    error_code: int = MISSING_CODE
    error_message: str = MISSING_MESSAGE
    location: str = ""

    @classmethod
    def forbidden(cls, times: int | None = None) -> Scenario:
        return cls("forbidden", times, status=403)

    @classmethod
    def rate_limited(cls, retry_after: str | None = "1", times: int | None = None) -> Scenario:
        return cls("rate_limited", times, status=429, retry_after=retry_after)

    @classmethod
    def not_found(cls, times: int | None = None) -> Scenario:
        return cls("not_found", times, status=404)

    @classmethod
    def error_envelope(cls, code: int = MISSING_CODE, message: str = MISSING_MESSAGE, times: int | None = None) -> Scenario:
        return cls("error_envelope", times, error_code=code, error_message=message)

    @classmethod
    def challenge(cls, status: int = 403, times: int | None = None) -> Scenario:
        return cls("challenge", times, status=status)

    @classmethod
    def slow(cls, delay: float, times: int | None = None) -> Scenario:
        return cls("slow", times, delay=delay)

    @classmethod
    def malformed_json(cls, times: int | None = None) -> Scenario:
        return cls("malformed_json", times)

    @classmethod
    def server_error(cls, status: int = 500, times: int | None = 1) -> Scenario:
        return cls("server_error", times, status=status)

    @classmethod
    def redirect(cls, location: str, status: int = 302, times: int | None = None) -> Scenario:
        return cls("redirect", times, status=status, location=location)


@dataclass(frozen=True)
class RecordedRequest:
    """What the server saw; header names are lower-cased."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str] = field(default_factory=dict)

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


# ---------------------------------------------------------------------------- the server


class FakeLihkgServer(LoopbackServer):
    """The fake API. Use as a context manager; `base_url` is like `https://lihkg.com`."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.requests: list[RecordedRequest] = []
        self._threads: dict[int, FakeThread] = {}
        self._raw_pages: dict[tuple[int, int], dict[str, Any] | str] = {}
        self._scenarios: dict[int | None, Scenario] = {}
        self._ip_limiter: IpRateLimiter | None = None
        self._lock = threading.Lock()
        self._stopping = threading.Event()

    # -- lifecycle (start, stop, `with`, port: LoopbackServer)

    def _make_server(self) -> ThreadingHTTPServer:
        self._stopping.clear()
        httpd = _QuietHTTPServer((self.host, 0), _Handler)
        httpd.fake = self
        return httpd

    def _before_stop(self) -> None:
        self._stopping.set()  # wakes handlers sleeping in a slow scenario

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # -- content and behaviour

    def add_thread(self, thread: FakeThread) -> FakeThread:
        with self._lock:
            self._threads[thread.thread_id] = thread
        return thread

    def add_raw_page(self, thread_id: int, page: int, payload: dict[str, Any] | str) -> None:
        """Serve `payload` verbatim (a dict as JSON, a str as is) for one page."""
        with self._lock:
            self._raw_pages[(thread_id, page)] = payload

    def set_scenario(self, scenario: Scenario, *, thread_id: int | None = None) -> None:
        """Misbehave for one thread, or for every request when `thread_id` is None."""
        with self._lock:
            self._scenarios[thread_id] = scenario

    def clear_scenarios(self) -> None:
        with self._lock:
            self._scenarios.clear()

    def remove_thread(self, thread_id: int) -> None:
        with self._lock:
            self._threads.pop(thread_id, None)

    def remove_raw_page(self, thread_id: int, page: int) -> None:
        with self._lock:
            self._raw_pages.pop((thread_id, page), None)

    def enforce_rate_limit(self, policy: RateLimitPolicy | None) -> None:
        """Limit every IP (the `X-Fake-Client-IP` header, else "direct") per `policy`; None: off."""
        with self._lock:
            self._ip_limiter = IpRateLimiter(policy) if policy is not None else None

    def ip_stats(self) -> dict[str, IpStats]:
        """Per IP: requests answered, 429s, 403s and when it was banned (empty when no limit)."""
        with self._lock:
            limiter = self._ip_limiter
        return limiter.stats() if limiter is not None else {}

    def requests_for(self, thread_id: int) -> list[RecordedRequest]:
        prefix = f"/api_v2/thread/{thread_id}/"
        with self._lock:
            return [r for r in self.requests if r.path.startswith(prefix)]

    # -- used by the handler thread

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def _take_scenario(self, thread_id: int | None) -> Scenario | None:
        """The scenario for this request (thread's own first), counting down `times`."""
        with self._lock:
            key = thread_id if thread_id in self._scenarios else None
            scenario = self._scenarios.get(key)
            if scenario is None:
                return None
            if scenario.times is not None:
                left = scenario.times - 1
                if left <= 0:
                    del self._scenarios[key]
                else:
                    self._scenarios[key] = replace(scenario, times=left)
            return scenario

    def _limit(self, identity: str) -> str:
        with self._lock:
            limiter = self._ip_limiter
        return limiter.check(identity) if limiter is not None else "ok"

    def _list_page(self, kind: str, query: dict[str, str]) -> dict[str, Any]:
        """One page of a thread list, or the `error_code: 100` envelope past its end."""
        try:
            page = max(1, int(query.get("page", "1")))
            count = min(LIST_PAGE_SIZE, max(1, int(query.get("count", str(LIST_PAGE_SIZE)))))
            cat_id = int(query.get("cat_id", "1"))
        except ValueError:
            return _envelope(998, "參數錯誤")
        with self._lock:
            threads = list(self._threads.values())
        if kind == "category":
            threads = [t for t in threads if t.cat_id == cat_id]
            threads.sort(key=lambda t: (t.last_reply_time, t.thread_id), reverse=True)
        elif kind == "latest":
            threads.sort(key=lambda t: (t.create_time, t.thread_id), reverse=True)
        else:  # hot: the most replied first
            threads.sort(key=lambda t: (len(t.posts), t.thread_id), reverse=True)
        chosen = threads[(page - 1) * count : page * count]
        if not chosen:
            return _envelope(MISSING_CODE, NO_MORE_MESSAGE)
        name = chosen[0].category_name if kind == "category" else {"latest": "最\u3000新", "hot": "熱\u3000門"}[kind]
        category = {"cat_id": str(cat_id), "name": name, "postable": True}
        response = {"category": category, "is_pagination": True, "items": [t.list_item_payload() for t in chosen]}
        return {"success": 1, "server_time": int(time.time()), "response": response}

    def _page(self, thread_id: int, page: int) -> dict[str, Any] | str | None:
        with self._lock:
            if (thread_id, page) in self._raw_pages:
                return self._raw_pages[(thread_id, page)]
            thread = self._threads.get(thread_id)
        if thread is None or not 1 <= page <= thread.total_page:
            return None
        return thread.page_payload(page)


class _QuietHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeLihkgServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients that time out and hang up are part of the tests, not errors


class _Handler(BaseHTTPRequestHandler):
    server: _QuietHTTPServer
    server_version = "FakeLIHKG/1.0"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        fake = self.server.fake
        parts = urlsplit(self.path)
        fake._record(
            RecordedRequest(
                method="GET",
                path=parts.path,
                query=dict(parse_qsl(parts.query)),
                headers={k.lower(): v for k, v in self.headers.items()},
            )
        )
        verdict = fake._limit(self.headers.get(CLIENT_IP_HEADER) or DIRECT)
        if verdict != "ok":
            self._refuse(verdict, fake)
            return
        list_kind = LIST_PATHS.get(parts.path)
        match = THREAD_PAGE_RE.match(parts.path)
        if match is None and list_kind is None:
            self._send_json(404, {"success": 0, "error_code": 404, "error_message": "not found"})
            return
        thread_id = int(match.group(1)) if match else None
        scenario = fake._take_scenario(thread_id)
        if scenario is not None and self._misbehave(scenario):
            return
        if list_kind is not None:
            self._send_json(200, fake._list_page(list_kind, dict(parse_qsl(parts.query))))
            return
        page = int(match.group(2))
        payload = fake._page(thread_id, page)
        if payload is None:
            payload = _envelope(MISSING_CODE, MISSING_MESSAGE)
        if isinstance(payload, str):
            self._send(200, payload.encode(), "application/json; charset=utf-8")
        else:
            self._send_json(200, payload)

    def _refuse(self, verdict: str, fake: FakeLihkgServer) -> None:
        """The per-IP limiter's answer: 429 with Retry-After, or 403 for a banned IP."""
        if verdict == "banned":
            self._send_json(403, {"success": 0, "error_code": 403, "error_message": "banned"})
            return
        retry_after = fake._ip_limiter.policy.retry_after if fake._ip_limiter else 1.0
        headers = {"Retry-After": f"{retry_after:g}"}
        self._send_json(429, {"success": 0, "error_code": 429, "error_message": "Too Many Requests"}, headers)

    def _misbehave(self, scenario: Scenario) -> bool:
        """Answer per `scenario`; False when the normal answer should follow (slow)."""
        kind = scenario.kind
        if kind == "slow":
            self.server.fake._stopping.wait(scenario.delay)
            return False
        if kind == "rate_limited":
            headers = {"Retry-After": scenario.retry_after} if scenario.retry_after is not None else {}
            self._send_json(429, {"success": 0, "error_code": 429, "error_message": "Too Many Requests"}, headers)
        elif kind == "challenge":
            headers = {"Server": "cloudflare", "cf-ray": "8a1b2c3d4e5f6a7b-HKG", "cf-mitigated": "challenge"}
            self._send(scenario.status, CHALLENGE_HTML.encode(), "text/html; charset=UTF-8", headers)
        elif kind == "error_envelope":
            self._send_json(200, _envelope(scenario.error_code, scenario.error_message))
        elif kind == "malformed_json":
            self._send(200, b'{"success": 1, "response": {"thread_id": "1", "title": ', "application/json")
        elif kind == "redirect":
            self._send(scenario.status, b"", "text/plain", {"Location": scenario.location})
        else:  # forbidden, not_found, server_error: a bare status with a small JSON body
            self._send_json(scenario.status, {"success": 0, "error_code": scenario.status, "error_message": kind})
        return True

    def _send_json(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        body = json.dumps(payload, ensure_ascii=False).encode()
        self._send(status, body, "application/json; charset=utf-8", headers)

    def _send(self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)


def _envelope(code: int, message: str) -> dict[str, Any]:
    return {"success": 0, "server_time": int(time.time()), "error_code": code, "error_message": message}

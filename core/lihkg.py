"""The LIHKG API client: one async httpx client, bounded retries, a TTL cache.

Every failure leaves this module as one of the project's `LihkgError`s (see core.errors);
no httpx exception and no proxy URL (it may hold credentials) gets past it.

    async with LihkgClient.from_settings(settings) as lihkg:
        thread = await lihkg.fetch_thread(3699748)
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, Self

import httpx

from core.device import is_device_id, load_device_id, new_device_id
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
from core.lihkg_parse import parse_thread_page
from core.thread import Thread
from core.ttl_cache import TTLCache

__all__ = ["LihkgClient", "backoff_delay", "parse_retry_after", "parse_thread_page"]

DEFAULT_BASE_URL = "https://lihkg.com"
DEFAULT_USER_AGENT = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36"
)
ACCEPT = "application/json, text/plain, */*"
DEFAULT_RETRY_AFTER = 300.0  # seconds, for a 429 without a usable Retry-After (LIHKG's usual)
BACKOFF_BASE = 0.5  # first retry waits 0.25-0.5 s, then doubles
BACKOFF_MAX = 8.0
CACHE_SIZE = 256
ORDERS = ("reply_time", "score")
_CHALLENGE_MARKERS = (b"challenge-platform", b"cf-chl", b"cf_chl", b"just a moment", b"attention required")

Sleep = Callable[[float], Awaitable[Any]]


class ThreadRef(Protocol):
    """Anything with a thread id and a page, such as `core.links.ThreadLink`."""

    thread_id: int
    page: int


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (seconds or HTTP date); None if unusable.

    >>> parse_retry_after("120")
    120.0
    >>> parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now=1445412480.0)
    30.0
    >>> parse_retry_after("soon") is None
    True
    """
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when is None or when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def backoff_delay(attempt: int, *, rand: Callable[[], float] = random.random) -> float:
    """Wait before retry number `attempt + 1`: exponential, half of it random ("equal jitter").

    >>> backoff_delay(0, rand=lambda: 0.0), backoff_delay(2, rand=lambda: 1.0)
    (0.25, 2.0)
    """
    ceiling = min(BACKOFF_MAX, BACKOFF_BASE * 2**attempt)
    return ceiling / 2 + rand() * ceiling / 2


def _is_html(response: httpx.Response) -> bool:
    if "html" in response.headers.get("content-type", "").lower():
        return True
    return response.content[:64].lstrip().startswith(b"<")


def _is_cloudflare_challenge(response: httpx.Response) -> bool:
    """An HTML answer from Cloudflare that is a challenge, not one of its 5xx error pages."""
    head = response.content[:20_000].lower()
    if response.headers.get("cf-mitigated") or any(marker in head for marker in _CHALLENGE_MARKERS):
        return True
    from_cloudflare = response.headers.get("server", "").lower() == "cloudflare" or any(
        name.lower().startswith("cf-") for name in response.headers
    )
    # Cloudflare's own 5xx pages (origin down) carry cf- headers too; those are retried.
    return from_cloudflare and response.status_code < 500


def _positive_int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{what} must be a positive int, got {value!r}")
    return value


class LihkgClient:
    """Anonymous reads of LIHKG thread pages, the way a browser makes them.

    `transport` replaces the network (and the proxy) in tests; `sleep` is awaited for every
    backoff so tests can record the waits instead of waiting.
    """

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        *,
        timeout: float = 10.0,
        retries: int = 3,
        max_retry_after: float = 30.0,
        proxy: str | None = None,
        device_id: str | None = None,
        cache_ttl: float = 300.0,
        cache_size: int = CACHE_SIZE,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Sleep = asyncio.sleep,
        user_agent: str = DEFAULT_USER_AGENT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ConfigError(f"LIHKG base URL must start with http:// or https://, got {base_url!r}")
        if retries < 0 or timeout <= 0:
            raise ConfigError(f"need retries >= 0 and timeout > 0, got retries={retries}, timeout={timeout}")
        device_id = device_id or new_device_id()
        if not is_device_id(device_id):
            raise ConfigError(f"device id must be 40 lowercase hex digits, got {device_id!r}")
        self.base_url = base_url.rstrip("/")
        self.device_id = device_id
        self._retries = retries
        self._max_retry_after = max_retry_after
        self._sleep = sleep
        self._secrets = _secret_parts(proxy)
        self._cache: TTLCache[tuple[int, int, str], Thread] = TTLCache(cache_ttl, max_size=cache_size, clock=clock)
        headers = {
            "Accept": ACCEPT,
            "User-Agent": user_agent,
            "X-LI-DEVICE": device_id,
            "X-LI-DEVICE-TYPE": "browser",
        }
        try:
            self._http = httpx.AsyncClient(
                base_url=self.base_url,
                headers=headers,
                timeout=httpx.Timeout(timeout),
                follow_redirects=False,
                # Only the configured proxy: no HTTP(S)_PROXY or netrc from the environment.
                trust_env=False,
                proxy=None if transport is not None else (proxy or None),
                transport=transport,
            )
        except (ValueError, TypeError, ImportError, httpx.InvalidURL) as exc:
            raise ConfigError(f"cannot use the LIHKG proxy setting: {self._scrub(str(exc))}") from None

    @classmethod
    def from_settings(cls, settings: Any, *, transport: httpx.AsyncBaseTransport | None = None) -> LihkgClient:
        """A client configured by `core.settings.Settings` (device id kept in `state_dir`)."""
        return cls(
            settings.lihkg_base_url,
            timeout=settings.lihkg_timeout,
            retries=settings.lihkg_retries,
            max_retry_after=settings.lihkg_max_retry_after,
            proxy=settings.lihkg_proxy or None,
            device_id=load_device_id(settings.state_dir),
            cache_ttl=settings.lihkg_cache_ttl,
            transport=transport,
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def fetch_thread(self, thread: int | ThreadRef) -> Thread:
        """Page 1 of a thread: category, title and the first post (whatever page a link named)."""
        return await self.fetch_page(getattr(thread, "thread_id", thread), 1)

    async def fetch_page(
        self, thread: int | ThreadRef, page: int | None = None, *, order: str = "reply_time"
    ) -> Thread:
        """One page (25 posts) of a thread; `page` defaults to the link's page, else 1."""
        thread_id = _positive_int(getattr(thread, "thread_id", thread), "thread_id")
        if page is None:
            page = getattr(thread, "page", 1) or 1
        page = _positive_int(page, "page")
        if order not in ORDERS:
            raise ValueError(f"order must be one of {ORDERS}, got {order!r}")
        key = (thread_id, page, order)
        return await self._cache.get_or_load(key, lambda: self._fetch_uncached(thread_id, page, order))

    async def _fetch_uncached(self, thread_id: int, page: int, order: str) -> Thread:
        payload = await self._get_json(
            f"/api_v2/thread/{thread_id}/page/{page}",
            params={"order": order},
            referer=f"{self.base_url}/thread/{thread_id}/page/1",
        )
        return parse_thread_page(payload)

    async def _get_json(self, path: str, *, params: dict[str, str], referer: str) -> Any:
        """GET with bounded retries; the decoded JSON or a `LihkgError`."""
        attempts = self._retries + 1
        failure: LihkgError = LihkgError("no attempt made")
        wait = 0.0
        for attempt in range(attempts):
            if attempt:
                await self._sleep(wait)
            tried = f"(attempt {attempt + 1} of {attempts})"
            try:
                response = await self._http.get(path, params=params, headers={"Referer": referer})
            except httpx.TimeoutException as exc:
                failure, wait = LihkgTimeout(f"LIHKG timed out {tried}: {self._describe(exc)}"), backoff_delay(attempt)
                continue
            except httpx.TransportError as exc:
                failure, wait = LihkgError(f"cannot reach LIHKG {tried}: {self._describe(exc)}"), backoff_delay(attempt)
                continue
            except httpx.HTTPError as exc:
                raise LihkgBadResponse(f"LIHKG answer unreadable: {self._describe(exc)}") from None

            status = response.status_code
            if _is_html(response) and _is_cloudflare_challenge(response):
                raise LihkgChallenge(f"LIHKG (Cloudflare) answered HTTP {status} with a challenge page")
            if status == 429:
                retry_after = parse_retry_after(response.headers.get("retry-after"))
                retry_after = DEFAULT_RETRY_AFTER if retry_after is None else retry_after
                detail = f"LIHKG rate-limited us (HTTP 429, Retry-After {retry_after:g} s) {tried}"
                failure, wait = LihkgRateLimited(detail, retry_after=retry_after), retry_after
                if retry_after > self._max_retry_after:
                    raise failure
                continue
            if status >= 500:
                failure, wait = LihkgError(f"LIHKG answered HTTP {status} {tried}"), backoff_delay(attempt)
                continue
            return _decode_json(response)
        raise failure

    def _describe(self, exc: BaseException) -> str:
        return f"{type(exc).__name__}: {self._scrub(str(exc))}"[:300]

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text


def _decode_json(response: httpx.Response) -> Any:
    """The JSON body of a non-retryable answer, or the error it stands for."""
    status = response.status_code
    if status == 403:
        raise LihkgBlocked("LIHKG answered HTTP 403: this IP or proxy is banned")
    if status == 404:
        raise ThreadNotFound("LIHKG answered HTTP 404")
    if 300 <= status < 400:
        raise LihkgBadResponse(f"LIHKG redirected (HTTP {status}); redirects are not followed")
    if status != 200:
        raise LihkgBadResponse(f"LIHKG answered HTTP {status}, expected 200")
    if _is_html(response):
        ctype = response.headers.get("content-type", "?")
        raise LihkgBadResponse(f"LIHKG answered HTML ({ctype}) where JSON was expected")
    try:
        return json.loads(response.content)
    except (ValueError, UnicodeDecodeError) as exc:
        raise LihkgBadResponse(f"LIHKG answered malformed JSON: {exc}"[:300]) from None


def _secret_parts(proxy: str | None) -> list[str]:
    """The proxy URL and its credentials, longest first, to scrub from error text."""
    if not proxy:
        return []
    parts = {proxy}
    try:
        url = httpx.URL(proxy)
        parts.update(p for p in (url.userinfo.decode(errors="replace"), url.username, url.password) if p)
        parts.add(str(url))
    except (httpx.InvalidURL, ValueError, TypeError):
        pass
    return sorted(parts, key=len, reverse=True)

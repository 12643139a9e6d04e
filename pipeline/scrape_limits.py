"""Politeness for the scraper: a request-rate limit per IP, a pool of IPs (proxies), retries.

Every exit to LIHKG (the direct connection, each proxy) is one "IP" with its own limiter:
requests leave it at most `requests_per_minute`, evenly spaced. HTTP 403 retires an exit for
the rest of the run (LIHKG bans IPs), 429 parks it for `Retry-After`, a Cloudflare challenge
parks it for `CHALLENGE_PAUSE`. Every other failure is retried with backoff, a bounded number of
times. Proxy URLs may hold credentials: exits are named "direct", "proxy 1", ... and the URLs
never appear in logs or errors.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from core.errors import (
    ConfigError,
    LihkgBlocked,
    LihkgChallenge,
    LihkgError,
    LihkgRateLimited,
    ThreadNotFound,
)
from core.lihkg import DEFAULT_RETRY_AFTER, LihkgClient, backoff_delay

log = logging.getLogger(__name__)

T = TypeVar("T")
Sleep = Callable[[float], Awaitable[Any]]
Clock = Callable[[], float]

CHALLENGE_PAUSE = 120.0  # seconds an exit rests after a Cloudflare challenge page
SLOWDOWN_STEP = 1.2  # a 429 stretches that exit's request spacing by 20% (for good: a 429 costs a
MAX_SLOWDOWN = 4.0  # Retry-After of minutes on LIHKG), up to 4x the configured spacing
SPACING_TOLERANCE = 0.9  # two requests on one IP never leave closer than 90% of its spacing
RATE_LIMITED_TRIES_FACTOR = 4  # a request may meet 429 this many times max_attempts (each parks an exit)
TRANSPORT_FAILURES_TO_RETIRE = 5  # consecutive connection failures or 5xx that retire a proxy


class SpacingLimiter:
    """At most `requests_per_minute`, evenly spaced: each request reserves the next free slot.

    >>> limiter = SpacingLimiter(60)
    >>> limiter.reserve(now=10.0), limiter.reserve(now=10.0), limiter.reserve(now=20.0)
    (10.0, 11.0, 20.0)
    """

    def __init__(self, requests_per_minute: float) -> None:
        if not requests_per_minute > 0 or math.isinf(requests_per_minute):
            raise ConfigError(f"requests per minute must be a positive number, got {requests_per_minute}")
        self.interval = self.base_interval = 60.0 / requests_per_minute
        self.next_free = -math.inf
        self.last_sent = -math.inf

    @property
    def requests_per_minute(self) -> float:
        return 60.0 / self.interval

    def slow_down(self) -> None:
        """After a 429: the server allows less than we were told (or jitter bunched our evenly
        spaced requests), so go slower from now on, down to a quarter of the configured rate.

        >>> limiter = SpacingLimiter(60)
        >>> limiter.slow_down(); limiter.requests_per_minute
        50.0
        """
        self.interval = min(self.base_interval * MAX_SLOWDOWN, self.interval * SLOWDOWN_STEP)

    def next_slot(self, now: float) -> float:
        return max(now, self.next_free)

    def reserve(self, now: float) -> float:
        """The time the caller may send; later callers get later slots."""
        slot = self.next_slot(now)
        self.next_free = slot + self.interval
        return slot

    def hold_until(self, when: float) -> None:
        self.next_free = max(self.next_free, when)

    def may_send(self, now: float) -> bool:
        """Whether a request woken at `now` keeps its distance from the last one sent. Slots are
        reserved ahead, so after a stall (a busy event loop) several would go out at once."""
        if now - self.last_sent < self.interval * SPACING_TOLERANCE:
            self.hold_until(self.last_sent + self.interval)
            return False
        self.last_sent = now
        return True


@dataclass(eq=False)
class Exit:
    """One way out to LIHKG: the direct connection or a proxy. `proxy` is secret."""

    label: str
    proxy: str | None
    limiter: SpacingLimiter
    parked_until: float = 0.0
    retired: str = ""  # why, once retired
    transport_failures: int = 0
    requests: int = 0

    def __repr__(self) -> str:  # never the proxy URL
        return f"Exit({self.label!r}, retired={self.retired!r})"


class ExitPool:
    """Hands out exits as their limiters allow, skipping parked and retired ones."""

    def __init__(self, exits: Sequence[Exit], *, clock: Clock = time.monotonic, sleep: Sleep = asyncio.sleep) -> None:
        if not exits:
            raise ConfigError("no way to reach LIHKG: no proxies and the direct connection is off")
        self.exits = list(exits)
        self._clock = clock
        self._sleep = sleep

    @property
    def active(self) -> list[Exit]:
        return [e for e in self.exits if not e.retired]

    async def acquire(self) -> Exit:
        """Wait for the exit that can send soonest and return it (its slot is now taken)."""
        while True:
            usable = self.active
            if not usable:
                reasons = "; ".join(f"{e.label}: {e.retired}" for e in self.exits)
                raise LihkgBlocked(f"every IP is banned or unusable ({reasons})")
            now = self._clock()
            ready = [e for e in usable if e.parked_until <= now]
            if not ready:
                await self._sleep(min(e.parked_until for e in usable) - now)
                continue
            chosen = min(ready, key=lambda e: e.limiter.next_slot(now))
            slot = chosen.limiter.reserve(now)
            if slot > now:
                await self._sleep(slot - now)
            if chosen.retired or chosen.parked_until > self._clock():
                continue  # parked or banned while we waited for its slot
            if not chosen.limiter.may_send(self._clock()):
                continue  # woke too late, right behind another request: queue again
            chosen.requests += 1
            return chosen

    def park(self, exit_: Exit, seconds: float) -> None:
        until = self._clock() + max(0.0, seconds)
        exit_.parked_until = max(exit_.parked_until, until)
        exit_.limiter.hold_until(exit_.parked_until)
        log.warning("LIHKG exit %s parked for %.1f s", exit_.label, seconds)

    def rate_limited(self, exit_: Exit, retry_after: float) -> None:
        """A 429: slow that exit down (once per episode, however many requests were in flight
        on it) and park it for `retry_after`."""
        if exit_.parked_until <= self._clock():
            exit_.limiter.slow_down()
        self.park(exit_, retry_after)

    def retire(self, exit_: Exit, reason: str) -> None:
        if not exit_.retired:
            exit_.retired = reason
            log.warning("LIHKG exit %s retired: %s (%d left)", exit_.label, reason, len(self.active))

    def transport_failed(self, exit_: Exit) -> None:
        exit_.transport_failures += 1
        if exit_.proxy and exit_.transport_failures >= TRANSPORT_FAILURES_TO_RETIRE:
            self.retire(exit_, f"{exit_.transport_failures} connection failures in a row")

    def succeeded(self, exit_: Exit) -> None:
        exit_.transport_failures = 0


def load_proxies(proxies: str = "", proxy_file: str = "") -> list[str]:
    """Proxy URLs from a comma list and/or a file (one a line, `#` comments), duplicates dropped.

    >>> load_proxies("http://a:1, http://b:2,,http://a:1")
    ['http://a:1', 'http://b:2']
    """
    found = [p.strip() for p in proxies.split(",")]
    if proxy_file:
        try:
            text = Path(proxy_file).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read LIHKG_PROXY_FILE {proxy_file}: {exc.strerror}") from None
        found += [line.split("#", 1)[0].strip() for line in text.splitlines()]
    unique = list(dict.fromkeys(p for p in found if p))
    for index, proxy in enumerate(unique, 1):
        if not proxy.startswith(("http://", "https://", "socks5://", "socks5h://")):
            raise ConfigError(f"proxy {index} must start with http://, https:// or socks5://")
    return unique


def build_exits(*, proxies: Sequence[str], direct: bool, direct_proxy: str | None, requests_per_minute: float) -> list[Exit]:
    """The direct exit (through `direct_proxy`, i.e. LIHKG_PROXY, when set) and one per proxy."""
    exits = [Exit("direct", direct_proxy or None, SpacingLimiter(requests_per_minute))] if direct else []
    exits += [Exit(f"proxy {n}", url, SpacingLimiter(requests_per_minute)) for n, url in enumerate(proxies, 1)]
    return exits


class ScrapeClient(LihkgClient):
    """The core LIHKG client (headers, device id, proxy, error mapping) for any API path."""

    async def get_json(self, path: str, *, params: dict[str, str], referer: str) -> Any:
        """One GET of `/api_v2/...`: the decoded JSON, or the `LihkgError` it stands for."""
        return await self._get_json(path, params=params, referer=referer)


@dataclass
class FetchStats:
    """Counts across a run, for the summary and the progress bar."""

    requests: int = 0
    failures: int = 0
    rate_limited: int = 0
    challenges: int = 0


class PoliteFetcher:
    """GETs through the pool with bounded retries; `parse` runs inside the retry loop."""

    def __init__(
        self,
        pool: ExitPool,
        clients: dict[str, ScrapeClient],
        *,
        max_attempts: int = 5,
        challenge_pause: float = CHALLENGE_PAUSE,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if max_attempts < 1:
            raise ConfigError(f"max attempts must be >= 1, got {max_attempts}")
        self.pool = pool
        self.clients = clients
        self.max_attempts = max_attempts
        self.challenge_pause = challenge_pause
        self.stats = FetchStats()
        self._sleep = sleep

    async def fetch(self, path: str, params: dict[str, str], *, referer: str, parse: Callable[[Any], T]) -> T:
        """`parse(json)` of a successful GET. ThreadNotFound passes through at once; other
        failures are retried, up to `max_attempts` (429s up to a few times that), then raised."""
        attempts = limited = 0
        while True:
            exit_ = await self.pool.acquire()
            self.stats.requests += 1
            try:
                result = parse(await self.clients[exit_.label].get_json(path, params=params, referer=referer))
            except LihkgBlocked:
                self.pool.retire(exit_, "HTTP 403 (banned)")  # not the request's fault: try another IP
                continue
            except LihkgRateLimited as exc:
                self.stats.rate_limited += 1
                self.pool.rate_limited(exit_, DEFAULT_RETRY_AFTER if exc.retry_after is None else exc.retry_after)
                limited += 1
                if limited >= self.max_attempts * RATE_LIMITED_TRIES_FACTOR:
                    raise
                continue
            except ThreadNotFound:
                self.pool.succeeded(exit_)
                raise
            except LihkgChallenge as exc:
                self.stats.challenges += 1
                self.pool.park(exit_, self.challenge_pause)
                failure: LihkgError = exc
            except LihkgError as exc:
                if type(exc) is LihkgError:  # connection failure or 5xx: maybe a dead proxy
                    self.pool.transport_failed(exit_)
                failure = exc
            else:
                self.pool.succeeded(exit_)
                return result
            self.stats.failures += 1
            attempts += 1
            if attempts >= self.max_attempts:
                raise failure
            await self._sleep(backoff_delay(attempts - 1))

"""A per-IP rate limiter for the fake LIHKG server, the way LIHKG (behind Cloudflare) acts.

Each client identity ("IP") gets a token bucket: `requests_per_minute` tokens a minute, at most
`burst` saved up. A request without a token is answered 429 with `Retry-After`; an identity that
collects `ban_after` 429s within `ban_window` seconds is banned for good (403 from then on).

On loopback every client is 127.0.0.1, so the identity is a header the tagging proxies
(tests/fakes/tagging_proxy.py) add; requests without it are the "direct" IP.

    >>> limiter = IpRateLimiter(RateLimitPolicy(requests_per_minute=60, burst=1), clock=lambda: 0.0)
    >>> limiter.check("direct"), limiter.check("direct")
    ('ok', 'limited')
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

CLIENT_IP_HEADER = "X-Fake-Client-IP"
DIRECT = "direct"


@dataclass(frozen=True)
class RateLimitPolicy:
    """What the fake server allows each IP."""

    requests_per_minute: float = 120.0
    burst: int = 5
    retry_after: float = 5.0  # seconds sent in Retry-After with every 429
    ban_after: int = 10  # this many 429s within ban_window seconds -> permanent 403
    ban_window: float = 60.0

    def __post_init__(self) -> None:
        if self.requests_per_minute <= 0 or self.burst < 1 or self.ban_after < 1:
            raise ValueError(f"need requests_per_minute > 0, burst >= 1, ban_after >= 1: {self}")


@dataclass
class IpStats:
    """What one identity got: answered, 429s, 403s, and when (clock time) it was banned."""

    ok: int = 0
    limited: int = 0
    forbidden: int = 0
    first_request_at: float | None = None
    last_ok_at: float | None = None
    banned_at: float | None = None
    _tokens: float = 0.0
    _refilled_at: float = 0.0
    _recent_429s: deque[float] = field(default_factory=deque)

    @property
    def banned(self) -> bool:
        return self.banned_at is not None


class IpRateLimiter:
    """Thread-safe: the fake server's handler threads call `check` for every request."""

    def __init__(self, policy: RateLimitPolicy, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.policy = policy
        self._clock = clock
        self._lock = threading.Lock()
        self._stats: dict[str, IpStats] = {}

    def check(self, identity: str) -> str:
        """'ok', 'limited' (answer 429) or 'banned' (answer 403) for one request."""
        policy = self.policy
        with self._lock:
            now = self._clock()
            stats = self._stats.get(identity)
            if stats is None:
                stats = self._stats[identity] = IpStats(first_request_at=now, _tokens=policy.burst, _refilled_at=now)
            if stats.banned:
                stats.forbidden += 1
                return "banned"
            rate = policy.requests_per_minute / 60.0
            stats._tokens = min(policy.burst, stats._tokens + (now - stats._refilled_at) * rate)
            stats._refilled_at = now
            if stats._tokens >= 1.0:
                stats._tokens -= 1.0
                stats.ok += 1
                stats.last_ok_at = now
                return "ok"
            stats.limited += 1
            recent = stats._recent_429s
            recent.append(now)
            while recent and recent[0] < now - policy.ban_window:
                recent.popleft()
            if len(recent) >= policy.ban_after:
                stats.banned_at = now
            return "limited"

    def stats(self) -> dict[str, IpStats]:
        """A snapshot per identity."""
        with self._lock:
            return {
                ip: IpStats(s.ok, s.limited, s.forbidden, s.first_request_at, s.last_ok_at, s.banned_at)
                for ip, s in self._stats.items()
            }

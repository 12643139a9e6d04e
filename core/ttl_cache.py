"""A small in-memory cache whose entries expire, with shared in-flight async loads.

Used by the LIHKG client so a thread page shared in several chats is fetched once per TTL,
and so that N concurrent requests for the same page make one HTTP request.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

Clock = Callable[[], float]


class TTLCache(Generic[K, V]):
    """Entries live `ttl` seconds (by `clock`); past `max_size` the least recently used go.

    A `ttl` of 0 stores nothing, yet concurrent `get_or_load` calls still share one load.

    >>> now = [0.0]
    >>> cache = TTLCache(ttl=10, max_size=2, clock=lambda: now[0])
    >>> cache.put("a", 1)
    >>> cache.get("a")
    1
    >>> now[0] = 10.0
    >>> cache.get("a") is None
    True
    """

    def __init__(self, ttl: float, *, max_size: int = 256, clock: Clock = time.monotonic) -> None:
        if ttl < 0 or max_size < 1:
            raise ValueError(f"need ttl >= 0 and max_size >= 1, got ttl={ttl}, max_size={max_size}")
        self.ttl = ttl
        self.max_size = max_size
        self._clock = clock
        self._entries: OrderedDict[K, tuple[float, V]] = OrderedDict()
        self._loading: dict[K, asyncio.Task[V]] = {}

    def __len__(self) -> int:
        self._drop_expired()
        return len(self._entries)

    def get(self, key: K, default: V | None = None) -> V | None:
        """The live value for `key`, else `default`."""
        entry = self._entries.get(key)
        if entry is None:
            return default
        expires_at, value = entry
        if self._clock() >= expires_at:
            del self._entries[key]
            return default
        self._entries.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        """Store `value` for `ttl` seconds from now."""
        if self.ttl == 0:
            return
        self._entries[key] = (self._clock() + self.ttl, value)
        self._entries.move_to_end(key)
        if len(self._entries) > self.max_size:
            self._drop_expired()
        while len(self._entries) > self.max_size:
            self._entries.popitem(last=False)

    def invalidate(self, key: K) -> None:
        self._entries.pop(key, None)

    def clear(self) -> None:
        self._entries.clear()

    async def get_or_load(self, key: K, load: Callable[[], Awaitable[V]]) -> V:
        """The cached value, or the result of `load()`, shared by every concurrent caller.

        Failures are not cached: each waiting caller gets the exception, the next call retries.
        One caller being cancelled does not cancel the load for the others.
        """
        entry = self._entries.get(key)
        if entry is not None and self._clock() < entry[0]:
            self._entries.move_to_end(key)
            return entry[1]
        task = self._loading.get(key)
        if task is None:
            task = asyncio.ensure_future(self._load_and_store(key, load))
            self._loading[key] = task
            task.add_done_callback(lambda t, k=key: self._finish(k, t))
        return await asyncio.shield(task)

    async def _load_and_store(self, key: K, load: Callable[[], Awaitable[V]]) -> V:
        value = await load()
        self.put(key, value)
        return value

    def _finish(self, key: K, task: asyncio.Task[V]) -> None:
        if self._loading.get(key) is task:
            del self._loading[key]
        # Mark the exception as seen: if every waiter was cancelled nobody else reads it.
        if not task.cancelled():
            task.exception()

    def _drop_expired(self) -> None:
        now = self._clock()
        for key in [k for k, (expires_at, _) in self._entries.items() if now >= expires_at]:
            del self._entries[key]

"""Who may use a bot, how often, and in what order: platform-neutral fairness.

- `AccessPolicy`: allow-lists of users and chats, and admins (who pass every check).
- `RateLimiter`: at most `limit` requests per user in a sliding `window` of seconds.
- `RequestQueue`: `workers` requests run at once, the rest wait first-in first-out (at most
  `max_waiting`), one request per user; `Ticket`s know their place and can be cancelled.
- `Fairness`: the four together, as each bot's state holds them (`admit`, `may_notify`).

Refusals are `LilmError`s whose `user_message` is one short Cantonese line for the chat.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import Self

from core.errors import ConfigError, LilmError

Clock = Callable[[], float]

MAX_DEADLINE_GRACE = 30.0  # most seconds a bot waits past the model's own generation timeout
NOTICES_PER_USER = (2, 10.0)  # refusal and hint lines: at most 2 every 10 s per user


class AccessDenied(LilmError):
    """The user or chat is not on the allow-lists."""

    user_message = "呢個 bot 未開放俾你用，想用就搵管理員。"

    @classmethod
    def line_for(cls, user_id: int) -> str:
        """The refusal with the user's id, which the admin needs to let them in.

        >>> AccessDenied.line_for(42)
        '呢個 bot 未開放俾你用，想用就搵管理員。（你嘅 id：42）'
        """
        return f"{cls.user_message}（你嘅 id：{user_id}）"


class Busy(LilmError):
    """A request was refused for now; trying later may work."""

    user_message = "而家好多人用緊，遲啲再試下。"


class QueueFull(Busy):
    """The waiting line is full."""

    user_message = "而家太多人排緊隊，遲啲再試下。"


class AlreadyQueued(Busy):
    """The user already has a request waiting or running."""

    user_message = "你上一個請求仲做緊，等佢完先，或者打 /cancel 取消。"


class RateLimited(Busy):
    """The user sent too many requests in the window."""

    def __init__(self, retry_in: float) -> None:
        self.retry_in = retry_in
        seconds = max(1, round(retry_in))
        super().__init__(f"rate limited for {retry_in:.1f} s", user_message=f"你問得太密啦，{seconds} 秒之後再試。")


def parse_ids(text: str, name: str) -> frozenset[int]:
    """Ids from a comma or space separated setting; ConfigError names the bad one.

    >>> sorted(parse_ids("123, -1001234567890  42", "TELEGRAM_ALLOWED_USERS"))
    [-1001234567890, 42, 123]
    """
    ids = set()
    for part in text.replace(",", " ").split():
        try:
            ids.add(int(part))
        except ValueError:
            raise ConfigError(f"{name} must list numeric ids separated by commas, found {part!r}") from None
    return frozenset(ids)


@dataclass(frozen=True)
class AccessPolicy:
    """Empty lists allow everyone. With a user (or role) list, only those users (or holders
    of those roles); with a chat list, only those chats (or chats whose `parents`, such as a
    thread's channel, are listed), plus private chats of listed users. Admins always pass.

    >>> policy = AccessPolicy(users=frozenset({1}), chats=frozenset({-100}))
    >>> policy.allows(1, -100), policy.allows(2, -100), policy.allows(1, 1, private=True)
    (True, False, True)
    >>> by_role = AccessPolicy(roles=frozenset({7}), chats=frozenset({50}))
    >>> by_role.allows(2, 51, roles=[7], parents=[50]), by_role.allows(2, 50, roles=[8])
    (True, False)
    """

    users: frozenset[int] = frozenset()
    chats: frozenset[int] = frozenset()
    admins: frozenset[int] = frozenset()
    roles: frozenset[int] = frozenset()

    def is_admin(self, user_id: int | None) -> bool:
        return user_id is not None and user_id in self.admins

    def allows(
        self,
        user_id: int | None,
        chat_id: int,
        *,
        private: bool = False,
        roles: Iterable[int] = (),
        parents: Iterable[int] = (),
    ) -> bool:
        if self.is_admin(user_id):
            return True
        listed_user = user_id in self.users
        user_ok = not (self.users or self.roles) or listed_user or not self.roles.isdisjoint(roles)
        chat_ok = not self.chats or chat_id in self.chats or not self.chats.isdisjoint(parents) or (private and listed_user)
        return user_ok and chat_ok


class RateLimiter:
    """At most `limit` requests per key in any `window` seconds (a sliding log per key).

    Keys whose requests have all aged out are forgotten, so memory follows active users.
    `limit <= 0` turns the limiter off.
    """

    def __init__(self, limit: int, window: float, *, clock: Clock = time.monotonic) -> None:
        self.limit = limit
        self.window = window
        self.clock = clock
        self._log: dict[Hashable, deque[float]] = {}
        self._next_sweep = 0.0

    def __len__(self) -> int:
        """Keys currently remembered."""
        return len(self._log)

    def retry_in(self, key: Hashable) -> float:
        """0 when `key` may make a request now, else seconds until it may."""
        if self.limit <= 0:
            return 0.0
        now = self.clock()
        self._sweep(now)
        times = self._log.get(key)
        if times is None:
            return 0.0
        self._expire(times, now)
        if len(times) < self.limit:
            return 0.0
        return times[0] + self.window - now

    def record(self, key: Hashable) -> None:
        """Count one request for `key` now."""
        if self.limit > 0:
            self._log.setdefault(key, deque()).append(self.clock())

    def take(self, key: Hashable) -> bool:
        """Count one request for `key` if it may make one now; False (nothing counted) if not.

        >>> notices = RateLimiter(1, 10.0, clock=lambda: 0.0)
        >>> notices.take("ann"), notices.take("ann"), notices.take("bob")
        (True, False, True)
        """
        if self.retry_in(key) > 0:
            return False
        self.record(key)
        return True

    def check(self, key: Hashable) -> None:
        """Raise RateLimited if `key` must wait (does not count a request)."""
        wait = self.retry_in(key)
        if wait > 0:
            raise RateLimited(wait)

    def _expire(self, times: deque[float], now: float) -> None:
        while times and times[0] <= now - self.window:
            times.popleft()

    def _sweep(self, now: float) -> None:
        if now < self._next_sweep:
            return
        self._next_sweep = now + self.window
        for key in [k for k, times in self._log.items() if not times or times[-1] <= now - self.window]:
            del self._log[key]


def worth_telling(shown: int, position: int, *, last_few: int = 3) -> bool:
    """Whether a move in the line deserves a new message: the last few places, or when the
    wait has halved since the place last shown (so a long line makes few edits).

    >>> told, shown = 20, []
    >>> for position in range(19, 0, -1):
    ...     if worth_telling(told, position):
    ...         told = position
    ...         shown.append(position)
    >>> shown
    [10, 5, 3, 2, 1]
    """
    return position <= last_few or position <= shown // 2


def place_notices(place: int, tell: Callable[[int], None]) -> Callable[[int], None]:
    """Tell a waiting request its `place` now (0: not waiting, nothing to tell) and return the
    `on_move` for `Ticket.wait_turn` that tells later places when `worth_telling`.

    >>> told = []
    >>> on_move = place_notices(6, told.append)
    >>> for position in (5, 4, 3, 2, 1):
    ...     on_move(position)
    >>> told
    [6, 3, 2, 1]
    """
    told = place
    if told:
        tell(told)

    def on_move(position: int) -> None:
        nonlocal told
        if worth_telling(told, position):
            told = position
            tell(position)

    return on_move


class Ticket:
    """One request's place in a `RequestQueue`. Release it when done (idempotent)."""

    def __init__(self, queue: RequestQueue, user: Hashable) -> None:
        self.user = user
        self.cancel_reason: str | None = None
        self._queue = queue
        self._granted = False
        self._released = False
        self._changed = asyncio.Event()
        self._task: asyncio.Task | None = None

    @property
    def running(self) -> bool:
        """True once the ticket holds a worker slot."""
        return self._granted and not self._released

    @property
    def position(self) -> int:
        """Requests ahead of this one in the waiting line (0 when running or next)."""
        return self._queue._position(self)

    def attach(self, task: asyncio.Task) -> None:
        """The task that `cancel` stops."""
        self._task = task

    def cancel(self, reason: str) -> bool:
        """Leave the queue and cancel the attached task; `reason` is kept for the user."""
        if self._released:
            return False
        self.cancel_reason = reason
        self.release()
        if self._task is not None and not self._task.done():
            self._task.cancel()
        return True

    async def wait_turn(self, on_move: Callable[[int], Awaitable[None] | None] | None = None) -> None:
        """Wait for a worker slot; `on_move(position)` is called when the place changes."""
        shown = self.position
        while not self._granted and not self._released:
            await self._changed.wait()
            self._changed.clear()
            position = self.position
            if not self._granted and not self._released and position != shown and on_move is not None:
                shown = position
                result = on_move(position)
                if result is not None:
                    await result
        if self._released:
            raise asyncio.CancelledError()

    def release(self) -> None:
        """Give back the slot (or the place in line); wakes whoever is next."""
        if not self._released:
            self._released = True
            self._queue._leave(self)
            self._changed.set()

    async def __aenter__(self) -> Self:
        await self.wait_turn()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.release()

    def _notify(self, *, granted: bool = False) -> None:
        self._granted = self._granted or granted
        self._changed.set()


def admit(queue: RequestQueue, limiter: RateLimiter, user: Hashable, *, exempt: bool = False) -> Ticket:
    """A ticket for `user`, counted by `limiter` unless `exempt` (admins); raises Busy
    (RateLimited, AlreadyQueued, QueueFull) and counts nothing when refused."""
    if not exempt:
        limiter.check(user)
    ticket = queue.join(user)
    if not exempt:
        limiter.record(user)
    return ticket


def reply_deadline(model_limit: float, *, max_grace: float = MAX_DEADLINE_GRACE) -> float | None:
    """Seconds a bot lets one generation take: the model's own limit plus as much again (at
    most `max_grace`), so the model reports its timeout first and this only catches a stuck
    engine. None when `model_limit` is 0 (no deadline).

    >>> reply_deadline(10), reply_deadline(120), reply_deadline(0)
    (20, 150.0, None)
    """
    return model_limit + min(model_limit, max_grace) if model_limit > 0 else None


@dataclass(kw_only=True)
class Fairness:
    """Who may ask and how often, as each bot's state holds it: the allow-lists, the request
    limiter, the limiter of refusal and hint lines, and the queue."""

    policy: AccessPolicy
    limiter: RateLimiter
    notices: RateLimiter
    queue: RequestQueue

    def admit(self, user_id: int) -> Ticket:
        """A queue ticket for the user, or Busy (rate limited, already queued, queue full)."""
        return admit(self.queue, self.limiter, user_id, exempt=self.policy.is_admin(user_id))

    def may_notify(self, user_id: int) -> bool:
        """Whether a refusal or hint line may go to this user now (so spam gets few answers)."""
        return self.notices.take(user_id)


class RequestQueue:
    """First-in first-out requests: `workers` at a time, `max_waiting` in line, one per user.

    >>> queue = RequestQueue(workers=1, max_waiting=1)
    >>> first, second = queue.join("ann"), queue.join("bob")
    >>> first.running, second.running, second.position
    (True, False, 1)
    >>> first.release(); second.running
    True
    """

    def __init__(self, *, workers: int = 1, max_waiting: int = 20) -> None:
        if workers < 1 or max_waiting < 0:
            raise ValueError(f"need workers >= 1 and max_waiting >= 0, got {workers} and {max_waiting}")
        self.workers = workers
        self.max_waiting = max_waiting
        self._waiting: deque[Ticket] = deque()
        self._running: set[Ticket] = set()
        self._by_user: dict[Hashable, Ticket] = {}

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    @property
    def running(self) -> int:
        return len(self._running)

    def ticket_of(self, user: Hashable) -> Ticket | None:
        """The user's waiting or running ticket, if any."""
        return self._by_user.get(user)

    def join(self, user: Hashable) -> Ticket:
        """A ticket for `user`: running at once if a worker is free, else in line.

        Raises AlreadyQueued if the user has a ticket, QueueFull if the line is full.
        """
        if user in self._by_user:
            raise AlreadyQueued(f"user {user} already has a request")
        ticket = Ticket(self, user)
        if len(self._running) < self.workers and not self._waiting:
            self._running.add(ticket)
            ticket._notify(granted=True)
        elif len(self._waiting) >= self.max_waiting:
            raise QueueFull(f"{len(self._waiting)} requests waiting (max {self.max_waiting})")
        else:
            self._waiting.append(ticket)
        self._by_user[user] = ticket
        return ticket

    def cancel(self, user: Hashable, reason: str) -> bool:
        """Cancel the user's request, waiting or running; False if there is none."""
        ticket = self._by_user.get(user)
        return ticket.cancel(reason) if ticket is not None else False

    def cancel_all(self, reason: str) -> int:
        """Cancel every request (shutdown); returns how many."""
        return sum(ticket.cancel(reason) for ticket in list(self._by_user.values()))

    def _position(self, ticket: Ticket) -> int:
        try:
            return self._waiting.index(ticket) + 1
        except ValueError:
            return 0

    def _leave(self, ticket: Ticket) -> None:
        if self._by_user.get(ticket.user) is ticket:
            del self._by_user[ticket.user]
        if ticket in self._running:
            self._running.discard(ticket)
        else:
            try:
                self._waiting.remove(ticket)
            except ValueError:
                pass
        while self._waiting and len(self._running) < self.workers:
            nxt = self._waiting.popleft()
            self._running.add(nxt)
            nxt._notify(granted=True)
        for waiting in self._waiting:  # everyone behind may have moved up
            waiting._notify()

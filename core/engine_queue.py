"""The engine's admission queue: jobs waiting for free batch slots, first come first served.

Bounded so that an overloaded bot says "busy" at once instead of letting requests pile up,
and able to tell each waiting job how many jobs are ahead of it. Pure Python and
thread-safe: the event loop pushes, the engine's worker thread pops and removes.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from typing import Generic, TypeVar

from core.errors import EngineBusy

Job = TypeVar("Job")


@dataclass
class _Entry(Generic[Job]):
    job: Job
    size: int  # batch slots the job needs (its number of candidate sequences)
    reported: int | None = None  # the position last told to the job


class AdmissionQueue(Generic[Job]):
    """FIFO of waiting jobs; a job is admitted only whole, and never overtakes an earlier one.

    >>> queue = AdmissionQueue(max_waiting=2)
    >>> queue.push("a", size=3), queue.push("b", size=1)
    (0, 1)
    >>> queue.pop_fitting(free_slots=2)  # "a" needs 3 slots and "b" may not overtake it
    []
    >>> queue.pop_fitting(free_slots=4)
    ['a', 'b']
    """

    def __init__(self, *, max_waiting: int) -> None:
        if max_waiting < 0:
            raise ValueError(f"max_waiting must be >= 0, got {max_waiting}")
        self.max_waiting = max_waiting
        self._entries: deque[_Entry[Job]] = deque()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def push(self, job: Job, *, size: int) -> int:
        """Queue `job`; returns how many jobs wait ahead of it. Raises EngineBusy when full."""
        with self._lock:
            waiting = len(self._entries)
            if waiting >= self.max_waiting:
                raise EngineBusy(f"generation queue full ({waiting} waiting)", waiting=waiting)
            self._entries.append(_Entry(job, size))
            return waiting

    def remove(self, job: Job) -> bool:
        """Drop a waiting job (cancelled or timed out). False when it was not waiting."""
        with self._lock:
            for index, entry in enumerate(self._entries):
                if entry.job == job:
                    del self._entries[index]
                    return True
            return False

    def pop_fitting(self, *, free_slots: int) -> list[Job]:
        """Pop jobs from the head while each fits in the slots left."""
        popped = []
        with self._lock:
            while self._entries and self._entries[0].size <= free_slots:
                entry = self._entries.popleft()
                free_slots -= entry.size
                popped.append(entry.job)
        return popped

    def drain(self) -> list[Job]:
        """Remove and return every waiting job (engine shutting down)."""
        with self._lock:
            jobs = [entry.job for entry in self._entries]
            self._entries.clear()
            return jobs

    def moved(self) -> list[tuple[Job, int]]:
        """(job, jobs ahead) for each waiting job whose position changed since last asked.

        >>> queue = AdmissionQueue(max_waiting=5)
        >>> _ = [queue.push(name, size=1) for name in "abc"]
        >>> queue.moved()
        [('a', 0), ('b', 1), ('c', 2)]
        >>> _ = queue.remove("a")
        >>> queue.moved()
        [('b', 0), ('c', 1)]
        >>> queue.moved()
        []
        """
        changed = []
        with self._lock:
            for ahead, entry in enumerate(self._entries):
                if entry.reported != ahead:
                    entry.reported = ahead
                    changed.append((entry.job, ahead))
        return changed

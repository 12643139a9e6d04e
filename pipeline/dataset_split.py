"""Train/valid/test assignment by thread, and duplicate detection by hashes.

A thread's split is a pure function of its id and the seed (a keyed hash), so every reply
of a thread lands in the same split, the same seed always gives the same split, and adding
threads to the database never moves an old thread to another split.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

SPLITS = ("train", "valid", "test")
_HASH_SPACE = float(1 << 64)


@dataclass(frozen=True)
class SplitRatios:
    """Shares of threads per split (they must add up to 1)."""

    train: float = 0.8
    valid: float = 0.1
    test: float = 0.1

    def __post_init__(self) -> None:
        if min(self.train, self.valid, self.test) < 0 or abs(self.train + self.valid + self.test - 1) > 1e-6:
            raise ValueError(f"split ratios must be >= 0 and add up to 1, got {self}")


def split_of_thread(thread_id: int, *, seed: int, ratios: SplitRatios = SplitRatios()) -> str:
    """`train`, `valid` or `test` for a thread, stable for a given seed.

    >>> split_of_thread(3699748, seed=0) == split_of_thread(3699748, seed=0)
    True
    """
    digest = hashlib.blake2b(f"{thread_id}".encode(), digest_size=8, key=f"lilm-split-{seed}".encode()).digest()
    position = int.from_bytes(digest, "big") / _HASH_SPACE
    if position < ratios.train:
        return "train"
    if position < ratios.train + ratios.valid:
        return "valid"
    return "test"


class DuplicateIndex:
    """Remembers (prompt, normalized reply) pairs as 8-byte hashes; memory ~70 bytes a row.

    The prompt is the user message's fields (category, title, first-post text), so the same
    reply under the same prompt is a duplicate whether it comes from one thread or from a
    re-posted copy of the thread; the same short reply ("正") under different threads is not.
    """

    def __init__(self) -> None:
        self._seen: set[bytes] = set()

    def __len__(self) -> int:
        return len(self._seen)

    @staticmethod
    def prompt_key(category: str, title: str, first_post: str) -> bytes:
        return hashlib.blake2b(f"{category}\x1f{title}\x1f{first_post}".encode(), digest_size=16).digest()

    def add(self, prompt_key: bytes, normalized_reply: str) -> bool:
        """Record the pair; False when it was already seen (a duplicate)."""
        key = hashlib.blake2b(normalized_reply.encode(), digest_size=8, key=prompt_key).digest()
        if key in self._seen:
            return False
        self._seen.add(key)
        return True

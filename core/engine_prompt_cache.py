"""Key/value caches of prompt prefixes, computed once and shared by many sequences.

Two uses on the engine's worker thread: the system-message prefix every request starts with
(kept in a small LRU), and the whole prompt of a job asking for N candidates (prefilled once,
then N sequences decode from it). `BatchGenerator` copies a cache into its batch when a
sequence joins, so a stored cache is never modified and may be shared freely.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass


def prefill(model, tokens: Sequence[int], *, base: list | None = None, base_len: int = 0, step: int = 512) -> list:
    """The cache after feeding `tokens[base_len:]` on top of `base` (a cache of `tokens[:base_len]`)."""
    import mlx.core as mx
    from mlx_lm.models.cache import make_prompt_cache

    cache = copy.deepcopy(base) if base is not None else make_prompt_cache(model)
    rest = list(tokens[base_len:])
    for start in range(0, len(rest), step):
        model(mx.array(rest[start : start + step])[None], cache=cache)
        mx.eval([c.state for c in cache])
    return cache


@dataclass(frozen=True)
class PrefixCacheStats:
    hits: int
    misses: int
    entries: int


class PrefixCache:
    """LRU of prefix caches keyed by their exact token ids."""

    def __init__(self, model, *, max_entries: int = 8, prefill_step: int = 512) -> None:
        self.model = model
        self.max_entries = max_entries
        self.prefill_step = prefill_step
        self._entries: OrderedDict[tuple[int, ...], list] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, prefix: Sequence[int]) -> list:
        """The cache of `prefix`, computed on a miss."""
        key = tuple(prefix)
        cache = self._entries.get(key)
        if cache is not None:
            self.hits += 1
            self._entries.move_to_end(key)
            return cache
        self.misses += 1
        cache = prefill(self.model, key, step=self.prefill_step)
        self._entries[key] = cache
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        return cache

    def clear(self) -> None:
        self._entries.clear()

    def stats(self) -> PrefixCacheStats:
        return PrefixCacheStats(hits=self.hits, misses=self.misses, entries=len(self._entries))

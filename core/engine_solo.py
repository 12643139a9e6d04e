"""The solo fast path: one sequence decoded alone, without `BatchGenerator`'s per-row work.

While a single one-candidate request is all the engine has to do, the worker decodes it
with its own tight loop, the way mlx-lm's `generate_step` does: the model computes token
k+1 while token k is handed out, with none of the batch's bookkeeping (BatchKVCache masks,
filtering, stop matchers for many rows). Sampling is the batch path's own compiled graph
(`RowBatch.draw` on a 1-row batch), so a seeded request draws the same tokens on either path.

When another job is admitted, `continue_in_batch` moves the sequence into the batch: its
cache trimmed to the tokens handed out so far, the last of them as its prompt, sampling
continuing at the same step (or, still prefilling, the rest of its prompt). Runs only on the
engine's worker thread (imports mlx).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import mlx.core as mx
from mlx_lm.models.cache import make_prompt_cache

from core.engine_sampling import RowBatch, RowSampling, history_matrix, push_history
from core.generation import SamplingParams

_CLEAR_CACHE_EVERY = 256  # tokens, as in generate_step


@dataclass(frozen=True)
class Handoff:
    """What `BatchGenerator.insert` needs to continue a solo sequence exactly where it is."""

    prompt: list[int]  # tokens not yet in `cache`: the last handed-out one (or the prompt's rest)
    cache: list | None
    all_tokens: list[int]  # the tokens `cache` holds
    max_tokens: int  # tokens still allowed
    step: int  # sampling step of the next token


class SoloSequence:
    """One candidate decoding alone. Each `step()` either prefills one chunk of the prompt (as
    the batch does, so a job arriving meanwhile can join before decoding starts) or hands out
    one token."""

    def __init__(
        self,
        model,
        *,
        prompt: Sequence[int],
        params: SamplingParams,
        base: list | None,
        base_len: int,
        stop_tokens: set[int] | frozenset[int],
        candidates: int,
        prefill_step: int,
    ) -> None:
        self._model = model
        self.params = params
        self._prompt = list(prompt)
        self._base = base  # a stored cache of prompt[:base_len]: copied, never modified
        self._stops = frozenset(stop_tokens)
        self._prefill_step = prefill_step
        self.row = RowSampling.from_params(params)  # raises for invalid settings
        self._rows = RowBatch([self.row], candidates=candidates)
        self._stream = mx.default_stream(mx.default_device())  # this thread's own, see _new_generator
        self._cache: list | None = None  # ours: a copy of `base`, then extended
        self._cached = base_len  # tokens in the cache (one ahead of the handed-out ones while decoding)
        self._history = None  # (1, PENALTY_CONTEXT): the last tokens fed to the model
        self._next = None  # the token after the last handed-out one, being computed
        self.emitted: list[int] = []

    def step(self) -> tuple[int, str | None] | None:
        """None after a prefill chunk, else the next token and why the sequence ends with it
        ("stop", "length") or None."""
        with mx.stream(self._stream):
            if self._cache is None or self._cached < len(self._prompt) - 1:
                self._prefill_chunk()
                return None
            if self._next is None:
                self._history = history_matrix([self._prompt[:-1] or self._prompt[-1:]])
                self._next = self._forward(mx.array(self._prompt[-1:], dtype=mx.uint32))
            token = self._next
            if len(self.emitted) + 1 < self.params.max_tokens:  # compute the one after meanwhile
                self._next = self._forward(token)
            value = token.item()
        self.emitted.append(value)
        if len(self.emitted) % _CLEAR_CACHE_EVERY == 0:
            mx.clear_cache()
        if value in self._stops:
            return value, "stop"
        if len(self.emitted) >= self.params.max_tokens:
            return value, "length"
        return value, None

    def hand_over(self) -> Handoff:
        """Where the sequence stands, for the batch to continue it (this object is done after)."""
        remaining = self.params.max_tokens - len(self.emitted)
        if not self.emitted:  # still prefilling: the batch finishes the prompt
            cache = self._cache if self._cache is not None else self._base
            return Handoff(self._prompt[self._cached :], cache, self._prompt[: self._cached], remaining, 0)
        held = self._prompt + self.emitted[:-1]
        for layer in self._cache:  # drop the token computed ahead; the batch recomputes it
            layer.trim(self._cached - len(held))
        return Handoff([self.emitted[-1]], self._cache, held, remaining, len(self.emitted))

    def _prefill_chunk(self) -> None:
        """Feed the next `prefill_step` prompt tokens (all but the last, which starts decoding)."""
        if self._cache is None:
            self._cache = copy.deepcopy(self._base) if self._base is not None else make_prompt_cache(self._model)
        end = min(self._cached + self._prefill_step, len(self._prompt) - 1)
        if end > self._cached:
            self._model(mx.array(self._prompt[self._cached : end])[None], cache=self._cache)
            mx.eval([layer.state for layer in self._cache])
            self._cached = end

    def _forward(self, token):
        """Start computing the token after `token` (shape (1,)); returns it unevaluated."""
        logits = self._model(token[None], cache=self._cache)[:, -1, :]
        self._cached += 1
        self._history = push_history(self._history, token)
        sampled = self._rows.draw(logits, self._history)
        mx.async_eval(sampled, self._history)
        return sampled


def continue_in_batch(solo: SoloSequence, generator, *, stops) -> int:
    """Insert the solo sequence into `generator` (lean decoding, core/engine_batch.py);
    returns its new uid."""
    handoff = solo.hand_over()
    (uid,) = generator.insert(
        [handoff.prompt],
        max_tokens=[handoff.max_tokens],
        caches=[handoff.cache] if handoff.cache is not None else None,
        all_tokens=[handoff.all_tokens],
        logits_processors=[[RowSampling(solo.row.settings, step=handoff.step)]],
        stop_sequences=[stops],
    )
    return uid

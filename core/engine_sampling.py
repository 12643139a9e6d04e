"""Per-request sampling for a whole batch in one graph.

mlx-lm's `BatchGenerator` calls a per-row sampler once per row unless every row shares one
sampler object; per-row calls (each sorting the whole vocabulary for top-p) cost more than
the model itself on a tiny CPU model. So every row gets the same `BatchSampler`, and each
row's `RowSampling` logits processor, which the generator runs row by row just before
sampling, records that row's settings in order. The sampler then draws all rows at once:

- top-p is applied within the `candidates` most likely tokens (default 128): cheaper than a
  full-vocabulary sort, and tokens that far down are noise for a chat reply;
- randomness comes from a counter-based hash of (seed, step, token), so a seeded request
  draws the same numbers whatever else shares its batch.

Runs only on the engine's worker thread (imports mlx).
"""

from __future__ import annotations

import functools
import secrets
from dataclasses import dataclass

import mlx.core as mx

from core.generation import SamplingParams

DEFAULT_CANDIDATES = 128
_GOLDEN = 0x9E3779B1


@dataclass(frozen=True)
class RowSettings:
    """How one sequence samples: temperature 0 means greedy."""

    temperature: float
    top_p: float
    seed: int

    @classmethod
    def from_params(cls, params: SamplingParams, *, seed: int | None = None) -> RowSettings:
        """`seed` None draws a fresh random one (the reply differs each time)."""
        chosen = params.seed if seed is None else seed
        if chosen is None:
            chosen = secrets.randbits(32)
        top_p = params.top_p if 0 < params.top_p <= 1 else 1.0
        return cls(temperature=max(0.0, params.temperature), top_p=top_p, seed=chosen % (1 << 32))


class RowSampling:
    """Logits processor for one row: optional repetition penalty, then records the row."""

    def __init__(self, settings: RowSettings, *, sampler: BatchSampler, repetition_penalty: float | None) -> None:
        self.settings = settings
        self.step = 0
        self._sampler = sampler
        self._penalty = None
        if repetition_penalty and repetition_penalty != 1.0:
            from mlx_lm.sample_utils import make_repetition_penalty

            self._penalty = make_repetition_penalty(repetition_penalty)

    def __call__(self, tokens, logits):
        if self._penalty is not None:
            logits = self._penalty(tokens, logits)
        self._sampler.record(self.settings, self.step)
        self.step += 1
        return logits


class BatchSampler:
    """The one sampler every row of a generator shares (see the module docstring)."""

    def __init__(self, *, candidates: int = DEFAULT_CANDIDATES) -> None:
        self.candidates = candidates
        self._rows: list[tuple[RowSettings, int]] = []

    def row(self, params: SamplingParams, *, seed: int | None = None) -> RowSampling:
        """A row processor bound to this sampler."""
        return RowSampling(RowSettings.from_params(params, seed=seed), sampler=self, repetition_penalty=params.repetition_penalty)

    def record(self, settings: RowSettings, step: int) -> None:
        self._rows.append((settings, step))

    def reset(self) -> None:
        """Forget half-recorded rows (after a failed step)."""
        self._rows.clear()

    def __call__(self, logprobs):
        rows, self._rows = self._rows, []
        if len(rows) != logprobs.shape[0]:
            raise RuntimeError(f"sampler saw {len(rows)} row settings for a batch of {logprobs.shape[0]}")
        if all(settings.temperature == 0 for settings, _ in rows):
            return mx.argmax(logprobs, axis=-1)
        temps = mx.array([[settings.temperature] for settings, _ in rows], dtype=mx.float32)
        top_ps = mx.array([[settings.top_p] for settings, _ in rows], dtype=mx.float32)
        seeds = mx.array([[settings.seed] for settings, _ in rows], dtype=mx.uint32)
        steps = mx.array([[step] for _, step in rows], dtype=mx.uint32)
        k = min(self.candidates, logprobs.shape[-1])
        return _compiled_sample(k)(logprobs, temps, top_ps, seeds, steps)


def _fmix32(h):
    """MurmurHash3's 32-bit finalizer: a cheap bijection with full avalanche."""
    h = h ^ (h >> 16)
    h = h * 0x85EBCA6B
    h = h ^ (h >> 13)
    h = h * 0xC2B2AE35
    return h ^ (h >> 16)


def uniform_noise(seeds, steps, width: int):
    """Uniform (0, 1) floats, shape (rows, width), a pure function of each row's seed and step."""
    row_key = _fmix32(seeds ^ _fmix32(steps * _GOLDEN + 1))
    h = _fmix32(row_key ^ (mx.arange(width, dtype=mx.uint32)[None] * _GOLDEN))
    return ((h >> 8).astype(mx.float32) + 0.5) * (1.0 / (1 << 24))


def _sample(logprobs, temps, top_ps, seeds, steps, *, k: int):
    """Top-k candidates -> nucleus (by full-vocabulary mass) -> temperature -> Gumbel-max draw."""
    candidates = mx.argpartition(-logprobs, kth=k - 1, axis=-1)[:, :k]
    cand_lp = mx.take_along_axis(logprobs, candidates, axis=-1)
    order = mx.argsort(-cand_lp, axis=-1)
    candidates = mx.take_along_axis(candidates, order, axis=-1)
    cand_lp = mx.take_along_axis(cand_lp, order, axis=-1)
    probs = mx.exp(cand_lp)
    # Keep a token while the mass of the more likely ones is still below top_p (the first always).
    keep = (mx.cumsum(probs, axis=-1) - probs) < top_ps
    gumbel = -mx.log(-mx.log(uniform_noise(seeds, steps, k)))
    scores = mx.where(keep, cand_lp / mx.maximum(temps, 1e-6) + gumbel, -mx.inf)
    drawn = mx.take_along_axis(candidates, mx.argmax(scores, axis=-1, keepdims=True), axis=-1)[:, 0]
    return mx.where(temps[:, 0] > 0, drawn, candidates[:, 0])


@functools.cache
def _compiled_sample(k: int):
    return mx.compile(functools.partial(_sample, k=k))

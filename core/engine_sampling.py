"""Per-request sampling for a whole batch in one compiled graph.

Every decode step, for all rows at once: repetition penalty over each row's last 20 tokens
(mlx-lm's `make_repetition_penalty`, vectorized), log-normalization, then a draw:

- top-p is applied within the `candidates` most likely tokens (default 128): cheaper than a
  full-vocabulary sort, and tokens that far down are noise for a chat reply;
- randomness comes from a counter-based hash of (seed, step, token), so a seeded request
  draws the same numbers whatever else shares its batch, and alone or batched alike.

Per-row work (slicing, a processor call, a re-concatenation per row) costs more than a tiny
model's forward pass; here the whole step is a handful of fused kernels whatever the batch
size. Runs only on the engine's worker thread (imports mlx).
"""

from __future__ import annotations

import functools
import math
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

import mlx.core as mx

from core.generation import SamplingParams

DEFAULT_CANDIDATES = 128
PENALTY_CONTEXT = 20  # tokens the repetition penalty looks back over, as mlx-lm's default
_GOLDEN = 0x9E3779B1
_LN2 = math.log(2)
_EXP2_TAYLOR = [_LN2**i / math.factorial(i) for i in range(7)]  # 2^f = e^(f ln 2) for |f| <= 1/2


@dataclass(frozen=True)
class RowSettings:
    """How one sequence samples: temperature 0 means greedy, penalty 1 means none."""

    temperature: float
    top_p: float
    seed: int
    penalty: float = 1.0

    @classmethod
    def from_params(cls, params: SamplingParams, *, seed: int | None = None) -> RowSettings:
        """`seed` None draws a fresh random one (the reply differs each time)."""
        penalty = params.repetition_penalty
        if penalty is None or penalty == 0:
            penalty = 1.0
        if penalty < 0:
            raise ValueError(f"repetition penalty must be positive, got {penalty}")
        chosen = params.seed if seed is None else seed
        if chosen is None:
            chosen = secrets.randbits(32)
        top_p = params.top_p if 0 < params.top_p <= 1 else 1.0
        return cls(temperature=max(0.0, params.temperature), top_p=top_p, seed=chosen % (1 << 32), penalty=float(penalty))


class RowSampling:
    """One sequence's settings and how many tokens it has drawn (the noise counter)."""

    def __init__(self, settings: RowSettings, *, step: int = 0) -> None:
        self.settings = settings
        self.step = step

    @classmethod
    def from_params(cls, params: SamplingParams, *, seed: int | None = None) -> RowSampling:
        return cls(RowSettings.from_params(params, seed=seed))


class RowBatch:
    """The per-row inputs of `draw` for a fixed set of rows, built once per batch layout."""

    def __init__(self, rows: Sequence[RowSampling], *, candidates: int = DEFAULT_CANDIDATES) -> None:
        self.rows = list(rows)
        self.candidates = candidates
        settings = [row.settings for row in self.rows]
        self.greedy = all(s.temperature == 0 for s in settings)
        self._temps = mx.array([[s.temperature] for s in settings], dtype=mx.float32)
        self._top_ps = mx.array([[s.top_p] for s in settings], dtype=mx.float32)
        self._seeds = mx.array([[s.seed] for s in settings], dtype=mx.uint32)
        self._penalties = mx.array([[s.penalty] for s in settings], dtype=mx.float32)

    def draw(self, logits, history):
        """The next token of every row (shape (rows,)), unevaluated; advances each row's step.

        `logits` (rows, vocab) are the model's raw last-position logits; `history` (rows,
        PENALTY_CONTEXT) the last tokens each row has fed the model (see `history_matrix`)."""
        steps = mx.array([[row.step] for row in self.rows], dtype=mx.uint32)
        for row in self.rows:
            row.step += 1
        k = min(self.candidates, logits.shape[-1])
        return _compiled_draw(k, self.greedy)(logits, history, self._penalties, self._temps, self._top_ps, self._seeds, steps)


def history_matrix(contexts: Sequence[Sequence[int]]):
    """(rows, PENALTY_CONTEXT) uint32: each row's last tokens, a short row left-padded with its
    own first token (penalizing a token twice writes the same value: no change)."""
    rows = []
    for context in contexts:
        tail = list(context[-PENALTY_CONTEXT:])
        if not tail:
            raise ValueError("a sequence needs at least one token of context")
        rows.append([tail[0]] * (PENALTY_CONTEXT - len(tail)) + tail)
    return mx.array(rows, dtype=mx.uint32)


def push_history(history, tokens):
    """`history` shifted left by one with `tokens` (shape (rows,)) appended."""
    return mx.concatenate([history[:, 1:], tokens.astype(mx.uint32)[:, None]], axis=1)


def penalize(logits, history, penalties):
    """mlx-lm's repetition penalty for every row: a seen token's logit divided by the penalty
    (multiplied when negative). A penalty of 1 leaves the row exactly as it was."""
    seen = mx.take_along_axis(logits, history, axis=-1)
    seen = mx.where(seen < 0, seen * penalties, seen / penalties)
    return mx.put_along_axis(logits, history, seen, axis=-1)


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


def log_normalizer(logits):
    """log(sum(exp(logits))) per row, shape (rows, 1), within ~1e-6 of `mx.logsumexp`.

    mlx's CPU backend computes `exp` one element at a time (~20 ns each), which made the
    normalizer the costliest part of a step at batch 8. Here 2^t = 2^n * 2^f is built from a
    degree-6 polynomial for 2^f and exponent bits for 2^n: a few fused multiply-adds."""
    top = mx.max(logits, axis=-1, keepdims=True)
    t = mx.maximum((logits - top) * (1 / _LN2), -125.0)  # below 2^-125 is nothing next to the top's 1
    n = mx.round(t)
    f = t - n
    poly = _EXP2_TAYLOR[-1]
    for c in reversed(_EXP2_TAYLOR[:-1]):
        poly = poly * f + c
    power = mx.view((n.astype(mx.int32) + 127) << 23, mx.float32)  # 2^n from its IEEE-754 exponent
    return top + mx.log(mx.sum(poly * power, axis=-1, keepdims=True))


def _draw(logits, history, penalties, temps, top_ps, seeds, steps, *, k: int, greedy: bool):
    """Penalty -> top-k candidates -> nucleus (by full-vocabulary mass) -> temperature ->
    Gumbel-max draw."""
    logits = penalize(logits, history, penalties)
    if greedy:
        return mx.argmax(logits, axis=-1)
    vocab = logits.shape[-1]
    candidates = mx.argpartition(logits, kth=vocab - k, axis=-1)[:, vocab - k :]
    cand = mx.take_along_axis(logits, candidates, axis=-1)
    order = mx.argsort(-cand, axis=-1)
    candidates = mx.take_along_axis(candidates, order, axis=-1)
    cand_lp = mx.take_along_axis(cand, order, axis=-1) - log_normalizer(logits)
    probs = mx.exp(cand_lp)
    # Keep a token while the mass of the more likely ones is still below top_p (the first always).
    keep = (mx.cumsum(probs, axis=-1) - probs) < top_ps
    gumbel = -mx.log(-mx.log(uniform_noise(seeds, steps, k)))
    scores = mx.where(keep, cand_lp / mx.maximum(temps, 1e-6) + gumbel, -mx.inf)
    drawn = mx.take_along_axis(candidates, mx.argmax(scores, axis=-1, keepdims=True), axis=-1)[:, 0]
    return mx.where(temps[:, 0] > 0, drawn, candidates[:, 0])


@functools.cache
def _compiled_draw(k: int, greedy: bool):
    return mx.compile(functools.partial(_draw, k=k, greedy=greedy))

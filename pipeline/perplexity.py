"""Perplexity of an mlx-lm model: on running text (sliding window) and on chat replies.

Both scorers reduce to the same step: a batch of token sequences, each with a span of
target positions whose next-token loss counts. Only those positions are scored, so a token
is never counted twice and padding never counts.

    >>> result = PerplexityResult.from_total(nll_sum=6.0, tokens=3)
    >>> result.nll, result.tokens, round(result.perplexity, 3)
    (2.0, 3, 7.389)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

# Upper bound on logits held at once (batch x length x vocab floats): ~256 MB in float32.
LOGITS_BUDGET = 64 * 1024 * 1024
# Roles whose tokens `chat_perplexity` scores.
SCORED_ROLES = frozenset({"assistant"})


@dataclass(frozen=True)
class PerplexityResult:
    """Mean negative log-likelihood per scored token (nats), the count, and exp(nll)."""

    nll: float
    tokens: int
    perplexity: float

    @classmethod
    def from_total(cls, *, nll_sum: float, tokens: int) -> PerplexityResult:
        """From a summed NLL. No tokens gives nan (nothing was measured, not a perfect score).

        >>> PerplexityResult.from_total(nll_sum=0.0, tokens=0).perplexity
        nan
        """
        if tokens <= 0:
            return cls(nll=math.nan, tokens=0, perplexity=math.nan)
        nll = nll_sum / tokens
        return cls(nll=nll, tokens=tokens, perplexity=math.exp(min(nll, 700.0)))

    @classmethod
    def combine(cls, results: Iterable[PerplexityResult]) -> PerplexityResult:
        """Token-weighted union of several results (e.g. one per document).

        >>> a = PerplexityResult.from_total(nll_sum=4.0, tokens=2)
        >>> b = PerplexityResult.from_total(nll_sum=2.0, tokens=2)
        >>> PerplexityResult.combine([a, b]).nll
        1.5
        """
        results = [r for r in results if r.tokens > 0]
        return cls.from_total(nll_sum=sum(r.nll * r.tokens for r in results), tokens=sum(r.tokens for r in results))


@dataclass(frozen=True)
class ScoredSpan:
    """A token sequence whose targets tokens[first:end] are scored (each given all before it)."""

    tokens: Sequence[int]
    first: int
    end: int


def sliding_window_spans(n_tokens: int, *, window: int, stride: int) -> list[tuple[int, int, int]]:
    """(start, first, end) of each window: the window is tokens[start:end], targets
    tokens[first:end] are new in it. Every token but the first is scored exactly once, with
    at least `window - stride` tokens of context once the text is long enough.

    >>> sliding_window_spans(10, window=4, stride=2)
    [(0, 1, 4), (2, 4, 6), (4, 6, 8), (6, 8, 10)]
    >>> sliding_window_spans(3, window=8, stride=4)
    [(0, 1, 3)]
    >>> sliding_window_spans(7, window=3, stride=3)
    [(0, 1, 3), (2, 3, 5), (4, 5, 7)]
    """
    if window < 2:
        raise ValueError(f"window must be at least 2 tokens, got {window}")
    if not 1 <= stride <= window:
        raise ValueError(f"stride must be between 1 and the window ({window}), got {stride}")
    spans, scored_to, start = [], 1, 0
    while scored_to < n_tokens:
        start = min(start, scored_to - 1)  # a window's first token has no context: never score it
        end = min(start + window, n_tokens)
        spans.append((start, scored_to, end))
        scored_to = end
        start += stride
    return spans


def context_limit(model) -> int | None:
    """The model's max_position_embeddings (or max_seq_len / n_ctx), if its config says."""
    args = getattr(model, "args", None)
    for name in ("max_position_embeddings", "max_seq_len", "n_ctx", "seq_length"):
        value = getattr(args, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def clamp_window(model, window: int, stride: int) -> tuple[int, int]:
    """Window cut to the model's context, stride cut by the same ratio (same overlap share).

    >>> clamp_window(object(), 512, 256)
    (512, 256)
    """
    limit = context_limit(model)
    if limit and window > limit:
        stride = max(1, stride * limit // window)
        window = limit
    return window, min(stride, window)


def score_spans(model, spans: Sequence[ScoredSpan], *, pad_id: int = 0) -> PerplexityResult:
    """Perplexity over the targets of all spans together."""
    kept = [s for s in spans if s.end > max(s.first, 1)]
    nlls = span_nlls(model, kept, pad_id=pad_id)
    return PerplexityResult.from_total(nll_sum=sum(nlls), tokens=sum(s.end - max(s.first, 1) for s in kept))


def span_nlls(model, spans: Sequence[ScoredSpan], *, pad_id: int = 0) -> list[float]:
    """Summed next-token NLL of each span's targets, in the order given.

    Spans are batched by length under LOGITS_BUDGET; a span with no targets scores 0.
    """
    order = sorted(range(len(spans)), key=lambda i: len(spans[i].tokens))
    order = [i for i in order if spans[i].end > max(spans[i].first, 1)]
    vocab = _vocab_size(model)
    nlls = [0.0] * len(spans)
    index = 0
    while index < len(order):
        size = 1
        while index + size < len(order):
            widest = len(spans[order[index + size]].tokens)  # sorted: the next one is the widest
            if (size + 1) * widest * vocab > LOGITS_BUDGET:
                break
            size += 1
        batch = order[index : index + size]
        for i, nll in zip(batch, _score_batch(model, [spans[i] for i in batch], pad_id=pad_id)):
            nlls[i] = nll
        index += size
    return nlls


def _vocab_size(model) -> int:
    return int(getattr(getattr(model, "args", None), "vocab_size", 0) or 32000)


def _score_batch(model, batch: Sequence[ScoredSpan], *, pad_id: int) -> list[float]:
    import mlx.core as mx
    import numpy as np

    width = max(len(s.tokens) for s in batch)
    ids = np.full((len(batch), width), pad_id, dtype=np.int32)
    mask = np.zeros((len(batch), width - 1), dtype=np.float32)
    for row, span in enumerate(batch):
        ids[row, : len(span.tokens)] = span.tokens
        mask[row, max(span.first, 1) - 1 : span.end - 1] = 1.0  # input t-1 predicts target t
    inputs, targets = mx.array(ids[:, :-1]), mx.array(ids[:, 1:])
    logits = model(inputs).astype(mx.float32)
    target_logits = mx.take_along_axis(logits, targets[..., None], axis=-1).squeeze(-1)
    per_row = ((mx.logsumexp(logits, axis=-1) - target_logits) * mx.array(mask)).sum(axis=-1)
    return [float(x) for x in per_row.tolist()]


def sliding_window_perplexity(model, token_ids: Sequence[int], *, window: int, stride: int) -> PerplexityResult:
    """Perplexity of one token sequence read with a sliding window.

    Each window is `window` tokens; it moves by `stride`, and only the tokens new in a window
    are scored, so each token (but the first) counts once with up to `window - stride` tokens
    of context. Clamp the window to the model's context first (`clamp_window`).
    """
    tokens = list(token_ids)
    spans = [
        ScoredSpan(tokens=tokens[start:end], first=first - start, end=end - start)
        for start, first, end in sliding_window_spans(len(tokens), window=window, stride=stride)
    ]
    return score_spans(model, spans)


def chat_spans(tokenizer, messages: Sequence[Mapping[str, str]]) -> list[ScoredSpan]:
    """One span per assistant turn, each over the conversation up to and including that turn."""
    spans = []
    for index, message in enumerate(messages):
        if message.get("role") not in SCORED_ROLES:
            continue
        prompt = _encode_chat(tokenizer, messages[:index], generation_prompt=True)
        full = _encode_chat(tokenizer, messages[: index + 1], generation_prompt=False)
        first = _common_prefix_length(prompt, full)
        if first < len(full):
            spans.append(ScoredSpan(tokens=full, first=max(first, 1), end=len(full)))
    return spans


def _common_prefix_length(a: Sequence[int], b: Sequence[int]) -> int:
    """Templates that rewrite earlier turns (e.g. dropping reasoning) still share a prefix.

    >>> _common_prefix_length([1, 2, 3], [1, 2, 4, 5])
    2
    """
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def _encode_chat(tokenizer, messages: Sequence[Mapping[str, str]], *, generation_prompt: bool) -> list[int]:
    messages = [{"role": m["role"], "content": m["content"]} for m in messages]
    if getattr(tokenizer, "chat_template", None):
        if not messages:
            return []
        ids = tokenizer.apply_chat_template(messages, add_generation_prompt=generation_prompt, tokenize=True)
        return list(getattr(ids, "input_ids", ids))
    text = "".join(f"{m['role']}: {m['content']}\n" for m in messages)
    if generation_prompt:
        text += "assistant: "
    return list(tokenizer.encode(text)) if text else []


def chat_perplexity(
    model, tokenizer, conversations: Iterable[Mapping], *, max_tokens: int | None = None
) -> PerplexityResult:
    """Perplexity of the assistant turns of mlx-lm chat rows (`{"messages": [...]}`).

    Prompt tokens (system, user and the generation prompt) are masked; each assistant turn is
    scored given the conversation before it. Sequences are cut to `max_tokens` (default: the
    model's context), so tokens past it are not scored.
    """
    limit = max_tokens or context_limit(model)
    spans = []
    for row in conversations:
        for span in chat_spans(tokenizer, row["messages"]):
            end = min(span.end, limit) if limit else span.end
            if end > span.first:
                spans.append(ScoredSpan(tokens=list(span.tokens[:end]), first=span.first, end=end))
    return score_spans(model, spans, pad_id=_pad_id(tokenizer))


def _pad_id(tokenizer) -> int:
    pad = getattr(tokenizer, "pad_token_id", None)
    return pad if isinstance(pad, int) else 0


__all__ = [
    "PerplexityResult",
    "ScoredSpan",
    "chat_perplexity",
    "chat_spans",
    "clamp_window",
    "context_limit",
    "score_spans",
    "sliding_window_perplexity",
    "sliding_window_spans",
    "span_nlls",
]

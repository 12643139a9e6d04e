"""Perplexity scorers on real tiny mlx models: trained beats random, windows and masks are exact."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.perplexity import (
    PerplexityResult,
    ScoredSpan,
    chat_perplexity,
    chat_spans,
    clamp_window,
    score_spans,
    sliding_window_perplexity,
    sliding_window_spans,
)
from tests.pipeline.test_bases_models import held_out_text, trained_and_random


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from mlx_lm import load

    trained_dir, random_dir = trained_and_random(tmp_path_factory)
    trained, tokenizer = load(str(trained_dir))
    random_model, _ = load(str(random_dir))
    return trained, random_model, tokenizer


@given(n=st.integers(0, 300), window=st.integers(2, 64), data=st.data())
def test_windows_score_every_token_but_the_first_exactly_once(n, window, data):
    stride = data.draw(st.integers(1, window))
    spans = sliding_window_spans(n, window=window, stride=stride)
    scored = [t for _, first, end in spans for t in range(first, end)]
    assert scored == list(range(1, n))
    for start, first, end in spans:
        assert end - start <= window and start < first
        # Context is at least window - stride once the text allows it.
        assert first - start >= min(window - stride, first)


def test_bad_windows_are_refused():
    with pytest.raises(ValueError, match="window"):
        sliding_window_spans(10, window=1, stride=1)
    with pytest.raises(ValueError, match="stride"):
        sliding_window_spans(10, window=8, stride=9)


def test_combine_weights_by_tokens_and_ignores_empty_results():
    combined = PerplexityResult.combine(
        [PerplexityResult.from_total(nll_sum=3.0, tokens=1), PerplexityResult.from_total(nll_sum=3.0, tokens=3),
         PerplexityResult.from_total(nll_sum=0.0, tokens=0)]
    )
    assert combined.tokens == 4 and combined.nll == pytest.approx(1.5)
    assert combined.perplexity == pytest.approx(math.exp(1.5))


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_trained_model_reads_held_out_cantonese_better_than_random_init(models):
    trained, random_model, tokenizer = models
    ids = tokenizer.encode(held_out_text())[:1500]
    window, stride = clamp_window(trained, 512, 256)
    assert (window, stride) == (192, 96)  # the fake's context is 192 tokens
    good = sliding_window_perplexity(trained, ids, window=window, stride=stride)
    bad = sliding_window_perplexity(random_model, ids, window=window, stride=stride)
    assert good.tokens == bad.tokens == len(ids) - 1
    assert good.perplexity < 0.5 * bad.perplexity
    # A random model is close to uniform over the vocabulary; the trained one far below it.
    vocab = trained.args.vocab_size
    assert bad.perplexity > vocab / 4 and good.perplexity < vocab / 2


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_one_window_over_everything_equals_a_direct_forward_pass(models):
    import mlx.core as mx

    trained, _, tokenizer = models
    ids = tokenizer.encode(held_out_text())[:120]
    logits = trained(mx.array([ids[:-1]])).astype(mx.float32)[0]
    log_probs = logits - mx.logsumexp(logits, axis=-1, keepdims=True)
    direct = -sum(log_probs[i, ids[i + 1]].item() for i in range(len(ids) - 1))
    result = sliding_window_perplexity(trained, ids, window=192, stride=192)
    assert result.tokens == len(ids) - 1
    assert result.nll * result.tokens == pytest.approx(direct, rel=1e-4)
    # Shorter windows (less context) and batched scoring give a close but not identical value.
    narrow = sliding_window_perplexity(trained, ids, window=32, stride=16)
    assert narrow.tokens == result.tokens and narrow.nll != result.nll
    assert abs(narrow.nll - result.nll) < 1.0


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_chat_perplexity_scores_only_assistant_turns(models):
    trained, _, tokenizer = models
    messages = [
        {"role": "system", "content": "你係連登仔。"},
        {"role": "user", "content": "今晚食咩好？"},
        {"role": "assistant", "content": "食飯啦，仲使問。"},
        {"role": "user", "content": "好。"},
        {"role": "assistant", "content": "係咪呀。"},
    ]
    spans = chat_spans(tokenizer, messages)
    assert len(spans) == 2
    for span, reply in zip(spans, ("食飯啦，仲使問。", "係咪呀。")):
        scored_text = tokenizer.decode(span.tokens[span.first : span.end])
        assert scored_text.startswith(reply) and "<|im_end|>" in scored_text
        assert "今晚" not in scored_text and "<|im_start|>" not in scored_text
    row = {"messages": messages}
    result = chat_perplexity(trained, tokenizer, [row, row])
    assert result.tokens == 2 * sum(s.end - s.first for s in spans)
    # Same as scoring the spans by hand; changing a user turn changes context, not the count.
    assert result.nll == pytest.approx(score_spans(trained, spans).nll, rel=1e-4)
    other = [dict(m) for m in messages]
    other[1]["content"] = "你今日返工未？"
    assert chat_perplexity(trained, tokenizer, [{"messages": other}]).tokens == result.tokens // 2


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_chat_perplexity_cuts_rows_at_max_tokens(models):
    trained, _, tokenizer = models
    long_reply = "我覺得" * 200
    row = {"messages": [{"role": "user", "content": "講多啲"}, {"role": "assistant", "content": long_reply}]}
    cut = chat_perplexity(trained, tokenizer, [row], max_tokens=64)
    default = chat_perplexity(trained, tokenizer, [row])  # the model's context: 192
    prompt_length = chat_spans(tokenizer, row["messages"])[0].first
    assert cut.tokens == 64 - prompt_length
    assert default.tokens == 192 - prompt_length


def test_empty_inputs_give_nan_not_a_perfect_score():
    result = score_spans(object(), [ScoredSpan(tokens=[5], first=0, end=1)])
    assert result.tokens == 0 and math.isnan(result.perplexity)

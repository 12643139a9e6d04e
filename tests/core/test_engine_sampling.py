"""The batch sampling graph (core/engine_sampling.py) on plain mlx arrays, no model: the
repetition penalty matches mlx-lm's, the normalizer matches logsumexp, and every row draws
the same token whatever else shares its batch."""

from __future__ import annotations

import pytest

from core.generation import SamplingParams

VOCAB = 1000


@pytest.fixture(scope="module")
def mx():
    import mlx.core as mx  # lazily, as elsewhere: after conftest's OpenBLAS preload

    return mx


@pytest.fixture(scope="module")
def es():
    import core.engine_sampling as es

    return es


def settings(es, *, temperature=1.0, top_p=1.0, seed=0, penalty=1.0):
    return es.RowSettings(temperature=temperature, top_p=top_p, seed=seed, penalty=penalty)


def random_logits(mx, rows: int, *, scale: float = 3.0, vocab: int = VOCAB, seed: int = 0):
    return mx.random.normal((rows, vocab), key=mx.random.key(seed)) * scale


def draw_one(es, mx, row, logits, history, *, candidates=128) -> int:
    """`row`'s token drawn in a batch of its own."""
    return es.RowBatch([row], candidates=candidates).draw(logits, history).item()


# --- RowSettings -----------------------------------------------------------------------------


def test_row_settings_take_the_request_values(es):
    s = es.RowSettings.from_params(SamplingParams(temperature=0.7, top_p=0.9, repetition_penalty=1.3, seed=42))
    assert s == es.RowSettings(temperature=0.7, top_p=0.9, seed=42, penalty=1.3)
    assert isinstance(s.penalty, float)
    # An explicit seed overrides the request's; seeds are reduced to 32 bits.
    assert es.RowSettings.from_params(SamplingParams(seed=42), seed=7).seed == 7
    assert es.RowSettings.from_params(SamplingParams(seed=(1 << 32) + 5)).seed == 5
    assert es.RowSettings.from_params(SamplingParams(seed=-1)).seed == (1 << 32) - 1
    # A negative temperature is greedy.
    assert es.RowSettings.from_params(SamplingParams(temperature=-1.0)).temperature == 0.0


def test_a_negative_repetition_penalty_is_rejected(es):
    with pytest.raises(ValueError, match="repetition penalty"):
        es.RowSettings.from_params(SamplingParams(repetition_penalty=-0.5))
    with pytest.raises(ValueError):
        es.RowSampling.from_params(SamplingParams(repetition_penalty=-2))


@pytest.mark.parametrize("penalty", [None, 0, 0.0])
def test_a_missing_or_zero_repetition_penalty_means_none(es, penalty):
    assert es.RowSettings.from_params(SamplingParams(repetition_penalty=penalty)).penalty == 1.0


def test_no_seed_draws_a_random_32_bit_one(es):
    seeds = {es.RowSettings.from_params(SamplingParams(seed=None)).seed for _ in range(8)}
    assert all(isinstance(seed, int) and 0 <= seed < 1 << 32 for seed in seeds)
    assert len(seeds) > 1  # 8 draws of 32 bits: a repeat is a ~1e-8 chance


@pytest.mark.parametrize(("top_p", "expected"), [(0.0, 1.0), (-0.1, 1.0), (1.5, 1.0), (1.0, 1.0), (0.5, 0.5), (1e-6, 1e-6)])
def test_top_p_outside_zero_to_one_means_no_nucleus(es, top_p, expected):
    assert es.RowSettings.from_params(SamplingParams(top_p=top_p)).top_p == expected


def test_row_sampling_from_params_starts_at_step_zero(es):
    row = es.RowSampling.from_params(SamplingParams(seed=3, temperature=0.5))
    assert row.step == 0
    assert row.settings == es.RowSettings.from_params(SamplingParams(seed=3, temperature=0.5))


# --- history -----------------------------------------------------------------------------------


def test_history_matrix_left_pads_short_contexts_with_their_first_token(es, mx):
    long = list(range(100, 130))
    history = es.history_matrix([[5, 6, 7], long, [9]])
    assert history.dtype == mx.uint32
    assert history.shape == (3, es.PENALTY_CONTEXT) == (3, 20)
    assert history.tolist() == [[5] * 18 + [6, 7], long[-20:], [9] * 20]


def test_history_matrix_needs_a_token_per_row(es):
    with pytest.raises(ValueError):
        es.history_matrix([[1, 2], []])


def test_push_history_shifts_each_row_left_by_one(es, mx):
    history = es.history_matrix([list(range(20)), list(range(50, 53))])
    pushed = es.push_history(history, mx.array([77, 88], dtype=mx.int32))
    assert pushed.dtype == mx.uint32
    assert pushed.tolist() == [list(range(1, 20)) + [77], [50] * 17 + [51, 52, 88]]


# --- penalize ----------------------------------------------------------------------------------


def test_penalize_is_mlx_lms_repetition_penalty_row_by_row(es, mx):
    from mlx_lm.sample_utils import make_repetition_penalty

    contexts = [
        [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8, 9, 7, 9, 3, 2, 3, 8, 4, 6, 2, 6, 4, 3],  # longer than 20, repeats
        [10, 11, 12],  # short: padded
        [7, 7, 7, 7],  # a single repeated token
        list(range(40, 60)),  # exactly 20
        [0, 999, 500, 0, 999],
    ]
    penalties = [1.3, 2.0, 1.0, 0.7, 1.1]
    logits = random_logits(mx, len(contexts), scale=4.0, seed=1)
    # Make sure both signs occur among the penalized logits.
    logits[:, 3] = -5.0
    logits[:, 4] = 5.0
    history = es.history_matrix(contexts)
    penalized = es.penalize(logits, history, mx.array([[p] for p in penalties], dtype=mx.float32))
    mx.eval(penalized)
    changed = 0
    for i, (context, penalty) in enumerate(zip(contexts, penalties)):
        expected = make_repetition_penalty(penalty)(mx.array(context), mx.array(logits[i : i + 1]))
        assert mx.array_equal(penalized[i : i + 1], expected), i
        changed += not mx.array_equal(penalized[i], logits[i])
    assert changed == 4  # every row but the penalty-1 one was really changed


def test_a_penalty_of_one_leaves_the_row_bit_identical(es, mx):
    logits = random_logits(mx, 2, scale=50.0, seed=2)
    history = es.history_matrix([list(range(20)), [1, 2, 3]])
    penalized = es.penalize(logits, history, mx.array([[1.0], [1.5]], dtype=mx.float32))
    assert mx.array_equal(penalized[0], logits[0])
    assert not mx.array_equal(penalized[1], logits[1])
    # Only the seen tokens of the penalized row moved.
    moved = [j for j, (a, b) in enumerate(zip(penalized[1].tolist(), logits[1].tolist())) if a != b]
    assert set(moved) <= {1, 2, 3} and moved


# --- log_normalizer ----------------------------------------------------------------------------


@pytest.mark.parametrize("scale", [0.1, 1.0, 10.0, 30.0, 100.0, 300.0])
def test_log_normalizer_matches_logsumexp(es, mx, scale):
    import numpy as np

    logits = random_logits(mx, 8, scale=scale, vocab=4096, seed=int(scale * 10)) + mx.array([[-200.0], [0.0], [50.0], [0.0], [0.0], [0.0], [0.0], [0.0]])
    got = es.log_normalizer(logits)
    assert got.shape == (8, 1) and got.dtype == mx.float32
    expected = mx.logsumexp(logits, axis=-1, keepdims=True)
    assert mx.max(mx.abs(got - expected)).item() <= 1e-5
    # And against a float64 reference, allowing the float32 rounding of the result itself.
    x = np.array(logits, dtype=np.float64)
    top = x.max(axis=-1, keepdims=True)
    ref = top + np.log(np.exp(x - top).sum(axis=-1, keepdims=True))
    assert (np.abs(np.array(got, dtype=np.float64) - ref) <= 1e-5 + 2 * np.spacing(np.abs(ref).astype(np.float32))).all()


def test_log_normalizer_ignores_minus_infinity_entries(es, mx):
    logits = random_logits(mx, 4, scale=5.0, vocab=512, seed=3)
    mask = mx.random.uniform(shape=logits.shape, key=mx.random.key(4)) < 0.5
    logits = mx.where(mask, -mx.inf, logits)
    logits[:, 0] = 1.0  # every row keeps a finite entry
    logits[3, 1:] = -mx.inf  # one row with a single finite entry: normalizer is that entry
    got = es.log_normalizer(logits)
    assert mx.all(mx.isfinite(got)).item()
    assert mx.max(mx.abs(got - mx.logsumexp(logits, axis=-1, keepdims=True))).item() <= 1e-5
    assert got[3, 0].item() == pytest.approx(1.0, abs=1e-6)


# --- RowBatch.draw -----------------------------------------------------------------------------


def test_an_all_greedy_batch_draws_the_argmax_of_the_penalized_logits(es, mx):
    logits = random_logits(mx, 3, seed=5)
    top = mx.argmax(logits, axis=-1).tolist()
    contexts = [[top[0], 1, 2], [top[1]], [4, 5, 6]]
    for i in (0, 1):  # a clear winner that only the penalty can overturn
        logits[i, top[i]] = 20.0
        logits[i, (top[i] + 1) % VOCAB] = 15.0
    penalties = [2.0, 1.0, 1.5]
    rows = [es.RowSampling(settings(es, temperature=0.0, seed=i, penalty=p)) for i, p in enumerate(penalties)]
    batch = es.RowBatch(rows)
    assert batch.greedy
    history = es.history_matrix(contexts)
    drawn = batch.draw(logits, history).tolist()
    expected = mx.argmax(es.penalize(logits, history, mx.array([[p] for p in penalties])), axis=-1).tolist()
    assert drawn == expected
    assert drawn[0] == (top[0] + 1) % VOCAB  # penalized away from its raw argmax
    assert drawn[1] == top[1]  # penalty 1: the raw argmax
    assert [row.step for row in rows] == [1, 1, 1]


def test_a_greedy_row_in_a_mixed_batch_still_draws_its_argmax(es, mx):
    rows = [
        es.RowSampling(settings(es, temperature=2.0, seed=1)),
        es.RowSampling(settings(es, temperature=0.0, seed=2, penalty=1.5)),
        es.RowSampling(settings(es, temperature=5.0, top_p=0.5, seed=3)),
    ]
    batch = es.RowBatch(rows)
    assert not batch.greedy
    for step in range(10):
        logits = random_logits(mx, 3, scale=1.0, seed=100 + step)
        history = es.history_matrix([[1], [step, 2 * step, 3 * step], [2]])
        expected = mx.argmax(es.penalize(logits[1:2], history[1:2], mx.array([[1.5]])), axis=-1).item()
        assert batch.draw(logits, history).tolist()[1] == expected


def test_a_seeded_row_draws_the_same_token_alone_and_in_any_batch(es, mx):
    seeded = settings(es, temperature=1.0, top_p=0.95, seed=1234, penalty=1.2)
    others = [settings(es, temperature=0.0, seed=9), settings(es, temperature=3.0, seed=5, top_p=0.3), settings(es, temperature=0.8, seed=77)]
    alone_tokens, batched_tokens = [], []
    for step in range(30):
        logits = random_logits(mx, 4, scale=0.5, seed=step)  # flat: the draw is really random
        history = es.history_matrix([[step, 1, 2, 3], [4], [5, 6], [step + 7]])
        alone_tokens.append(draw_one(es, mx, es.RowSampling(seeded, step=step), logits[:1], history[:1]))
        # The same row at the same step, at another position among rows at other steps.
        rows = [es.RowSampling(others[0], step=3), es.RowSampling(others[1], step=50), es.RowSampling(seeded, step=step), es.RowSampling(others[2])]
        order = mx.array([1, 2, 0, 3])
        batched_tokens.append(es.RowBatch(rows).draw(logits[order], history[order]).tolist()[2])
    assert batched_tokens == alone_tokens
    assert len(set(alone_tokens)) > 5  # not a degenerate argmax


def test_draws_are_reproducible_and_each_advances_the_step_by_one(es, mx):
    def run(seed: int, steps: int = 20) -> tuple[list[int], int]:
        row = es.RowSampling(settings(es, temperature=1.0, seed=seed))
        batch = es.RowBatch([row])
        history = es.history_matrix([[1, 2, 3]])
        tokens = []
        for step in range(steps):
            assert row.step == step
            tokens.append(batch.draw(random_logits(mx, 1, scale=0.5, seed=step), history).item())
        return tokens, row.step

    first, steps = run(seed=42)
    assert steps == 20
    assert run(seed=42) == (first, 20)
    assert run(seed=43)[0] != first
    # Starting at a later step continues the same stream of numbers.
    row = es.RowSampling(settings(es, temperature=1.0, seed=42), step=10)
    history = es.history_matrix([[1, 2, 3]])
    assert draw_one(es, mx, row, random_logits(mx, 1, scale=0.5, seed=10), history) == first[10]
    # Steps advance per row, the same for every row of a batch.
    rows = [es.RowSampling(settings(es, seed=s), step=s * 5) for s in range(3)]
    batch = es.RowBatch(rows)
    for _ in range(4):
        batch.draw(random_logits(mx, 3), es.history_matrix([[1], [2], [3]]))
    assert [row.step for row in rows] == [4, 9, 14]


def test_a_tiny_top_p_draws_the_most_likely_token(es, mx):
    logits = random_logits(mx, 1, scale=0.3, seed=11)  # flat: without the nucleus, anything goes
    history = es.history_matrix([[0]])
    best = mx.argmax(logits, axis=-1).item()
    assert best != 0
    for seed in range(20):
        row = es.RowSampling(settings(es, temperature=5.0, top_p=1e-6, seed=seed), step=seed)
        assert draw_one(es, mx, row, logits, history) == best
    # The same flat logits with no nucleus draw many different tokens.
    free = {draw_one(es, mx, es.RowSampling(settings(es, temperature=5.0, seed=s)), logits, history) for s in range(20)}
    assert len(free) > 10


def test_a_hot_row_without_nucleus_draws_many_distinct_tokens(es, mx):
    logits = random_logits(mx, 1, scale=2.0, seed=12)
    history = es.history_matrix([[0]])
    row = es.RowSampling(settings(es, temperature=3.0, top_p=1.0, seed=99))
    batch = es.RowBatch([row])
    tokens = [batch.draw(logits, history).item() for _ in range(40)]
    assert len(set(tokens)) >= 10
    assert all(0 <= t < VOCAB for t in tokens)
    # Only the 128 candidates can be drawn.
    candidates = set(mx.argsort(-logits, axis=-1)[0, :128].tolist())
    assert set(tokens) <= candidates


def test_the_nucleus_is_cut_by_full_vocabulary_mass(es, mx):
    import math

    vocab = 2000
    # p(a) = 0.4, p(b) = 0.2 and 0.4 spread over the other 1998 tokens: top_p 0.5 keeps a and b.
    # (Renormalised over the 128 candidates alone, a would carry ~0.64 and be kept alone.)
    rest = 0.4 / (vocab - 2)
    base = [math.log(rest)] * vocab
    a, b = 17, 1500
    base[a], base[b] = math.log(0.4), math.log(0.2)
    logits = mx.array([base])
    history = es.history_matrix([[3]])
    drawn = [draw_one(es, mx, es.RowSampling(settings(es, temperature=1.0, top_p=0.5, seed=s)), logits, history) for s in range(60)]
    assert set(drawn) == {a, b}
    # top_p 0.3: only a.
    drawn = [draw_one(es, mx, es.RowSampling(settings(es, temperature=1.0, top_p=0.3, seed=s)), logits, history) for s in range(30)]
    assert set(drawn) == {a}


def test_fewer_tokens_than_candidates_still_draw(es, mx):
    logits = random_logits(mx, 2, scale=0.5, vocab=50, seed=13)
    history = es.history_matrix([[1], [2]])
    rows = [es.RowSampling(settings(es, temperature=0.0)), es.RowSampling(settings(es, temperature=2.0, seed=4))]
    batch = es.RowBatch(rows, candidates=128)
    drawn = [batch.draw(logits, history).tolist() for _ in range(20)]
    assert {d[0] for d in drawn} == {mx.argmax(logits[0]).item()}
    assert all(0 <= d[1] < 50 for d in drawn) and len({d[1] for d in drawn}) > 3

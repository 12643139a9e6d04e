"""The corrected loss mask (vs mlx-lm 0.32.2's) and the seeded, resumable batch iterator."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.train_loss import (
    buggy_target_mask,
    iterate_batches,
    masked_loss,
    target_mask,
)
from tests.fakes.tiny_mlx_model import tiny_model_path  # noqa: F401 (fixture)


class FakeGroup:
    """The two methods iterate_batches asks of an mx.distributed group."""

    def __init__(self, rank: int, size: int) -> None:
        self._rank, self._size = rank, size

    def rank(self) -> int:
        return self._rank

    def size(self) -> int:
        return self._size


def token_dataset(count: int = 12, *, seed: int = 1) -> list[tuple[list[int], int]]:
    rng = np.random.default_rng(seed)
    return [([int(t) for t in rng.integers(1, 50, size=int(rng.integers(3, 40)))], 0) for _ in range(count)]


def test_mask_counts_exactly_the_target_tokens_and_mlx_lm_counts_one_padding_more():
    import mlx.core as mx

    lengths = mx.array([[0, 5], [0, 9], [2, 7]])  # (offset, length) as the datasets give them
    width = 12
    ours = target_mask(lengths, width)
    theirs = buggy_target_mask(lengths, width)
    # A sample of length L has L - 1 next-token targets; with a prompt offset o, L - o of them.
    assert ours.sum(axis=1).tolist() == [4, 8, 5]
    assert theirs.sum(axis=1).tolist() == [5, 9, 6]
    # The extra position is the one predicting the first padding token (index == length).
    extra = mx.logical_and(theirs, mx.logical_not(ours)).astype(mx.int32)
    assert [row.index(1) + 1 for row in extra.tolist()] == [5, 9, 7]


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_masked_loss_equals_per_sample_loss_without_padding(tiny_model_path):  # noqa: F811
    import mlx.core as mx
    from mlx import nn
    from mlx_lm.tuner.trainer import default_loss
    from mlx_lm.utils import load

    model, _ = load(tiny_model_path)
    samples = [[5, 17, 230, 41, 9], [7, 7, 120, 33, 64, 80, 2, 11, 19], [300, 4, 8]]
    batch = np.zeros((len(samples), 33), np.int32)
    for row, tokens in enumerate(samples):
        batch[row, : len(tokens)] = tokens
    lengths = mx.array([[0, len(tokens)] for tokens in samples])

    # Reference: each sample alone, no padding anywhere, mean CE over all its targets.
    total, count = 0.0, 0
    for tokens in samples:
        array = mx.array([tokens])
        ce = nn.losses.cross_entropy(model(array[:, :-1]), array[:, 1:])
        total += ce.sum().item()
        count += len(tokens) - 1

    loss, tokens = masked_loss(model, mx.array(batch), lengths)
    bug_loss, bug_tokens = default_loss(model, mx.array(batch), lengths)
    assert tokens.item() == count == 14
    assert loss.item() == pytest.approx(total / count, rel=1e-4)
    # mlx-lm 0.32.2 trains one padding target (token 0) per sample on top.
    assert bug_tokens.item() == count + len(samples)
    assert bug_loss.item() != pytest.approx(total / count, rel=1e-3)


def test_batches_depend_only_on_the_seed():
    dataset = token_dataset()
    first = [(t.tolist(), n.tolist()) for (t, n), _ in zip(iterate_batches(dataset, 4, 64, loop=True, seed=3), range(7))]
    np.random.seed(12345)  # another numpy user must not change our order (mlx-lm's does)
    np.random.random(10)
    again = [(t.tolist(), n.tolist()) for (t, n), _ in zip(iterate_batches(dataset, 4, 64, loop=True, seed=3), range(7))]
    other = [(t.tolist(), n.tolist()) for (t, n), _ in zip(iterate_batches(dataset, 4, 64, loop=True, seed=4), range(7))]
    assert first == again
    assert first != other


def test_skip_resumes_the_exact_batch_sequence_across_epochs():
    dataset = token_dataset()  # 3 batches per epoch: 10 batches cross three reshuffles
    whole = [(t.tolist(), n.tolist()) for (t, n), _ in zip(iterate_batches(dataset, 4, 64, loop=True, seed=0), range(10))]
    resumed = [(t.tolist(), n.tolist()) for (t, n), _ in zip(iterate_batches(dataset, 4, 64, loop=True, seed=0, skip=4), range(6))]
    assert resumed == whole[4:]


def test_ranks_split_each_batch_between_them():
    dataset = token_dataset()
    full = [t.tolist() for (t, _), _ in zip(iterate_batches(dataset, 4, 64, loop=True, seed=2), range(5))]
    for step in range(5):
        parts = []
        for rank in (0, 1):
            batches = iterate_batches(dataset, 4, 64, loop=True, seed=2, comm_group=FakeGroup(rank, 2))
            tokens = [t.tolist() for (t, _), _ in zip(batches, range(step + 1))][step]
            assert len(tokens) == 2
            parts.extend(tuple(row) for row in tokens)
        # Each rank pads to its own longest sample; compare the samples without padding.
        strip = lambda row: tuple(row[: max(i for i, v in enumerate(row) if v) + 1])
        assert sorted(map(strip, parts)) == sorted(strip(tuple(row)) for row in full[step])
    with pytest.raises(ValueError, match="divisible"):
        next(iterate_batches(dataset, 3, 64, comm_group=FakeGroup(0, 2)))


def test_padding_width_offsets_and_truncation():
    dataset = [([1, 2, 3], 1), ([4] * 40, 0), ([5] * 10, 2), ([6] * 7, 0)]
    tokens, lengths = next(iterate_batches(dataset, 4, 2048))
    assert tokens.shape == (4, 65)  # 1 + the next multiple of 32 above the longest (40)
    assert sorted(map(tuple, lengths.tolist())) == [(0, 7), (0, 40), (1, 3), (2, 10)]
    tokens, lengths = next(iterate_batches(dataset, 4, 16))
    assert tokens.shape == (4, 16)
    assert max(length for _, length in lengths.tolist()) == 16
    with pytest.raises(ValueError, match="at least batch_size"):
        next(iterate_batches(dataset, 8, 64))

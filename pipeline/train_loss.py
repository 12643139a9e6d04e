"""The training loss with a correct target mask, and deterministic, resumable batches.

mlx-lm 0.32.2's `tuner.trainer.default_loss` masks with `steps <= length`, which also trains the
first padding position (token 0) of every sample: the model learns to emit token 0 after each
reply. `masked_loss` uses `steps < length`, so exactly the sample's own target tokens count.

`iterate_batches` keeps mlx-lm's batching (length-sorted buckets, padding to a multiple of 32
plus one, data-parallel rank slicing) but shuffles with its own seeded generator instead of the
global numpy one, and can skip the batches a resumed run has already trained on.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

PAD_MULTIPLE = 32  # as mlx-lm: pad to 1 + a multiple of 32 so compiled shapes repeat
EVAL_SEED = 0  # validation batches are the same set every time they are drawn


def target_mask(lengths: Any, width: int) -> Any:
    """Which of the `width` target positions count: those predicting tokens offset..length-1.

    `lengths` is an (batch, 2) mlx array of (offset, length). Target position t predicts token
    t + 1, so a sample of length L has L - 1 targets (fewer with a prompt offset).

    >>> import mlx.core as mx
    >>> target_mask(mx.array([[0, 3], [2, 4]]), 5).astype(mx.int32).tolist()
    [[1, 1, 0, 0, 0], [0, 1, 1, 0, 0]]
    """
    import mlx.core as mx

    steps = mx.arange(1, width + 1)
    return mx.logical_and(steps >= lengths[:, 0:1], steps < lengths[:, 1:])


def buggy_target_mask(lengths: Any, width: int) -> Any:
    """mlx-lm 0.32.2's mask (`<=`), kept to show and test the difference. Do not train with it."""
    import mlx.core as mx

    steps = mx.arange(1, width + 1)
    return mx.logical_and(steps >= lengths[:, 0:1], steps <= lengths[:, 1:])


def masked_loss(model: Any, batch: Any, lengths: Any) -> tuple[Any, Any]:
    """Mean cross-entropy over the target tokens and their count: the signature of mlx-lm's loss."""
    import mlx.core as mx
    from mlx import nn

    inputs = batch[:, :-1]
    targets = batch[:, 1:]
    logits = model(inputs)
    mask = target_mask(lengths, targets.shape[1])
    token_count = mask.sum()
    loss = (nn.losses.cross_entropy(logits, targets) * mask).astype(mx.float32).sum() / token_count
    return loss, token_count


def iterate_batches(
    dataset: Any,
    batch_size: int,
    max_seq_length: int,
    loop: bool = False,
    seed: int | None = None,
    comm_group: Any = None,
    *,
    skip: int = 0,
) -> Iterator[tuple[Any, Any]]:
    """Yield (tokens, lengths) batches like mlx-lm's `iterate_batches`, reproducibly.

    The order depends only on `seed` (None: EVAL_SEED), never on other numpy users, so a run
    resumed with `skip=k` sees exactly the batches k+1, k+2, ... of an uninterrupted run.
    """
    import mlx.core as mx

    count = len(dataset)
    if count < batch_size:
        raise ValueError(f"Dataset must have at least batch_size={batch_size} examples but only has {count}.")
    rank, world = (comm_group.rank(), comm_group.size()) if comm_group is not None else (0, 1)
    if batch_size % world:
        raise ValueError(f"The batch size ({batch_size}) must be divisible by the number of workers ({world})")
    length_of = dataset.itemlen if hasattr(dataset, "itemlen") else (lambda i: len(dataset[i][0]))
    order = sorted(range(count), key=length_of)
    buckets = [order[i + rank : i + batch_size : world] for i in range(0, count - batch_size + 1, batch_size)]
    rng = np.random.default_rng(EVAL_SEED if seed is None else seed)
    position = 0
    while True:
        for bucket in rng.permutation(len(buckets)):
            position += 1
            if position <= skip:
                continue
            tokens, lengths = _pad_batch([dataset[j] for j in buckets[bucket]], max_seq_length)
            yield mx.array(tokens), mx.array(lengths)
        if not loop:
            return


def _pad_batch(samples: list[Any], max_seq_length: int) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Zero-padded token matrix and (offset, length) pairs, truncated to max_seq_length."""
    pairs = [sample if isinstance(sample, tuple) else (sample, 0) for sample in samples]
    longest = max(len(tokens) for tokens, _ in pairs)
    width = min(1 + PAD_MULTIPLE * ((longest + PAD_MULTIPLE - 1) // PAD_MULTIPLE), max_seq_length)
    matrix = np.zeros((len(pairs), width), np.int32)
    lengths = []
    for row, (tokens, offset) in enumerate(pairs):
        kept = min(len(tokens), width)
        matrix[row, :kept] = tokens[:kept]
        lengths.append((int(offset), kept))
    return matrix, lengths

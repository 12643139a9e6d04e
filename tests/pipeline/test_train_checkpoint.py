"""Checkpoints: weights + optimizer state + iteration round-trip, crash leftovers, pruning, the log."""

from __future__ import annotations

import json

import pytest

from pipeline.train_checkpoint import (
    CheckpointState,
    latest_checkpoint,
    list_checkpoints,
    restore_checkpoint,
    save_checkpoint,
)
from pipeline.train_progress import (
    TRAIN_LOG_FILE,
    LogRow,
    TrainProgress,
    read_train_log,
    truncate_train_log,
)


def small_model_and_optimizer(seed: int):
    import mlx.core as mx
    import mlx.optimizers as optim
    from mlx import nn

    class TwoLayers(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layers = [nn.Linear(4, 8), nn.Linear(8, 2)]

        def __call__(self, x):
            return self.layers[1](nn.relu(self.layers[0](x)))

    mx.random.seed(seed)
    model = TwoLayers()
    model.layers[0].freeze()  # as with adapters: only part of the model trains
    return model, optim.Adam(learning_rate=1e-2)


def train_steps(model, optimizer, steps: int) -> None:
    import mlx.core as mx
    from mlx import nn

    x, y = mx.ones((3, 4)), mx.zeros((3, 2))
    loss_and_grad = nn.value_and_grad(model, lambda m: ((m(x) - y) ** 2).mean())
    for _ in range(steps):
        _, grads = loss_and_grad(model)
        optimizer.update(model, grads)
        mx.eval(model.parameters(), optimizer.state)


def flat(tree) -> dict:
    from mlx.utils import tree_flatten

    return {key: value.tolist() for key, value in tree_flatten(tree)}


def test_round_trip_restores_weights_optimizer_and_iteration(tmp_path):
    model, optimizer = small_model_and_optimizer(seed=0)
    train_steps(model, optimizer, 3)
    save_checkpoint(tmp_path, model=model, optimizer=optimizer, state=CheckpointState(iteration=3, elapsed_seconds=1.5, trained_tokens=99))

    restored_model, restored_optimizer = small_model_and_optimizer(seed=0)  # same frozen part, fresh trainable part
    found = latest_checkpoint(tmp_path)
    assert found.state == CheckpointState(iteration=3, elapsed_seconds=1.5, trained_tokens=99)
    restore_checkpoint(found, model=restored_model, optimizer=restored_optimizer)
    assert flat(restored_model.parameters()) == flat(model.parameters())
    assert flat(restored_optimizer.state) == flat(optimizer.state)
    assert restored_optimizer.step.item() == 3

    # Training on from the restored state is the same as never stopping.
    train_steps(model, optimizer, 2)
    train_steps(restored_model, restored_optimizer, 2)
    assert flat(restored_model.parameters()) == flat(model.parameters())


def test_crash_leftovers_are_ignored_and_old_checkpoints_pruned(tmp_path):
    model, optimizer = small_model_and_optimizer(seed=1)
    for iteration in (10, 20, 30):
        save_checkpoint(tmp_path, model=model, optimizer=optimizer, state=CheckpointState(iteration=iteration), keep=2)
    assert [c.state.iteration for c in list_checkpoints(tmp_path)] == [20, 30]
    # A kill mid-save leaves a temporary directory, or a numbered one without state.json.
    (tmp_path / "checkpoints" / ".0000040.tmp").mkdir()
    (tmp_path / "checkpoints" / "0000050").mkdir()
    assert latest_checkpoint(tmp_path).state.iteration == 30
    assert latest_checkpoint(tmp_path / "elsewhere") is None


def test_progress_writes_the_log_contract_and_checkpoints_at_save_steps(tmp_path):
    model, optimizer = small_model_and_optimizer(seed=2)
    lines: list[str] = []
    progress = TrainProgress(tmp_path, model=model, optimizer=optimizer, start=CheckpointState(iteration=20, elapsed_seconds=5.0),
                             total_iters=60, save_every=20, keep_checkpoints=3, echo=lines.append)
    progress.on_val_loss_report({"iteration": 0, "val_loss": 3.5, "val_time": 0.1})
    report = {"train_loss": 2.5, "learning_rate": 1e-4, "tokens_per_second": 900.0, "iterations_per_second": 2.0, "peak_memory": 0.07, "trained_tokens": 640}
    progress.on_train_loss_report({**report, "iteration": 10})
    progress.on_train_loss_report({**report, "iteration": 20})
    rows = [json.loads(line) for line in (tmp_path / TRAIN_LOG_FILE).read_text().splitlines()]
    assert set(rows[0]) == {"step", "train_loss", "val_loss", "learning_rate", "tokens_per_second", "peak_memory_gb", "elapsed_seconds"}
    assert [(row["step"], row["train_loss"], row["val_loss"]) for row in rows] == [(20, None, 3.5), (30, 2.5, None), (40, 2.5, None)]
    assert all(row["elapsed_seconds"] >= 5.0 for row in rows)  # continues the crashed run's clock
    assert [c.state.iteration for c in list_checkpoints(tmp_path)] == [40]  # run-global numbering
    assert latest_checkpoint(tmp_path).state.trained_tokens == 640
    assert (tmp_path / "adapters.safetensors").is_file()  # the newest adapters, beside the log
    assert any("eta" in line and "40/60" in line for line in lines)


def test_truncate_drops_rows_a_resumed_run_redoes(tmp_path):
    path = tmp_path / TRAIN_LOG_FILE
    path.write_text("".join(json.dumps(LogRow(step=s, train_loss=1.0).__dict__) + "\n" for s in (10, 20, 30)))
    truncate_train_log(path, after_step=20)
    assert [row.step for row in read_train_log(path)] == [10, 20]


@pytest.mark.parametrize("keep", [1, 3])
def test_keep_count(tmp_path, keep):
    model, optimizer = small_model_and_optimizer(seed=3)
    for iteration in range(1, 5):
        save_checkpoint(tmp_path, model=model, optimizer=optimizer, state=CheckpointState(iteration=iteration), keep=keep)
    assert [c.state.iteration for c in list_checkpoints(tmp_path)] == list(range(5 - keep, 5))

"""Data-parallel training: two ranks on loopback through `mlx.launch --backend ring`.

mlx-lm's trainer averages gradients over `mx.distributed` and our batches give each rank its
half of every batch, so two ranks at batch 4 see exactly the batches of one process at batch 4.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.train import train_adapters
from pipeline.train_checkpoint import latest_checkpoint
from pipeline.train_config import resolve_config
from pipeline.train_progress import TRAIN_LOG_FILE, read_train_log
from tests.fakes.tiny_mlx_model import tiny_model_path  # noqa: F401 (fixture)
from tests.pipeline.test_train_data import write_chat_dataset

PROJECT = Path(__file__).resolve().parents[2]
MLX_LAUNCH = Path(sys.executable).parent / "mlx.launch"


def free_port_pair() -> int:
    """A port p with p + 1 also free at the time of asking (the ring backend takes one per rank)."""
    for _ in range(50):
        with socket.socket() as first:
            first.bind(("127.0.0.1", 0))
            port = first.getsockname()[1]
            with socket.socket() as second:
                try:
                    second.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
        return port
    raise RuntimeError("no two adjacent free ports")


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.skipif(not MLX_LAUNCH.exists(), reason="mlx.launch is not installed beside this python")
def test_two_ranks_on_loopback_train_the_same_batches_as_one_process(tmp_path, tiny_model_path):  # noqa: F811
    data = write_chat_dataset(tmp_path / "data", train=16, valid=8)
    options = {"model": tiny_model_path, "data": str(data), "iters": 4, "batch_size": 4, "steps_per_report": 2,
               "save_every": 2, "steps_per_eval": 1000, "learning_rate": 1e-3, "val_batches": -1}
    flags = [f"--{key.replace('_', '-')}={value}" for key, value in options.items()]
    command = [str(MLX_LAUNCH), "--backend", "ring", "-n", "2", "--starting-port", str(free_port_pair()), "--",
               sys.executable, "-m", "pipeline.train_cli", "train", *flags,
               "--adapters-dir", str(tmp_path / "adapters"), "--name", "ring"]
    done = subprocess.run(command, cwd=PROJECT, capture_output=True, text=True, timeout=240, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "world size 2" in done.stdout
    assert done.stdout.count("trained ") == 1  # rank 0 speaks for both

    single = train_adapters(resolve_config(options, {"adapters_dir": str(tmp_path / "adapters"), "name": "single"}),
                            echo=lambda line: None)
    ring_dir = tmp_path / "adapters" / "ring"
    # Each rank counted its own half of the targets; all_sum makes the totals equal only if
    # the two halves together are exactly the single process's batches.
    assert latest_checkpoint(ring_dir).state.trained_tokens == latest_checkpoint(single.run_dir).state.trained_tokens
    ring_rows = read_train_log(ring_dir / TRAIN_LOG_FILE)
    single_rows = read_train_log(single.run_dir / TRAIN_LOG_FILE)
    assert [r.step for r in ring_rows] == [r.step for r in single_rows]
    # Validation before any step sees the same weights and the same data split over two ranks.
    assert ring_rows[0].val_loss == pytest.approx(single_rows[0].val_loss, rel=1e-4)
    # Averaged per-rank gradients are close to, not bitwise, the one-process gradient.
    for ring, one in zip(ring_rows[1:], single_rows[1:]):
        for ring_loss, one_loss in ((ring.train_loss, one.train_loss), (ring.val_loss, one.val_loss)):
            assert (ring_loss is None) == (one_loss is None)
            assert ring_loss is None or ring_loss == pytest.approx(one_loss, rel=0.01)

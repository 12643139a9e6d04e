"""The train command as a process: YAML + flags + gradient checkpointing, kill -9 and --resume, errors.

Run in subprocesses: gradient checkpointing patches the model's layer class for the whole process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.train_checkpoint import latest_checkpoint
from pipeline.train_progress import TRAIN_LOG_FILE, read_train_log
from tests.fakes.tiny_mlx_model import tiny_model_path  # noqa: F401 (fixture)
from tests.pipeline.test_train_data import write_chat_dataset

PROJECT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def train_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "pipeline.train_cli", "train", *args]


def run(command: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=PROJECT, capture_output=True, text=True, timeout=240, check=False)


def test_yaml_config_flags_and_gradient_checkpointing(tmp_path, tiny_model_path):  # noqa: F811
    data = write_chat_dataset(tmp_path / "data", train=8, valid=4)
    config = tmp_path / "run.yaml"
    config.write_text(
        f"model: {tiny_model_path}\ndata: {data}\niters: 4\nbatch_size: 2\nsteps_per_report: 2\nsave_every: 2\n"
        "learning_rate: 1e-3\nlora_parameters:\n  rank: 4\n",
        encoding="utf-8",
    )
    done = run(train_command("-c", str(config), "--adapters-dir", str(tmp_path / "adapters"), "--name", "gc",
                             "--grad-checkpoint", "--num-layers", "2"))
    assert done.returncode == 0, done.stderr
    assert "trained" in done.stdout and "4 iterations (from 0)" in done.stdout
    saved = json.loads((tmp_path / "adapters" / "gc" / "adapter_config.json").read_text())
    assert saved["grad_checkpoint"] is True and saved["num_layers"] == 2
    assert saved["lora_parameters"] == {"rank": 4, "dropout": 0.0, "scale": 20.0}
    assert [row.step for row in read_train_log(tmp_path / "adapters" / "gc" / TRAIN_LOG_FILE) if row.train_loss] == [2, 4]


def test_kill_9_then_resume_continues_from_the_last_checkpoint(tmp_path, tiny_model_path):  # noqa: F811
    data = write_chat_dataset(tmp_path / "data", train=16, valid=4)
    run_dir = tmp_path / "adapters" / "killed"
    common = ["--model", tiny_model_path, "--data", str(data), "--adapters-dir", str(tmp_path / "adapters"),
              "--name", "killed", "--batch-size", "4", "--steps-per-report", "2", "--save-every", "2", "--steps-per-eval", "1000"]
    process = subprocess.Popen(train_command(*common, "--iters", "100000"), cwd=PROJECT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 200
        while latest_checkpoint(run_dir) is None or latest_checkpoint(run_dir).state.iteration < 4:
            assert process.poll() is None and time.monotonic() < deadline, "training never reached a checkpoint"
            time.sleep(0.2)
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # its own session: only the process this test started
        process.wait()
    at_kill = latest_checkpoint(run_dir).state.iteration
    target = at_kill + 4

    done = run(train_command(*common, "--resume", "--iters", str(target)))
    assert done.returncode == 0, done.stderr
    assert f"resuming {run_dir} from iteration {at_kill}" in done.stdout
    assert f"{target} iterations (from {at_kill})" in done.stdout
    steps = [row.step for row in read_train_log(run_dir / TRAIN_LOG_FILE) if row.train_loss is not None]
    assert steps == list(range(2, target + 1, 2))  # nothing lost, nothing counted twice
    assert latest_checkpoint(run_dir).state.iteration == target


def test_errors_are_one_line_with_a_cantonese_message(tmp_path, tiny_model_path):  # noqa: F811
    done = run(train_command("--model", tiny_model_path, "--data", str(tmp_path / "missing"), "--adapters-dir", str(tmp_path)))
    assert done.returncode == 1
    assert "no train.jsonl" in done.stderr and "訓練設定有問題" in done.stderr
    assert "Traceback" not in done.stderr

"""Progress of a training run: `train_log.jsonl`, one printed line per report, checkpoints.

`train_log.jsonl` is the contract with `lilm eval`: one object per report line,
`{"step", "train_loss", "val_loss", "learning_rate", "tokens_per_second", "peak_memory_gb",
"elapsed_seconds"}`, with null for what that line does not report.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mlx_lm.tuner.callbacks import TrainingCallback

from pipeline.train_checkpoint import (
    ADAPTERS_FILE,
    CheckpointState,
    checkpoint_seed,
    save_checkpoint,
)

TRAIN_LOG_FILE = "train_log.jsonl"


@dataclass(frozen=True)
class LogRow:
    """One line of train_log.jsonl."""

    step: int
    train_loss: float | None = None
    val_loss: float | None = None
    learning_rate: float | None = None
    tokens_per_second: float | None = None
    peak_memory_gb: float | None = None
    elapsed_seconds: float = 0.0


def read_train_log(path: str | Path) -> list[LogRow]:
    """Every row of a train_log.jsonl (what `lilm eval` plots)."""
    path = Path(path)
    if not path.is_file():
        return []
    return [LogRow(**json.loads(line)) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def truncate_train_log(path: str | Path, *, after_step: int) -> None:
    """Drop rows past `after_step`: they describe training a resumed run is about to redo."""
    path = Path(path)
    kept = [row for row in read_train_log(path) if row.step <= after_step]
    path.write_text("".join(json.dumps(asdict(row)) + "\n" for row in kept), encoding="utf-8")


def format_duration(seconds: float) -> str:
    """Seconds as h:mm:ss.

    >>> format_duration(3725)
    '1:02:05'
    """
    seconds = max(0, round(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class TrainProgress(TrainingCallback):
    """mlx-lm trainer callback: logs, prints and checkpoints with run-global iteration numbers.

    mlx-lm counts iterations from 1 in every call of `train`; a resumed run adds `start`.
    Only rank 0 writes files or prints.
    """

    def __init__(
        self,
        run_dir: Path,
        *,
        model: Any,
        optimizer: Any,
        start: CheckpointState,
        total_iters: int,
        save_every: int,
        keep_checkpoints: int,
        seed: int = 0,
        is_writer: bool = True,
        echo: Callable[[str], None] = print,
    ) -> None:
        self.run_dir = Path(run_dir)
        self.model = model
        self.optimizer = optimizer
        self.start = start
        self.total_iters = total_iters
        self.save_every = save_every
        self.keep_checkpoints = keep_checkpoints
        self.seed = seed
        self.is_writer = is_writer
        self.echo = echo
        self.clock_start = time.perf_counter()
        self.last_checkpoint: Path | None = None
        self.rows: list[LogRow] = []
        self.iterations_per_second: list[float] = []  # one per report window, as mlx-lm measured it

    def elapsed(self) -> float:
        return self.start.elapsed_seconds + time.perf_counter() - self.clock_start

    def on_val_loss_report(self, val_info: dict) -> None:
        # mlx-lm validates before step `it` and reports it as iteration it - 1.
        step = self.start.iteration + int(val_info["iteration"])
        self._write(LogRow(step=step, val_loss=float(val_info["val_loss"]), elapsed_seconds=self.elapsed()))
        self._say(f"step {step:>6}  val_loss {float(val_info['val_loss']):.4f}  ({val_info['val_time']:.1f}s)")

    def on_train_loss_report(self, train_info: dict) -> None:
        step = self.start.iteration + int(train_info["iteration"])
        elapsed = self.elapsed()
        row = LogRow(
            step=step,
            train_loss=float(train_info["train_loss"]),
            learning_rate=float(train_info["learning_rate"]),
            tokens_per_second=float(train_info["tokens_per_second"]),
            peak_memory_gb=float(train_info["peak_memory"]),
            elapsed_seconds=elapsed,
        )
        self._write(row)
        self.iterations_per_second.append(float(train_info["iterations_per_second"]))
        done_here = step - self.start.iteration
        seconds_per_step = (elapsed - self.start.elapsed_seconds) / max(done_here, 1)
        eta = format_duration(seconds_per_step * (self.total_iters - step))
        self._say(
            f"step {step:>6}/{self.total_iters}  loss {row.train_loss:.4f}  lr {row.learning_rate:.2e}  "
            f"{row.tokens_per_second:,.0f} tok/s  peak {row.peak_memory_gb:.2f} GB  "
            f"elapsed {format_duration(elapsed)}  eta {eta}"
        )
        if step % self.save_every == 0 or step == self.total_iters:
            self._checkpoint(step, elapsed, trained_tokens=self.start.trained_tokens + int(train_info["trained_tokens"]))

    def _checkpoint(self, step: int, elapsed: float, *, trained_tokens: int) -> None:
        import mlx.core as mx

        # Every rank reseeds, so a run resumed from here draws the same dropout masks.
        mx.random.seed(checkpoint_seed(self.seed, step))
        if not self.is_writer:
            return
        state = CheckpointState(iteration=step, elapsed_seconds=elapsed, trained_tokens=trained_tokens)
        self.last_checkpoint = save_checkpoint(
            self.run_dir, model=self.model, optimizer=self.optimizer, state=state, keep=self.keep_checkpoints
        )
        # The run directory always holds the newest adapters, so mlx_lm.load / lilm eval can use a
        # run that is still going or that crashed.
        staging = self.run_dir / f".{ADAPTERS_FILE}.tmp"
        shutil.copyfile(self.last_checkpoint / ADAPTERS_FILE, staging)
        os.replace(staging, self.run_dir / ADAPTERS_FILE)
        self._say(f"step {step:>6}  checkpoint {self.last_checkpoint}")

    def _write(self, row: LogRow) -> None:
        self.rows.append(row)
        if self.is_writer:
            with (self.run_dir / TRAIN_LOG_FILE).open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(asdict(row)) + "\n")

    def _say(self, line: str) -> None:
        if self.is_writer:
            self.echo(line)

"""Training checkpoints: trainable weights, optimizer state and the iteration, crash-safe.

Layout under a run's directory (`adapters/<name>/`):

    checkpoints/0000100/adapters.safetensors   trainable parameters (LoRA/DoRA or full layers)
    checkpoints/0000100/optimizer.safetensors  the optimizer's state (moments, step, lr)
    checkpoints/0000100/state.json             iteration, elapsed time, trained tokens

mlx's RNG key cannot be set from Python, so the trainer reseeds it at every checkpoint with
`checkpoint_seed(seed, iteration)`, and a resumed run does the same: dropout draws after a
checkpoint are the same whether or not the run was interrupted there.

A checkpoint is written into a hidden temporary directory and renamed into place, so a kill
at any moment leaves either the whole checkpoint or none of it.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

CHECKPOINTS_DIR = "checkpoints"
ADAPTERS_FILE = "adapters.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"
STATE_FILE = "state.json"


@dataclass(frozen=True)
class CheckpointState:
    """What a resumed run needs besides tensors."""

    iteration: int
    elapsed_seconds: float = 0.0
    trained_tokens: int = 0


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint found on disk."""

    path: Path
    state: CheckpointState


def checkpoint_seed(seed: int, iteration: int) -> int:
    """The mlx RNG seed from `iteration` on.

    >>> checkpoint_seed(0, 100)
    100
    """
    return (int(seed) * 1_000_003 + int(iteration)) % 2**32


def checkpoint_name(iteration: int) -> str:
    """The directory name of a checkpoint: zero-padded so names sort by iteration.

    >>> checkpoint_name(42)
    '0000042'
    """
    return f"{iteration:07d}"


def save_checkpoint(run_dir: str | Path, *, model: Any, optimizer: Any, state: CheckpointState, keep: int = 2) -> Path:
    """Write a checkpoint of `model`'s trainable parameters and `optimizer`; keep the newest `keep`."""
    import mlx.core as mx
    from mlx.utils import tree_flatten

    root = Path(run_dir) / CHECKPOINTS_DIR
    root.mkdir(parents=True, exist_ok=True)
    final = root / checkpoint_name(state.iteration)
    staging = root / f".{final.name}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    mx.save_safetensors(str(staging / ADAPTERS_FILE), dict(tree_flatten(model.trainable_parameters())))
    mx.save_safetensors(str(staging / OPTIMIZER_FILE), dict(tree_flatten(optimizer.state)))
    (staging / STATE_FILE).write_text(json.dumps(asdict(state)), encoding="utf-8")
    if final.exists():
        shutil.rmtree(final)
    os.replace(staging, final)
    for old in list_checkpoints(run_dir)[:-keep]:
        shutil.rmtree(old.path, ignore_errors=True)
    return final


def list_checkpoints(run_dir: str | Path) -> list[Checkpoint]:
    """Complete checkpoints, oldest first (temporary leftovers of a crash are ignored)."""
    root = Path(run_dir) / CHECKPOINTS_DIR
    found = []
    for path in sorted(root.glob("[0-9]" * 7)) if root.is_dir() else []:
        try:
            state = CheckpointState(**json.loads((path / STATE_FILE).read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError):
            continue
        found.append(Checkpoint(path=path, state=state))
    return found


def latest_checkpoint(run_dir: str | Path) -> Checkpoint | None:
    """The newest complete checkpoint, or None."""
    checkpoints = list_checkpoints(run_dir)
    return checkpoints[-1] if checkpoints else None


def restore_checkpoint(checkpoint: Checkpoint, *, model: Any, optimizer: Any) -> None:
    """Load weights into `model` and state into `optimizer` in place."""
    import mlx.core as mx
    from mlx.utils import tree_unflatten

    model.load_weights(str(checkpoint.path / ADAPTERS_FILE), strict=False)
    arrays = mx.load(str(checkpoint.path / OPTIMIZER_FILE))
    # init first so the state tree has the model's shape; then the saved arrays replace it.
    optimizer.init(model.trainable_parameters())
    optimizer.state = tree_unflatten(list(arrays.items()))
    mx.eval(model.parameters(), optimizer.state)

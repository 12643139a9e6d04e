"""`lilm train`: LoRA, DoRA or full fine-tuning on mlx-lm's tuner, resumable after a crash.

The work is mlx-lm's: `tuner.trainer.train` runs the compiled step (data-parallel gradient
averaging under `mlx.launch` included), `linear_to_lora_layers` adds the adapters and
`tuner.datasets` reads the chat JSONL. LiLM adds the corrected loss mask and seeded,
skippable batches (pipeline/train_loss.py), checkpoints with optimizer state and the
iteration (pipeline/train_checkpoint.py), and the progress log (pipeline/train_progress.py).

Everything goes to `<adapters_dir>/<name>/`: `adapters.safetensors`, `adapter_config.json`
(the resolved config; `mlx_lm.load(model, adapter_path=...)` and `mlx_lm.fuse` read it),
`train_log.jsonl` and `checkpoints/`.
"""

from __future__ import annotations

import shutil
import time
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from pipeline.train_config import (
    TrainConfigError,
    TrainError,
    adapter_config,
    adapter_dir,
)

ADAPTER_CONFIG_FILE = "adapter_config.json"


@dataclass(frozen=True)
class TrainResult:
    """What a finished (or already complete) run left behind."""

    run_dir: Path
    iterations: int
    resumed_from: int
    trainable_parameters: int
    final_train_loss: float | None
    final_val_loss: float | None
    seconds: float
    last_checkpoint: Path | None
    # Iterations/s of each report window, timed by mlx-lm's trainer; the first includes compilation.
    window_iterations_per_second: tuple[float, ...] = ()

    @property
    def iterations_per_second(self) -> float | None:
        """Mean speed of the report windows after the first (all of them if there is one)."""
        return _steady_rate(list(self.window_iterations_per_second))


def train_adapters(
    config: Mapping[str, Any],
    *,
    resume: bool = False,
    overwrite: bool = False,
    echo: Callable[[str], None] = print,
) -> TrainResult:
    """Fine-tune `config["model"]` on `config["data"]` as a resolved config says (see train_config).

    `resume` continues from the newest checkpoint in the run directory (weights, optimizer
    state, iteration, RNG); without it an existing run directory is refused unless `overwrite`.
    """
    import mlx.core as mx
    from mlx_lm.tuner.datasets import CacheDataset
    from mlx_lm.tuner.trainer import TrainingArgs
    from mlx_lm.tuner.trainer import train as mlx_train
    from mlx_lm.utils import save_config

    from core.backends.mlx_backend import load_model
    from pipeline.train_checkpoint import (
        CheckpointState,
        checkpoint_seed,
        restore_checkpoint,
    )
    from pipeline.train_loss import masked_loss
    from pipeline.train_progress import (
        TRAIN_LOG_FILE,
        TrainProgress,
        truncate_train_log,
    )

    began = time.perf_counter()
    world = mx.distributed.init()
    is_writer = world.rank() == 0
    say = echo if is_writer else (lambda line: None)
    run_dir = adapter_dir(config)
    checkpoint = _prepare_run_dir(run_dir, resume=resume, overwrite=overwrite, is_writer=is_writer)

    mx.random.seed(config["seed"])
    model, tokenizer = load_model(str(config["model"]))
    train_set, valid_set = _load_chat_data(config, tokenizer)
    trainable = _make_trainable(model, config)
    optimizer = _build_optimizer(config)

    start = CheckpointState(iteration=0)
    if checkpoint is not None:
        restore_checkpoint(checkpoint, model=model, optimizer=optimizer)
        if not config.get("lr_schedule"):
            optimizer.learning_rate = mx.array(float(config["learning_rate"]))  # a new --learning-rate wins
        start = checkpoint.state
        mx.random.seed(checkpoint_seed(config["seed"], start.iteration))
        say(f"resuming {run_dir} from iteration {start.iteration} ({checkpoint.path.name})")
    _check_ranks_agree(world, start.iteration)
    if is_writer:
        save_config(adapter_config(config), run_dir / ADAPTER_CONFIG_FILE)
        truncate_train_log(run_dir / TRAIN_LOG_FILE, after_step=start.iteration)
    if start.iteration >= config["iters"]:
        say(f"{run_dir}: already trained {start.iteration} of {config['iters']} iterations")
        return TrainResult(run_dir, start.iteration, start.iteration, trainable, None, None, 0.0, checkpoint and checkpoint.path)

    say(
        f"training {config['fine_tune_type']} on {config['model']}: {trainable:,} trainable parameters, "
        f"{len(train_set)} train / {len(valid_set)} valid samples, world size {world.size()} -> {run_dir}"
    )
    remaining = config["iters"] - start.iteration
    args = TrainingArgs(
        batch_size=config["batch_size"],
        iters=remaining,
        val_batches=config["val_batches"],
        steps_per_report=config["steps_per_report"],
        steps_per_eval=config["steps_per_eval"],
        steps_per_save=remaining + 1,  # mlx-lm's own numbered saves off: TrainProgress checkpoints
        max_seq_length=config["max_seq_length"],
        adapter_file=str(run_dir / "adapters.safetensors"),
        grad_checkpoint=bool(config["grad_checkpoint"]),
        grad_accumulation_steps=config["grad_accumulation_steps"],
        clear_cache_threshold=int(config["clear_cache_threshold"]),
    )
    progress = TrainProgress(
        run_dir, model=model, optimizer=optimizer, start=start, total_iters=config["iters"],
        save_every=config["save_every"], keep_checkpoints=config["keep_checkpoints"], seed=config["seed"], is_writer=is_writer, echo=echo,
    )
    batches = partial(_batches, seed=config["seed"], skip=start.iteration)
    validation = CacheDataset(valid_set) if len(valid_set) >= config["batch_size"] else None
    if validation is None and len(valid_set):
        say(f"validation skipped: {len(valid_set)} valid samples is fewer than batch_size {config['batch_size']}")
    try:
        mlx_train(
            model=model, optimizer=optimizer, train_dataset=CacheDataset(train_set), val_dataset=validation,
            args=args, loss=masked_loss, iterate_batches=batches, training_callback=progress,
        )
    except ValueError as error:
        raise TrainError(f"training failed: {error}") from error
    train_rows = [row for row in progress.rows if row.train_loss is not None]
    val_rows = [row for row in progress.rows if row.val_loss is not None]
    return TrainResult(
        run_dir=run_dir,
        iterations=config["iters"],
        resumed_from=start.iteration,
        trainable_parameters=trainable,
        final_train_loss=train_rows[-1].train_loss if train_rows else None,
        final_val_loss=val_rows[-1].val_loss if val_rows else None,
        seconds=time.perf_counter() - began,
        last_checkpoint=progress.last_checkpoint,
        window_iterations_per_second=tuple(progress.iterations_per_second),
    )


def _steady_rate(rates: list[float]) -> float | None:
    """Mean iterations/s of the report windows after the first (which includes compilation).

    >>> _steady_rate([1.0, 8.0, 10.0])
    9.0
    """
    steady = rates[1:] or rates
    return sum(steady) / len(steady) if steady else None


def _check_ranks_agree(world: Any, iteration: int) -> None:
    """Every rank must start from the same checkpoint, or the gradient averaging would mix runs."""
    import mlx.core as mx

    if world.size() == 1:
        return
    total = mx.distributed.all_sum(mx.array(iteration), stream=mx.cpu).item()
    if total != iteration * world.size():
        raise TrainError(
            f"rank {world.rank()} would resume from iteration {iteration} but the ranks disagree: "
            "on several machines the run directory must be shared (or copied to every host) before --resume"
        )


def _batches(dataset, batch_size, max_seq_length, loop=False, seed=None, comm_group=None, *, skip=0):
    """mlx-lm's iterate_batches signature: training batches (loop=True) are seeded and skip what a
    resumed run already did; validation batches always use the same fixed order."""
    from pipeline.train_loss import iterate_batches

    if loop:
        return iterate_batches(dataset, batch_size, max_seq_length, loop=True, seed=seed, comm_group=comm_group, skip=skip)
    return iterate_batches(dataset, batch_size, max_seq_length, loop=False, comm_group=comm_group)


def _prepare_run_dir(run_dir: Path, *, resume: bool, overwrite: bool, is_writer: bool):
    """Find the checkpoint to resume from, or make sure a fresh run does not mix with an old one."""
    from pipeline.train_checkpoint import CHECKPOINTS_DIR, latest_checkpoint
    from pipeline.train_progress import TRAIN_LOG_FILE

    if resume:
        return latest_checkpoint(run_dir)
    if not is_writer:
        return None  # rank 0 checks and clears the directory; the others never write to it
    old = [run_dir / name for name in (CHECKPOINTS_DIR, TRAIN_LOG_FILE, "adapters.safetensors") if (run_dir / name).exists()]
    if old and not overwrite:
        raise TrainError(
            f"{run_dir} already holds a training run ({', '.join(path.name for path in old)}): "
            "pass --resume to continue it, --overwrite to start again, or another --name",
            user_message="已經有同名嘅訓練，用 --resume 繼續或者 --overwrite 重新嚟過。",
        )
    for path in old:
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    run_dir.mkdir(parents=True, exist_ok=True)
    return None


def _load_chat_data(config: Mapping[str, Any], tokenizer: Any) -> tuple[Any, Any]:
    """train and valid sets from a dataset directory, through mlx-lm's own loader."""
    from mlx_lm.tuner.datasets import load_dataset

    if not config["data"]:
        raise TrainConfigError("no dataset: pass --data DIR (a directory with train.jsonl and valid.jsonl)")
    data_dir = Path(config["data"])
    if not (data_dir / "train.jsonl").is_file():
        # Checked here: mlx-lm would take a missing path for a Hugging Face dataset name and download.
        raise TrainConfigError(f"{data_dir} has no train.jsonl (expected lilm dataset output: train/valid/test.jsonl)")
    if getattr(tokenizer, "chat_template", None) is None:
        raise TrainConfigError(f"{config['model']} has no chat template: chat datasets need one")
    options = types.SimpleNamespace(data=str(data_dir), train=True, test=False, mask_prompt=bool(config["mask_prompt"]))
    try:
        train_set, valid_set, _ = load_dataset(options, tokenizer)
    except (ValueError, KeyError) as error:
        raise TrainConfigError(f"cannot read the dataset in {data_dir}: {error}") from error
    if len(train_set) < config["batch_size"]:
        raise TrainConfigError(f"{data_dir}/train.jsonl has {len(train_set)} samples, fewer than batch_size {config['batch_size']}")
    return train_set, valid_set


def _make_trainable(model: Any, config: Mapping[str, Any]) -> int:
    """Freeze the model, then add adapters (lora/dora) or unfreeze layers (full); returns the trainable count."""
    from mlx.utils import tree_flatten
    from mlx_lm.tuner.utils import linear_to_lora_layers

    layer_count = len(model.layers)
    num_layers = layer_count if config["num_layers"] == -1 else config["num_layers"]
    if num_layers > layer_count:
        raise TrainConfigError(f"num_layers {num_layers} asked for, but the model has {layer_count} layers")
    model.freeze()
    if config["fine_tune_type"] == "full":
        for layer in model.layers[-num_layers:]:
            layer.unfreeze()
    else:
        linear_to_lora_layers(model, num_layers, dict(config["lora_parameters"]), use_dora=config["fine_tune_type"] == "dora")
    return sum(array.size for _, array in tree_flatten(model.trainable_parameters()))


def _build_optimizer(config: Mapping[str, Any]) -> Any:
    import mlx.optimizers as optim
    from mlx_lm.tuner.utils import build_schedule

    name = str(config["optimizer"]).lower()
    classes = {"adam": optim.Adam, "adamw": optim.AdamW, "muon": optim.Muon, "sgd": optim.SGD, "adafactor": optim.Adafactor}
    schedule = config.get("lr_schedule")
    learning_rate = build_schedule(schedule) if schedule else float(config["learning_rate"])
    return classes[name](learning_rate=learning_rate, **config["optimizer_config"].get(name, {}))

"""The `lilm train` configuration: one CONFIG_DEFAULTS, resolved CLI > YAML > defaults.

Keys are mlx-lm's own (`mlx_lm.lora.CONFIG_DEFAULTS`) so the saved `adapter_config.json` is
read unchanged by `mlx_lm.load(model, adapter_path=...)` and `mlx_lm.fuse`; a few LiLM keys
(`name`, `adapters_dir`, `keep_checkpoints`) ride along and mlx-lm ignores them.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from core.errors import LilmError

# Differences from mlx-lm's defaults, on purpose: num_layers -1 (all: our models are small and
# mlx-lm's 16 fails on a 4-layer model), a higher LoRA learning rate, and reports every 10 steps.
CONFIG_DEFAULTS: dict[str, Any] = {
    "model": None,  # None: the LILM_MODEL setting
    "data": None,  # a directory with train.jsonl / valid.jsonl (test.jsonl optional)
    "name": "lilm",
    "adapters_dir": "adapters",
    "fine_tune_type": "lora",
    "optimizer": "adam",
    "optimizer_config": {"adam": {}, "adamw": {}, "muon": {}, "sgd": {}, "adafactor": {}},
    "seed": 0,
    "num_layers": -1,
    "batch_size": 4,
    "iters": 1000,
    "val_batches": 25,
    "learning_rate": 1e-4,
    "lr_schedule": None,
    "steps_per_report": 10,
    "steps_per_eval": 200,
    "save_every": 100,
    "keep_checkpoints": 2,
    "max_seq_length": 2048,
    "grad_checkpoint": False,
    "grad_accumulation_steps": 1,
    "clear_cache_threshold": 0,
    "lora_parameters": {"rank": 8, "dropout": 0.0, "scale": 20.0},
    "mask_prompt": False,
}

FINE_TUNE_TYPES = ("lora", "dora", "full")
OPTIMIZERS = ("adam", "adamw", "muon", "sgd", "adafactor")
# Dict-valued keys whose YAML block is merged into the defaults (mlx-lm replaces them whole,
# so a YAML `lora_parameters: {rank: 16}` there silently loses `scale` and fails).
MERGED_KEYS = ("lora_parameters", "optimizer_config")
POSITIVE_INT_KEYS = ("batch_size", "iters", "steps_per_report", "steps_per_eval", "save_every",
                     "max_seq_length", "grad_accumulation_steps", "keep_checkpoints")


class TrainError(LilmError):
    """Training, fusing or quantizing could not start or finish."""

    user_message = "訓練模型出咗問題，睇下設定同資料啱唔啱。"


class TrainConfigError(TrainError):
    """The training configuration has an unknown key or an invalid value."""

    user_message = "訓練設定有問題，請檢查設定檔同參數。"


def load_yaml_config(path: str | Path) -> dict[str, Any]:
    """Read a YAML config file into a dict, with mlx-lm's YAML loader (it reads `1e-5` as a float)."""
    import yaml
    from mlx_lm.lora import yaml_loader

    path = Path(path)
    if not path.is_file():
        raise TrainConfigError(f"config file not found: {path}")
    with path.open(encoding="utf-8") as handle:
        loaded = yaml.load(handle, yaml_loader) or {}
    if not isinstance(loaded, dict):
        raise TrainConfigError(f"{path}: expected a mapping of options, found {type(loaded).__name__}")
    return loaded


def resolve_config(*layers: Mapping[str, Any] | None) -> dict[str, Any]:
    """Merge layers over CONFIG_DEFAULTS, later layers winning; `None` values never override.

    Pass them lowest first: `resolve_config(yaml_dict, cli_dict)`.

    >>> resolve_config({"iters": 5, "lora_parameters": {"rank": 4}}, {"iters": 7, "seed": None})["iters"]
    7
    >>> resolve_config({"lora_parameters": {"rank": 4}})["lora_parameters"]
    {'rank': 4, 'dropout': 0.0, 'scale': 20.0}
    """
    config = copy.deepcopy(CONFIG_DEFAULTS)
    for layer in layers:
        for key, value in (layer or {}).items():
            if value is None:
                continue
            if key in MERGED_KEYS and isinstance(value, Mapping):
                config[key] = {**config[key], **copy.deepcopy(dict(value))}
            else:
                config[key] = copy.deepcopy(value)
    validate_config(config)
    return config


def validate_config(config: Mapping[str, Any]) -> None:
    """Raise TrainConfigError naming the first key that is unknown or out of range."""
    unknown = sorted(set(config) - set(CONFIG_DEFAULTS) - {"adapter_path"})
    if unknown:
        raise TrainConfigError(f"unknown config keys {unknown}; expected some of {sorted(CONFIG_DEFAULTS)}")
    if config["fine_tune_type"] not in FINE_TUNE_TYPES:
        raise TrainConfigError(f"fine_tune_type must be one of {FINE_TUNE_TYPES}, found {config['fine_tune_type']!r}")
    if str(config["optimizer"]).lower() not in OPTIMIZERS:
        raise TrainConfigError(f"optimizer must be one of {OPTIMIZERS}, found {config['optimizer']!r}")
    for key in POSITIVE_INT_KEYS:
        value = config[key]
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise TrainConfigError(f"{key} must be a positive integer, found {value!r}")
    if not isinstance(config["num_layers"], int) or config["num_layers"] < -1 or config["num_layers"] == 0:
        raise TrainConfigError(f"num_layers must be -1 (all) or a positive integer, found {config['num_layers']!r}")
    if config["save_every"] % config["steps_per_report"]:
        # Checkpoints are taken at report steps, where mlx-lm's trainer hands control back.
        raise TrainConfigError(
            f"save_every ({config['save_every']}) must be a multiple of steps_per_report ({config['steps_per_report']})"
        )
    lora = config["lora_parameters"]
    for key in ("rank", "scale", "dropout"):
        if key not in lora:
            raise TrainConfigError(f"lora_parameters needs {key!r}, found keys {sorted(lora)}")
    if float(config["learning_rate"]) <= 0:
        raise TrainConfigError(f"learning_rate must be positive, found {config['learning_rate']!r}")


def adapter_dir(config: Mapping[str, Any]) -> Path:
    """Where a run's artifacts live: `<adapters_dir>/<name>`."""
    return Path(config["adapters_dir"]) / config["name"]


def adapter_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The resolved config as saved in `adapter_config.json` (mlx-lm keys plus ours).

    `fine_tune_type: full` saves `lora_parameters: null`, as mlx-lm does.
    """
    saved = copy.deepcopy(dict(config))
    saved["adapter_path"] = str(adapter_dir(config))
    saved["train"] = True
    if saved["fine_tune_type"] == "full":
        saved["lora_parameters"] = None
    return saved


def read_saved_config(directory: str | Path) -> dict[str, Any]:
    """The `adapter_config.json` of an earlier run, minus the keys resolve_config recomputes."""
    path = Path(directory) / "adapter_config.json"
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise TrainConfigError(f"nothing to resume: {path} does not exist") from error
    saved = {key: value for key, value in saved.items() if key in CONFIG_DEFAULTS}
    if saved.get("lora_parameters") is None:
        saved.pop("lora_parameters", None)
    return saved

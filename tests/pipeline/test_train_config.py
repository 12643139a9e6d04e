"""Config resolution (CLI > YAML > defaults), validation, and the CLI parser of train/fuse/quantize."""

from __future__ import annotations

import argparse
import json

import pytest

from pipeline.train_cli import cli_overrides, register, resolve_train_config
from pipeline.train_config import (
    CONFIG_DEFAULTS,
    TrainConfigError,
    adapter_config,
    load_yaml_config,
    read_saved_config,
    resolve_config,
)


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(list(argv))


def test_cli_beats_yaml_beats_defaults(tmp_path):
    config_file = tmp_path / "run.yaml"
    config_file.write_text(
        "iters: 50\nlearning_rate: 2e-5\nbatch_size: 8\nlora_parameters:\n  rank: 4\nfine_tune_type: dora\n", encoding="utf-8"
    )
    args = parse("train", "-c", str(config_file), "--iters", "7", "--lora-scale", "4.5", "--grad-checkpoint", "--data", "d")
    config = resolve_train_config(args)
    assert config["iters"] == 7  # CLI over YAML
    assert config["learning_rate"] == 2e-5 and isinstance(config["learning_rate"], float)  # YAML over default
    assert config["batch_size"] == 8 and config["fine_tune_type"] == "dora"
    assert config["save_every"] == CONFIG_DEFAULTS["save_every"]  # default where nobody spoke
    # A partial lora_parameters block (YAML or CLI) is merged, not a replacement as in mlx-lm.
    assert config["lora_parameters"] == {"rank": 4, "scale": 4.5, "dropout": 0.0}
    assert config["grad_checkpoint"] is True and config["mask_prompt"] is False


def test_model_defaults_to_the_setting():
    class FakeSettings:
        model = "/models/qwen"

    assert resolve_train_config(parse("train"), FakeSettings())["model"] == "/models/qwen"
    assert resolve_train_config(parse("train", "--model", "m2"), FakeSettings())["model"] == "m2"


def test_unset_flags_do_not_override():
    overrides = cli_overrides(parse("train"))
    assert all(value is None for value in overrides.values())
    assert resolve_config({"iters": 3}, overrides)["iters"] == 3


@pytest.mark.parametrize(
    ("layer", "message"),
    [
        ({"iterz": 3}, "unknown config keys"),
        ({"fine_tune_type": "qlora"}, "fine_tune_type"),
        ({"optimizer": "lion"}, "optimizer"),
        ({"batch_size": 0}, "batch_size"),
        ({"num_layers": 0}, "num_layers"),
        ({"save_every": 15, "steps_per_report": 10}, "multiple of steps_per_report"),
        ({"learning_rate": -1.0}, "learning_rate"),
    ],
)
def test_invalid_values_are_refused_with_the_key_named(layer, message):
    with pytest.raises(TrainConfigError, match=message):
        resolve_config(layer)


def test_yaml_errors(tmp_path):
    with pytest.raises(TrainConfigError, match="not found"):
        load_yaml_config(tmp_path / "missing.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n", encoding="utf-8")
    with pytest.raises(TrainConfigError, match="mapping"):
        load_yaml_config(tmp_path / "list.yaml")


def test_saved_config_has_mlx_lm_keys_and_round_trips(tmp_path):
    config = resolve_config({"name": "run1", "adapters_dir": str(tmp_path), "model": "m", "data": "d", "num_layers": 2})
    saved = adapter_config(config)
    # What mlx_lm.load / mlx_lm.fuse read from adapter_config.json:
    assert saved["fine_tune_type"] == "lora" and saved["num_layers"] == 2 and saved["lora_parameters"]["scale"] == 20.0
    assert saved["adapter_path"] == str(tmp_path / "run1")
    (tmp_path / "run1").mkdir()
    (tmp_path / "run1" / "adapter_config.json").write_text(json.dumps(saved), encoding="utf-8")
    assert resolve_config(read_saved_config(tmp_path / "run1")) == config
    full = adapter_config(resolve_config({"fine_tune_type": "full"}))
    assert full["lora_parameters"] is None  # as mlx-lm saves it
    assert resolve_config(read_saved_config_from(tmp_path, full))["fine_tune_type"] == "full"


def read_saved_config_from(tmp_path, saved: dict) -> dict:
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "adapter_config.json").write_text(json.dumps(saved), encoding="utf-8")
    return read_saved_config(tmp_path / "full")


def test_resume_layers_the_saved_config_under_yaml_and_cli(tmp_path):
    run_dir = tmp_path / "adapters" / "r"
    run_dir.mkdir(parents=True)
    saved = adapter_config(resolve_config({"name": "r", "adapters_dir": str(tmp_path / "adapters"), "iters": 20,
                                           "batch_size": 2, "data": "old", "model": "base"}))
    (run_dir / "adapter_config.json").write_text(json.dumps(saved), encoding="utf-8")
    args = parse("train", "--resume", "--name", "r", "--adapters-dir", str(tmp_path / "adapters"), "--iters", "40")
    config = resolve_train_config(args)
    assert (config["iters"], config["batch_size"], config["data"], config["model"]) == (40, 2, "old", "base")
    with pytest.raises(TrainConfigError, match="nothing to resume"):
        resolve_train_config(parse("train", "--resume", "--name", "other", "--adapters-dir", str(tmp_path / "adapters")))


def test_fuse_and_quantize_options():
    fuse = parse("fuse", "--name", "r1")
    assert (fuse.name, fuse.adapters_dir, fuse.out, fuse.model) == ("r1", "adapters", None, None)
    quantize = parse("quantize", "model/x", "--bits", "8", "--group-size", "32")
    assert (quantize.model, quantize.bits, quantize.group_size) == ("model/x", 8, 32)
    with pytest.raises(SystemExit):
        parse("quantize", "model/x", "--group-size", "48")
    assert callable(fuse.run) and callable(quantize.run) and callable(parse("train").run)

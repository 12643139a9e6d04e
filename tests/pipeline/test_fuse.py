"""`lilm fuse`: adapters merged into the base give the same replies as base + adapters."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.fuse import BUILD_INFO_FILE, fuse_adapters
from pipeline.train import train_adapters
from pipeline.train_cli import main
from pipeline.train_config import TrainError, resolve_config
from tests.fakes.tiny_mlx_model import tiny_model_path  # noqa: F401 (fixture)
from tests.pipeline.test_train_data import write_chat_dataset

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]
PROMPT = [{"role": "user", "content": "貼文類別：吹水台\n貼文標題：今日好熱\n貼文內容：\n熱到溶"}]


def trained_run(tmp_path, model: str, **overrides):
    data = write_chat_dataset(tmp_path / "data", train=8, valid=4)
    config = resolve_config({"model": model, "data": str(data), "adapters_dir": str(tmp_path / "adapters"), "name": "fuseme",
                             "iters": 4, "batch_size": 4, "steps_per_report": 2, "save_every": 2, "learning_rate": 2e-3},
                            overrides)
    return train_adapters(config, echo=lambda line: None)


def greedy_reply(model, tokenizer) -> str:
    from mlx_lm import generate

    prompt = tokenizer.apply_chat_template(PROMPT, add_generation_prompt=True)
    return generate(model, tokenizer, prompt, max_tokens=16)


def test_fused_model_replies_like_base_plus_adapter_and_core_loads_it(tmp_path, tiny_model_path):  # noqa: F811
    import mlx.core as mx
    from mlx_lm.utils import load

    from core.backends.mlx_backend import load_model

    run = trained_run(tmp_path, tiny_model_path)
    out = tmp_path / "model" / "fuseme"
    result = fuse_adapters(adapter_path=run.run_dir, out_dir=out)
    assert result.base_model == tiny_model_path and result.fused_layers > 0 and result.fine_tune_type == "lora"
    for name in ("tokenizer.json", "tokenizer_config.json"):
        assert (out / name).read_bytes() == Path(tiny_model_path, name).read_bytes()
    info = json.loads((out / BUILD_INFO_FILE).read_text())
    assert info["step"] == "fuse" and info["adapter_config"]["fine_tune_type"] == "lora"
    assert "lora" not in (out / "config.json").read_text()

    fused_model, fused_tokenizer = load_model(str(out), None)  # core's MLX backend loader
    base_model, base_tokenizer = load(tiny_model_path, adapter_path=str(run.run_dir))
    tokens = mx.array([fused_tokenizer.encode("貼文標題：今日好熱")])
    assert mx.allclose(fused_model(tokens), base_model(tokens), atol=1e-4).item()
    assert greedy_reply(fused_model, fused_tokenizer) == greedy_reply(base_model, base_tokenizer)
    assert not any("lora" in name for name, _ in fused_model.named_modules())


def test_fuse_cli_defaults_to_model_slash_name(tmp_path, tiny_model_path, monkeypatch, capsys):  # noqa: F811
    run = trained_run(tmp_path, tiny_model_path, fine_tune_type="dora", num_layers=1)
    monkeypatch.chdir(tmp_path)
    assert main(["fuse", "--name", "fuseme"]) == 0
    assert "fused" in capsys.readouterr().out
    assert (tmp_path / "model" / "fuseme" / "config.json").is_file()
    assert json.loads((tmp_path / "model" / "fuseme" / BUILD_INFO_FILE).read_text())["fine_tune_type"] == "dora"
    assert run.run_dir == tmp_path / "adapters" / "fuseme"


def test_fuse_refuses_a_directory_that_is_not_a_run(tmp_path):
    with pytest.raises(TrainError, match="not a trained adapter directory"):
        fuse_adapters(adapter_path=tmp_path, out_dir=tmp_path / "out")

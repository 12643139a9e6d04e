"""`lilm quantize`: 4/8-bit copies that load and stay close to the original; clear group-size errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.quantize import QuantizeError, quantize_model_dir
from pipeline.train_cli import main
from tests.fakes.tiny_mlx_model import random_model_path, tiny_model_path  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def next_token_logits(model_dir: str):
    import mlx.core as mx

    from core.backends.mlx_backend import load_model

    model, tokenizer = load_model(model_dir, None)
    return model(mx.array([tokenizer.encode("貼文類別：吹水台\n貼文標題：今日好熱")]))[0]


@pytest.mark.parametrize(("bits", "agreement"), [(8, 0.95), (4, 0.6)])
def test_quantized_copy_loads_is_smaller_and_stays_close(tmp_path, tiny_model_path, bits, agreement):  # noqa: F811
    import mlx.core as mx

    out = tmp_path / f"q{bits}"
    result = quantize_model_dir(tiny_model_path, out_dir=out, bits=bits, group_size=64)
    config = json.loads((out / "config.json").read_text())
    assert config["quantization"] == {"group_size": 64, "bits": bits, "mode": "affine"}
    assert result.disk_bytes < result.source_disk_bytes * (bits + 2) / 32  # fp32 source; scales and biases on top
    assert bits < result.bits_per_weight < bits + 1.1
    assert (out / "tokenizer.json").read_bytes() == Path(tiny_model_path, "tokenizer.json").read_bytes()

    original, quantized = next_token_logits(tiny_model_path), next_token_logits(str(out))
    same_top1 = (mx.argmax(original, axis=-1) == mx.argmax(quantized, axis=-1)).astype(mx.float32).mean().item()
    assert same_top1 >= agreement


def test_group_size_that_does_not_divide_the_hidden_size_is_refused(tmp_path, random_model_path):  # noqa: F811
    # The random test model has hidden size 64: mlx-lm would quietly skip every layer at group 128.
    with pytest.raises(QuantizeError, match=r"group size 128 .*width 64.*fit this model: \[32, 64\]"):
        quantize_model_dir(random_model_path, out_dir=tmp_path / "q", group_size=128)
    assert not (tmp_path / "q").exists()


def test_quantize_cli_and_refusals(tmp_path, tiny_model_path, capsys):  # noqa: F811
    out = tmp_path / "q8"
    assert main(["quantize", tiny_model_path, "--bits", "8", "--out", str(out)]) == 0
    assert "8-bit, group 64" in capsys.readouterr().out
    assert main(["quantize", str(out), "--out", str(tmp_path / "again")]) == 1  # already quantized
    assert "already quantized" in capsys.readouterr().err
    assert main(["quantize", str(tmp_path / "nothing")]) == 1

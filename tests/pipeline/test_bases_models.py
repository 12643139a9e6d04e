"""Candidate loading and the random-initialised baseline, plus the model pair other base tests use.

`trained_and_random` builds (once per session, on disk) a tiny random Qwen2 and a copy of it
trained a few dozen steps on HKCanCor text: the trained one must read Cantonese better.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from pipeline.bases_models import (
    CandidateSpec,
    disk_bytes,
    load_candidate,
    random_init_like,
)
from tests.fakes.tiny_mlx_model import random_qwen2

PAIR_DIR_NAME = "bases-model-pair"
TRAIN_CONVERSATIONS = slice(0, 20)  # the fake's tokenizer is trained on these too
HELD_OUT_CONVERSATION = 40


def trained_and_random(tmp_path_factory) -> tuple[Path, Path]:
    """(trained, random) model directories of the same shape and tokenizer."""
    base = tmp_path_factory.getbasetemp() / PAIR_DIR_NAME
    random_dir, trained_dir = base / "random", base / "trained"
    if not (trained_dir / "config.json").is_file():
        random_qwen2(random_dir, seed=0)
        _train_copy(random_dir, trained_dir, steps=40)
    return trained_dir, random_dir


def _train_copy(source: Path, out: Path, *, steps: int) -> None:
    import numpy as np
    from mlx_lm import load
    from mlx_lm.utils import save_model

    from pipeline.hkcancor import load_hkcancor
    from pipeline.tiny_model import TinyConfig, batch_order, text_rows, train

    staging = out.with_name(out.name + ".building")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(source, staging)
    model, tokenizer = load(str(staging))
    rows = text_rows(load_hkcancor()[TRAIN_CONVERSATIONS], tokenizer, chunk_len=64)
    cfg = TinyConfig(steps=steps, batch_size=8, learning_rate=3e-3, warmup_steps=5, eval_every=0, lm_fraction=1.0)
    train(model, batch_order([], rows, cfg, np.random.default_rng(0)), cfg, pad_id=0)
    save_model(staging, model)
    staging.rename(out)


def held_out_text() -> str:
    from pipeline.hkcancor import load_hkcancor

    return load_hkcancor()[HELD_OUT_CONVERSATION].text


def test_parse_plain_and_adapter_forms():
    assert CandidateSpec.parse("model/lilm-tiny") == CandidateSpec("model/lilm-tiny", None, "lilm-tiny")
    spec = CandidateSpec.parse("/m/Qwen2.5-7B-4bit@adapters/lihkg/")
    assert (spec.model_path, spec.adapter_path, spec.label) == ("/m/Qwen2.5-7B-4bit", "adapters/lihkg/", "Qwen2.5-7B-4bit+lihkg")


def test_load_refuses_a_directory_without_config(tmp_path):
    from core.errors import ModelError

    with pytest.raises(ModelError, match="config.json"):
        load_candidate(CandidateSpec.parse(str(tmp_path)))


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_random_copy_has_same_shape_and_tokenizer_but_new_weights(tmp_path_factory, tmp_path):
    import mlx.core as mx
    from mlx.utils import tree_flatten

    trained_dir, _ = trained_and_random(tmp_path_factory)
    copy_dir = random_init_like(trained_dir, tmp_path / "copy", seed=1)

    original, copy = load_candidate(CandidateSpec.parse(str(trained_dir))), load_candidate(CandidateSpec.parse(str(copy_dir)))
    assert json.loads((copy_dir / "config.json").read_text()) == json.loads((trained_dir / "config.json").read_text())
    assert (copy_dir / "tokenizer.json").read_bytes() == (trained_dir / "tokenizer.json").read_bytes()
    assert copy.facts.parameters == original.facts.parameters > 10_000
    assert copy.facts.context_limit == original.facts.context_limit == 192
    assert copy.facts.has_chat_template and copy.facts.quantization == "none"
    assert copy.facts.disk_bytes == disk_bytes(str(copy_dir)) > 0
    a = dict(tree_flatten(original.model.parameters()))["model.embed_tokens.weight"]
    b = dict(tree_flatten(copy.model.parameters()))["model.embed_tokens.weight"]
    assert a.shape == b.shape and not mx.allclose(a, b).item()


def quantized_copy(source: Path, out: Path, *, bits: int = 4) -> Path:
    """`source` quantized the way `mlx_lm.convert -q` does (config records it; load re-applies it)."""
    from mlx_lm import load
    from mlx_lm.utils import load_config, quantize_model, save_config, save_model

    shutil.copytree(source, out)
    model, _ = load(str(source))
    model, config = quantize_model(model, load_config(source), group_size=32, bits=bits)
    (out / "model.safetensors").unlink()
    save_model(out, model)
    save_config(config, out / "config.json")
    return out


def test_an_at_sign_inside_an_existing_path_is_not_an_adapter(tmp_path):
    odd = tmp_path / "models@home"
    odd.mkdir()
    assert CandidateSpec.parse(str(odd)) == CandidateSpec(str(odd), None, "models@home")
    assert CandidateSpec.parse(f"{odd}@run1").adapter_path == "run1"


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_quantized_models_load_with_their_full_parameter_count_and_refuse_a_random_copy(tmp_path_factory, tmp_path):
    trained_dir, _ = trained_and_random(tmp_path_factory)
    quantized_dir = quantized_copy(trained_dir, tmp_path / "q4")
    full, quantized = (load_candidate(CandidateSpec.parse(str(d))) for d in (trained_dir, quantized_dir))
    assert quantized.facts.quantization == "4-bit" and full.facts.quantization == "none"
    assert quantized.facts.parameters == full.facts.parameters
    assert quantized.facts.disk_bytes < 0.4 * full.facts.disk_bytes
    with pytest.raises(ValueError, match="quantized"):
        random_init_like(quantized_dir, tmp_path / "copy")

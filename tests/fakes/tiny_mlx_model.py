"""Small real MLX models for engine tests, built offline in seconds.

`random_qwen2` writes a randomly initialised Qwen2 with the project's own ChatML tokenizer:
it speaks gibberish but exercises every code path of loading, batching and decoding.
`tiny_model_path` prefers the embedded model/lilm-tiny when it has been built.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from core.settings import DEFAULT_MODEL_DIR

RANDOM_MODEL_DIR_NAME = "random-qwen2"


def random_qwen2(out_dir: Path, *, hidden_size: int = 64, num_layers: int = 2, vocab_size: int = 800, seed: int = 0) -> Path:
    """Tokenizer trained on a slice of HKCanCor + random Qwen2 weights, loadable by `mlx_lm.load`."""
    import mlx.core as mx
    from mlx_lm.models.qwen2 import Model, ModelArgs
    from mlx_lm.utils import save_config, save_model

    from pipeline.hkcancor import load_hkcancor
    from pipeline.tiny_model import TinyConfig, model_config
    from pipeline.tokenizer_build import build_tokenizer

    out_dir = Path(out_dir)
    texts = [conversation.text for conversation in load_hkcancor()[:20]]
    _, built = build_tokenizer(texts, out_dir, vocab_size=vocab_size)
    shape = TinyConfig(hidden_size=hidden_size, num_layers=num_layers, intermediate_size=2 * hidden_size, disk_dtype="float32")
    config = model_config(shape, vocab_size=built.vocab_size, im_end_id=built.im_end_id, endoftext_id=built.endoftext_id)
    mx.random.seed(seed)
    model = Model(ModelArgs.from_dict(config))
    mx.eval(model.parameters())
    save_model(out_dir, model)
    save_config(dict(config), out_dir / "config.json")  # last: marks the directory complete
    return out_dir


def _random_model(tmp_path_factory) -> str:
    out = tmp_path_factory.getbasetemp() / RANDOM_MODEL_DIR_NAME
    if not (out / "config.json").is_file():
        random_qwen2(out)
    return str(out)


@pytest.fixture(scope="session")
def random_model_path(tmp_path_factory) -> str:
    """A random Qwen2 built once per session (reused from disk if another module built it)."""
    return _random_model(tmp_path_factory)


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory) -> str:
    """model/lilm-tiny once it exists, else the random model."""
    if (DEFAULT_MODEL_DIR / "config.json").is_file():
        return str(DEFAULT_MODEL_DIR)
    return _random_model(tmp_path_factory)

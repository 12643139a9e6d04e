"""In-process MLX backend: a fused model (or base + LoRA adapter) served by the batching engine.

mlx is not safe to drive from several threads at once, and generation would block the
event loop, so the model lives on the engine's one worker thread (core/engine.py), which
batches every caller's requests together; text crosses back to asyncio as events.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

from core.engine import EngineConfig, GenerationEngine
from core.errors import ModelError

log = logging.getLogger(__name__)

# End-of-turn tokens of ChatML models (Qwen): stop on them even if the config forgot them.
CHATML_STOP_TOKENS = ("<|im_end|>", "<|endoftext|>")


class MlxBackend(GenerationEngine):
    """Load with `await MlxBackend.load(path)`; then `stream(messages, params)` or `stream_many`."""

    @classmethod
    async def load(
        cls, model_path: str, *, adapter_path: str | None = None, config: EngineConfig | None = None
    ) -> MlxBackend:
        """Load on the worker thread. Raises ModelError with what was expected and found."""
        loader = functools.partial(load_model, model_path, adapter_path)
        return await cls.start(loader, name=Path(model_path).name or model_path, config=config)


def check_model_paths(model_path: str, adapter_path: str | None = None, *, local_only: bool = False) -> str:
    """What to hand `mlx_lm.load` for `model_path`: a local MLX model directory, or (unless
    `local_only`) a Hugging Face repo id. ModelError says what was expected and what was found.

    >>> check_model_paths("/no/such/model")
    Traceback (most recent call last):
    core.errors.ModelError: /no/such/model does not exist: expected an MLX model directory or a Hugging Face repo id
    """
    path = Path(model_path).expanduser()
    if path.exists() and not (path / "config.json").is_file():
        raise ModelError(f"{path} has no config.json: expected an MLX model directory (fused or converted)")
    looks_like_path = model_path.startswith(("/", "./", "../", "~")) or path.is_absolute()
    if not path.exists() and (local_only or looks_like_path):
        wanted = "a local MLX model directory (with config.json)" if local_only else "an MLX model directory or a Hugging Face repo id"
        raise ModelError(f"{model_path} does not exist: expected {wanted}")
    if adapter_path and not (Path(adapter_path) / "adapter_config.json").is_file():
        raise ModelError(f"{adapter_path} has no adapter_config.json: expected an mlx-lm LoRA adapter directory")
    return str(path) if path.exists() else model_path


def load_model(model_path: str, adapter_path: str | None = None, *, local_only: bool = False):
    """(model, tokenizer) from an MLX model dir (+ LoRA adapter), with ChatML stop tokens; ModelError otherwise."""
    from mlx_lm import load

    source = check_model_paths(model_path, adapter_path, local_only=local_only)
    try:
        model, tokenizer = load(source, adapter_path=adapter_path or None)
    except ModelError:
        raise
    except Exception as error:
        raise ModelError(f"could not load model {model_path!r}: {type(error).__name__}: {error}") from error
    for token in CHATML_STOP_TOKENS:
        if token in tokenizer.get_vocab():
            tokenizer.add_eos_token(token)
    log.info("loaded model %s (adapter %s)", model_path, adapter_path or "none")
    return model, tokenizer

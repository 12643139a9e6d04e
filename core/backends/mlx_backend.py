"""In-process MLX backend: a fused model (or base + LoRA adapter) on one worker thread.

mlx is not safe to drive from several threads at once, and generation would block the
event loop, so every mlx call runs on one dedicated thread; tokens cross back to asyncio
through a queue.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from core.errors import ModelError
from core.generation import Messages, SamplingParams

log = logging.getLogger(__name__)

# End-of-turn tokens of ChatML models (Qwen): stop on them even if the config forgot them.
CHATML_STOP_TOKENS = ("<|im_end|>", "<|endoftext|>")
_DONE = object()


class MlxBackend:
    """Load with `await MlxBackend.load(path)`; then `stream(messages, params)`."""

    def __init__(self, model, tokenizer, *, name: str, executor: ThreadPoolExecutor) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.name = name
        self._executor = executor

    @classmethod
    async def load(cls, model_path: str, *, adapter_path: str | None = None) -> MlxBackend:
        """Load on the worker thread. Raises ModelError with what was expected and found."""
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lilm-mlx")
        loop = asyncio.get_running_loop()
        try:
            model, tokenizer = await loop.run_in_executor(executor, _load_model, model_path, adapter_path)
        except BaseException:
            executor.shutdown(wait=False)
            raise
        return cls(model, tokenizer, name=Path(model_path).name or model_path, executor=executor)

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False))

    def special_tokens(self) -> tuple[str, ...]:
        return tuple(getattr(self.tokenizer, "all_special_tokens", ()) or ())

    def prompt_tokens(self, messages: Messages) -> list[int]:
        """The chat template applied, ending with the assistant turn's opening."""
        return list(self.tokenizer.apply_chat_template(list(messages), add_generation_prompt=True))

    async def stream(self, messages: Messages, params: SamplingParams) -> AsyncIterator[str]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        cancelled = threading.Event()
        prompt = self.prompt_tokens(messages)

        def emit(item) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, item)

        job = loop.run_in_executor(self._executor, self._generate, prompt, params, cancelled, emit)
        try:
            while (item := await queue.get()) is not _DONE:
                if isinstance(item, BaseException):
                    raise ModelError(f"generation failed: {item}") from item
                yield item
        finally:
            cancelled.set()
            await asyncio.shield(job)

    def _generate(self, prompt: list[int], params: SamplingParams, cancelled: threading.Event, emit) -> None:
        """Runs on the worker thread: stream tokens until done, cancelled or failed."""
        import mlx.core as mx
        from mlx_lm import stream_generate
        from mlx_lm.sample_utils import make_logits_processors, make_sampler

        try:
            if params.seed is not None:
                mx.random.seed(params.seed)
            sampler = make_sampler(temp=params.temperature, top_p=params.top_p)
            processors = make_logits_processors(repetition_penalty=params.repetition_penalty)
            for response in stream_generate(
                self.model,
                self.tokenizer,
                prompt,
                max_tokens=params.max_tokens,
                sampler=sampler,
                logits_processors=processors,
            ):
                if cancelled.is_set():
                    break
                if response.text:
                    emit(response.text)
        except Exception as error:  # handed to the awaiting coroutine, never lost
            emit(error)
        finally:
            emit(_DONE)

    async def aclose(self) -> None:
        self._executor.shutdown(wait=True)


def _load_model(model_path: str, adapter_path: str | None):
    from mlx_lm import load

    path = Path(model_path).expanduser()
    if path.exists() and not (path / "config.json").is_file():
        raise ModelError(f"{path} has no config.json: expected an MLX model directory (fused or converted)")
    if adapter_path and not (Path(adapter_path) / "adapter_config.json").is_file():
        raise ModelError(f"{adapter_path} has no adapter_config.json: expected an mlx-lm LoRA adapter directory")
    try:
        model, tokenizer = load(str(path) if path.exists() else model_path, adapter_path=adapter_path or None)
    except ModelError:
        raise
    except Exception as error:
        raise ModelError(f"could not load model {model_path!r}: {type(error).__name__}: {error}") from error
    for token in CHATML_STOP_TOKENS:
        if token in tokenizer.get_vocab():
            tokenizer.add_eos_token(token)
    log.info("loaded model %s (adapter %s)", model_path, adapter_path or "none")
    return model, tokenizer

"""The shipped default model: small enough to ship, and it answers the demo threads in Cantonese."""

import asyncio
import json
from dataclasses import replace

import pytest

from core.backends.mlx_backend import MlxBackend
from core.demo import demo_threads
from core.generation import SamplingParams
from core.masking import Masker
from core.reply import ReplyService
from core.settings import DEFAULT_MODEL_DIR

MAX_SHIPPED_BYTES = 25 * 1024 * 1024
SEEDS_PER_THREAD = 3


def test_shipped_model_fits_the_size_limit():
    files = [p for p in DEFAULT_MODEL_DIR.iterdir() if p.is_file()]
    assert {"config.json", "tokenizer.json", "tokenizer_config.json"} <= {p.name for p in files}
    assert sum(p.stat().st_size for p in files) <= MAX_SHIPPED_BYTES


def test_shipped_model_records_how_it_was_built():
    build = json.loads((DEFAULT_MODEL_DIR / "lilm_build.json").read_text())
    assert build["final_held_out_loss"] < build["random_init_held_out_loss"]


@pytest.mark.slow
def test_demo_replies_are_judged_cantonese_at_least_80_percent():
    from cantonesedetect import CantoneseDetector

    async def replies() -> list[str]:
        backend = await MlxBackend.load(str(DEFAULT_MODEL_DIR))
        service = ReplyService(backend=backend, fetcher=None, masker=Masker.default(), params=SamplingParams())
        try:
            out = []
            for index, prompt in enumerate(demo_threads()):
                result = await service.reply_to_prompt(prompt, n=SEEDS_PER_THREAD, seed=1000 * index)
                out.extend(result.replies)
            return out
        finally:
            await backend.aclose()

    texts = asyncio.run(replies())
    detector = CantoneseDetector()
    judged = [detector.judge(text) for text in texts]
    share = judged.count("cantonese") / len(judged)
    assert len(texts) == SEEDS_PER_THREAD * len(demo_threads())
    assert share >= 0.8, list(zip(texts, judged))


@pytest.mark.slow
def test_replies_stay_inside_the_trained_window():
    """The tiny model was trained on 192 positions: a long thread is cut and the reply shortened
    so prompt + reply never run past them."""

    async def run() -> tuple[int, int, int, int]:
        backend = await MlxBackend.load(str(DEFAULT_MODEL_DIR))
        backend.tokenizer.eos_token_ids = set()  # no early stop: the reply runs to its limit
        service = ReplyService(backend=backend, fetcher=None, masker=Masker.default(), params=SamplingParams(max_tokens=160))
        demo = demo_threads()[0]
        long_thread = replace(demo, content="好長嘅帖文。" * 200)
        try:
            prompt_len = len(backend.prompt_tokens(service.messages_for(long_thread, service.params)))
            await service.reply_to_prompt(long_thread, n=1, seed=3)
            stats = backend.stats()
            return backend.context_window, prompt_len, stats.generated_tokens, stats.prompt_tokens
        finally:
            await backend.aclose()

    window, prompt_len, generated, _ = asyncio.run(run())
    assert window == 192
    assert prompt_len <= window // 2 + 16  # the content was cut to leave room for a reply
    assert generated == window - prompt_len

"""The shipped default model: small enough to ship, and it answers the demo threads in Cantonese."""

import asyncio
import json

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

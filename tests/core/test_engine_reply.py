"""ReplyService on batching backends: N candidates as one `stream_many` call."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest

from core.backends.mlx_backend import MlxBackend
from core.engine import EngineConfig, queue_position_listener
from core.generation import SamplingParams
from core.masking import Masker
from core.reply import ReplyService, ThreadPrompt
from tests.fakes.scripted_backend import ScriptedBackend
from tests.fakes.tiny_mlx_model import random_model_path  # noqa: F401 (fixture)

THREAD = ThreadPrompt(category="吹水台", title="今晚食咩", content="好肚餓")


@dataclass
class BatchingScriptedBackend(ScriptedBackend):
    """ScriptedBackend plus `stream_many`: candidates' pieces interleaved, one call recorded."""

    batches: list[list[SamplingParams]] = field(default_factory=list)

    async def stream_many(self, messages, params_list):
        self.batches.append(list(params_list))
        texts = [self.replies[i % len(self.replies)] for i in range(len(params_list))]
        for start in range(0, max(map(len, texts)), self.chunk):
            for index, text in enumerate(texts):
                if text[start : start + self.chunk]:
                    yield index, text[start : start + self.chunk]


def _service(backend) -> ReplyService:
    return ReplyService(backend=backend, fetcher=None, masker=Masker.default(), params=SamplingParams(max_tokens=40))


async def test_candidates_go_to_the_backend_as_one_batch_with_consecutive_seeds():
    backend = BatchingScriptedBackend(["一二三", "四五六", "七八九"])
    partials = []

    async def on_partial(index, text):
        partials.append((index, text))

    result = await _service(backend).reply_to_prompt(THREAD, n=3, seed=7, on_partial=on_partial)
    assert result.replies == ["一二三", "四五六", "七八九"]
    assert [[p.seed for p in batch] for batch in backend.batches] == [[7, 8, 9]]
    assert backend.calls == []  # never fell back to one stream per candidate
    assert (0, "一二") in partials and (2, "七八九") in partials


async def test_partial_text_of_each_candidate_is_masked():
    backend = BatchingScriptedBackend(["你個仆街", "冇撚用"], chunk=1)
    partials = []

    async def on_partial(index, text):
        partials.append(text)

    result = await _service(backend).reply_to_prompt(THREAD, n=2, on_partial=on_partial)
    assert result.replies == ["你個XX", "冇X用"]
    assert all("撚" not in text and "仆街" not in text for text in partials)


async def test_a_single_candidate_still_uses_plain_streaming():
    backend = BatchingScriptedBackend(["好"])
    await _service(backend).reply_to_prompt(THREAD, n=1)
    assert backend.batches == [] and len(backend.calls) == 1


@pytest.mark.slow
async def test_reply_service_on_the_engine_batches_candidates_and_reports_the_queue(random_model_path):  # noqa: F811
    engine = await MlxBackend.load(random_model_path, config=EngineConfig(max_batch=3))
    try:
        service = _service(engine)
        partial_indices = set()

        async def on_partial(index, text):
            partial_indices.add(index)

        result = await service.reply_to_prompt(THREAD, n=3, seed=1, on_partial=on_partial)
        assert len(result.replies) == 3 and partial_indices == {0, 1, 2}
        prompt_len = len(engine.prompt_tokens(service.messages_for(THREAD, service.params)))
        assert engine.stats().prompt_tokens < 2 * prompt_len  # one prefill for all three

        # Three slots busy with another thread's candidates: the next service call queues.
        positions = []
        blocker = engine.stream_many(service.messages_for(THREAD, service.params), [SamplingParams(max_tokens=1500)] * 3)
        await anext(blocker)

        async def queued_reply():
            with queue_position_listener(positions.append):
                return await service.reply_to_prompt(THREAD, n=1)

        task = asyncio.create_task(queued_reply())
        async with asyncio.timeout(60):
            while not positions:
                await asyncio.sleep(0.005)
        await blocker.aclose()
        reply = await asyncio.wait_for(task, 60)
        assert positions == [0] and len(reply.replies) == 1
    finally:
        await engine.aclose()

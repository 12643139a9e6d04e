"""The batching engine on a real (random-weight) Qwen2: batching, sampling, queue, failures."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from core.backends.mlx_backend import MlxBackend
from core.engine import EngineConfig, queue_position_listener
from core.errors import EngineBusy, GenerationTimeout, ModelError, PromptTooLong
from core.generation import SamplingParams, complete
from tests.fakes.tiny_mlx_model import random_model_path  # noqa: F401 (fixture)

pytestmark = pytest.mark.slow

MESSAGES = [
    {"role": "system", "content": "你係一個 LIHKG 討論區嘅用戶，用廣東話回覆一句。"},
    {"role": "user", "content": "貼文類別：吹水台\n貼文標題：今晚食咩\n貼文內容：\n好肚餓"},
]
OTHER = [MESSAGES[0], {"role": "user", "content": "貼文類別：時事台\n貼文標題：巴士又加價\n貼文內容：\n頂唔順"}]
LONG = SamplingParams(max_tokens=1500, temperature=0.8)  # never finishes within a test
WAIT = 60  # generous bound on waits that should end within milliseconds


@pytest.fixture
async def start_engine(random_model_path):  # noqa: F811
    engines = []

    async def start(**config) -> MlxBackend:
        engine = await MlxBackend.load(random_model_path, config=EngineConfig(**config))
        # Random weights could sample an end-of-turn token: without stops every length is exact.
        engine.tokenizer.eos_token_ids = set()
        engines.append(engine)
        return engine

    yield start
    for engine in engines:
        await engine.aclose()


async def eventually(predicate, *, timeout: float = WAIT) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.005)


async def drain(stream) -> str:
    return "".join([piece async for piece in stream])


async def test_a_reply_streams_exactly_max_tokens(start_engine):
    engine = await start_engine()
    pieces = [piece async for piece in engine.stream(MESSAGES, SamplingParams(max_tokens=12, seed=1))]
    assert len(pieces) > 1 and "".join(pieces)
    stats = engine.stats()
    assert (stats.generated_tokens, stats.finished, stats.running_sequences) == (12, 1, 0)


async def test_a_seeded_reply_is_the_same_alone_or_in_a_batch(start_engine):
    engine = await start_engine()
    alone = await complete(engine, MESSAGES, SamplingParams(max_tokens=30, seed=5))
    batched = await asyncio.gather(*(complete(engine, MESSAGES, SamplingParams(max_tokens=30, seed=s)) for s in (5, 6, 7)))
    assert batched[0] == alone
    assert len(set(batched)) == 3


async def test_each_request_keeps_its_own_sampling_settings_in_a_batch(start_engine):
    engine = await start_engine()
    greedy = SamplingParams(max_tokens=30, temperature=0.0)
    alone = await complete(engine, MESSAGES, greedy)
    hot = [SamplingParams(max_tokens=30, temperature=3.0, top_p=1.0, seed=s) for s in range(3)]
    results = await asyncio.gather(complete(engine, MESSAGES, hot[0]), complete(engine, MESSAGES, greedy),
                                   *(complete(engine, MESSAGES, p) for p in hot[1:]))
    assert results[1] == alone
    assert alone not in (results[0], *results[2:])


async def test_a_short_request_joins_and_leaves_a_running_batch(start_engine):
    engine = await start_engine()
    long_stream = engine.stream(MESSAGES, SamplingParams(max_tokens=400, seed=1))
    await anext(long_stream)
    short = await complete(engine, OTHER, SamplingParams(max_tokens=5, seed=2))
    assert short
    # Continuous batching: the short reply finished while the long one is still generating.
    assert engine.stats().running_sequences == 1
    rest = await drain(long_stream)
    assert rest and engine.stats().finished == 2


async def test_n_candidates_are_one_batch_with_one_prefill(start_engine):
    engine = await start_engine()
    prompt_len = len(engine.prompt_tokens(MESSAGES))
    first_seen, last_seen, texts = {}, {}, ["", "", "", ""]
    params = [SamplingParams(max_tokens=20, seed=s) for s in range(4)]
    position = 0
    async for index, piece in engine.stream_many(MESSAGES, params):
        first_seen.setdefault(index, position)
        last_seen[index] = position
        texts[index] += piece
        position += 1
    assert sorted(first_seen) == [0, 1, 2, 3] and len(set(texts)) == 4
    # Decoded side by side: every candidate started before any of them ended.
    assert max(first_seen.values()) < min(last_seen.values())
    # The shared prompt went through the model once, not once per candidate.
    assert engine.stats().prompt_tokens < 2 * prompt_len


async def test_closing_a_stream_cancels_it_and_frees_its_slot(start_engine):
    engine = await start_engine(max_batch=1)
    stream = engine.stream(MESSAGES, LONG)
    await anext(stream)
    await stream.aclose()
    # With one slot, this only runs once the cancelled request has left the batch.
    after = await asyncio.wait_for(complete(engine, MESSAGES, SamplingParams(max_tokens=5)), WAIT)
    assert after
    stats = engine.stats()
    assert (stats.cancelled, stats.finished, stats.running_sequences) == (1, 1, 0)


async def test_a_running_request_past_its_deadline_times_out_and_frees_its_slot(start_engine):
    engine = await start_engine(max_batch=1, timeout=0.3)
    with pytest.raises(GenerationTimeout) as timed_out:
        await complete(engine, MESSAGES, LONG)
    assert "太忙" in timed_out.value.user_message
    job = engine.submit(MESSAGES, [SamplingParams(max_tokens=5)], timeout=WAIT)
    assert [piece async for piece in job.pieces()]
    await eventually(lambda: engine.stats().timed_out == 1)


async def test_a_queued_request_times_out_while_waiting(start_engine):
    engine = await start_engine(max_batch=1, timeout=0.3)
    running = engine.submit(MESSAGES, [LONG], timeout=WAIT)
    pieces = running.pieces()
    await anext(pieces)
    positions = []
    with pytest.raises(GenerationTimeout):
        await drain(engine.submit(MESSAGES, [SamplingParams(max_tokens=5)], on_queue=positions.append).pieces())
    assert positions == [0]
    await pieces.aclose()
    await eventually(lambda: (engine.stats().timed_out, engine.stats().cancelled) == (1, 1))


async def test_a_full_queue_refuses_new_requests_at_once(start_engine):
    engine = await start_engine(max_batch=1, max_waiting=1)
    running = engine.submit(MESSAGES, [LONG])
    pieces = running.pieces()
    await anext(pieces)
    waiting = engine.submit(MESSAGES, [LONG])
    with pytest.raises(EngineBusy) as refused:
        engine.submit(MESSAGES, [LONG])
    assert "太多人用緊" in refused.value.user_message
    assert engine.stats().refused_busy == 1
    waiting.cancel()
    await pieces.aclose()


async def test_waiting_callers_learn_their_position_as_the_queue_moves(start_engine):
    engine = await start_engine(max_batch=1, max_waiting=5)
    running = engine.stream(MESSAGES, LONG)
    await anext(running)
    seen_b, seen_c = [], []

    async def record_c(ahead):
        seen_c.append(ahead)

    async def consume_c():
        with queue_position_listener(record_c):  # the path bots use through ReplyService
            await drain(engine.stream(OTHER, LONG))

    task_b = asyncio.create_task(drain(engine.submit(MESSAGES, [LONG], on_queue=seen_b.append).pieces()))
    await eventually(lambda: seen_b == [0])
    task_c = asyncio.create_task(consume_c())
    await eventually(lambda: seen_c == [1])
    await running.aclose()  # B takes the slot; C moves up
    await eventually(lambda: seen_c == [1, 0])
    assert seen_b == [0]
    for task in (task_b, task_c):
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await eventually(lambda: engine.stats().cancelled == 3)


async def test_an_oversized_prompt_is_refused_before_any_work(start_engine):
    engine = await start_engine(max_context_tokens=512)
    huge = [MESSAGES[0], {"role": "user", "content": "好長嘅帖文" * 200}]
    with pytest.raises(PromptTooLong) as refused:
        await drain(engine.stream(huge, SamplingParams(max_tokens=10)))
    assert "太長" in refused.value.user_message
    assert engine.stats().prompt_tokens == 0


async def test_a_request_that_cannot_start_fails_alone(start_engine):
    engine = await start_engine()
    bad = SamplingParams(max_tokens=10, repetition_penalty=-1.0)  # mlx-lm refuses a negative penalty
    results = await asyncio.gather(
        complete(engine, MESSAGES, SamplingParams(max_tokens=10)),
        complete(engine, MESSAGES, bad),
        return_exceptions=True,
    )
    assert isinstance(results[0], str) and results[0]
    assert isinstance(results[1], ModelError)
    assert (engine.stats().finished, engine.stats().failed) == (1, 1)


async def test_a_crashing_step_fails_its_batch_and_the_worker_serves_on(start_engine, monkeypatch):
    from core.engine_sampling import RowBatch

    engine = await start_engine()
    real_draw, armed = RowBatch.draw, [True]

    def crash_once(self, logits, history):
        if armed and armed.pop():
            raise RuntimeError("simulated kernel failure")
        return real_draw(self, logits, history)

    monkeypatch.setattr(RowBatch, "draw", crash_once)
    results = await asyncio.gather(*(complete(engine, MESSAGES, SamplingParams(max_tokens=10, seed=s)) for s in range(2)),
                                   return_exceptions=True)
    assert all(isinstance(r, ModelError) for r in results)
    assert await complete(engine, MESSAGES, SamplingParams(max_tokens=10))
    assert engine.stats().restarts == 1


async def test_a_decoding_failure_fails_only_that_request(start_engine, monkeypatch):
    from core.engine_worker import EngineWorker

    engine = await start_engine()
    real_decode = EngineWorker._decode

    def fragile_decode(sequence, token, finish_reason):
        if sequence.job.params[0].max_tokens == 7:
            raise UnicodeError("simulated detokenizer failure")
        return real_decode(sequence, token, finish_reason)

    monkeypatch.setattr(EngineWorker, "_decode", staticmethod(fragile_decode))
    good, bad = await asyncio.gather(
        complete(engine, MESSAGES, SamplingParams(max_tokens=30)),
        complete(engine, MESSAGES, SamplingParams(max_tokens=7)),
        return_exceptions=True,
    )
    assert isinstance(good, str) and good
    assert isinstance(bad, ModelError)


async def test_closing_the_engine_fails_what_is_pending(start_engine):
    engine = await start_engine(max_batch=1)
    running = engine.stream(MESSAGES, LONG)
    await anext(running)
    waiting = asyncio.create_task(drain(engine.stream(OTHER, LONG)))
    await eventually(lambda: engine.stats().waiting_jobs == 1)
    await engine.aclose()
    with pytest.raises(ModelError):
        await drain(running)
    with pytest.raises(ModelError):
        await waiting
    with pytest.raises(ModelError):
        engine.submit(MESSAGES, [SamplingParams()])


async def test_the_prefix_cache_saves_prompt_work_and_changes_no_output(start_engine):
    cached = await start_engine(prefix_cache=True)
    uncached = await start_engine(prefix_cache=False)
    greedy = SamplingParams(max_tokens=25, temperature=0.0)
    outputs = {}
    for name, engine in (("cached", cached), ("uncached", uncached)):
        outputs[name] = [await complete(engine, messages, greedy) for messages in (MESSAGES, OTHER, MESSAGES)]
    assert outputs["cached"] == outputs["uncached"]
    assert (cached.stats().prefix_hits, cached.stats().prefix_misses) == (2, 1)
    assert cached.stats().prompt_tokens < uncached.stats().prompt_tokens


async def test_invalid_jobs_are_programming_errors(start_engine):
    engine = await start_engine(max_batch=2)
    with pytest.raises(ValueError):
        engine.submit(MESSAGES, [SamplingParams()] * 3)
    with pytest.raises(ValueError):
        engine.submit(MESSAGES, [SamplingParams(max_tokens=0)])


async def test_more_candidates_than_slots_run_as_consecutive_batches(start_engine):
    engine = await start_engine(max_batch=2)
    texts = {}
    async for index, piece in engine.stream_many(MESSAGES, [SamplingParams(max_tokens=6, seed=s) for s in range(5)]):
        texts[index] = texts.get(index, "") + piece
    assert sorted(texts) == [0, 1, 2, 3, 4] and all(texts.values())
    assert engine.stats().finished == 3

"""The solo fast path on a real (random-weight) Qwen2: same tokens as the batch path, and a
lone request moves into the batch mid-stream without losing or repeating a token."""

from __future__ import annotations

import asyncio

import pytest

from core.backends.mlx_backend import MlxBackend
from core.engine import EngineConfig
from core.errors import GenerationTimeout
from core.generation import SamplingParams, complete
from tests.fakes.tiny_mlx_model import random_model_path  # noqa: F401 (fixture)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

MESSAGES = [
    {"role": "system", "content": "你係一個 LIHKG 討論區嘅用戶，用廣東話回覆一句。"},
    {"role": "user", "content": "貼文類別：吹水台\n貼文標題：今晚食咩\n貼文內容：\n好肚餓"},
]
OTHER = [MESSAGES[0], {"role": "user", "content": "貼文類別：時事台\n貼文標題：巴士又加價\n貼文內容：\n頂唔順"}]
GREEDY = SamplingParams(max_tokens=40, temperature=0.0)
SEEDED = SamplingParams(max_tokens=40, temperature=1.0, seed=11)
WAIT = 60


@pytest.fixture
async def start_engine(random_model_path):  # noqa: F811
    engines = []

    async def start(**config) -> MlxBackend:
        engine = await MlxBackend.load(random_model_path, config=EngineConfig(**config))
        engine.tokenizer.eos_token_ids = set()  # random weights: without stops every length is exact
        engines.append(engine)
        return engine

    yield start
    for engine in engines:
        await engine.aclose()


def solo(engine):
    return engine._worker.solo_stats()


def counters(engine) -> tuple:
    s = engine.stats()
    return s.finished, s.generated_tokens, s.prompt_tokens, s.prefix_hits, s.prefix_misses, s.running_sequences


async def drain(pieces) -> str:
    return "".join([piece if isinstance(piece, str) else piece.text async for piece in pieces])


async def eventually(predicate, *, timeout: float = WAIT) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.005)


async def test_a_lone_request_gives_the_same_tokens_and_counts_on_either_path(start_engine):
    fast = await start_engine(solo_fast_path=True)
    batch = await start_engine(solo_fast_path=False)
    runs = [(MESSAGES, GREEDY), (MESSAGES, SEEDED), (OTHER, SEEDED), (OTHER, SamplingParams(max_tokens=30, seed=4, repetition_penalty=1.0))]
    texts = {}
    for name, engine in (("fast", fast), ("batch", batch)):
        texts[name] = [await complete(engine, messages, params) for messages, params in runs]
    assert texts["fast"] == texts["batch"]
    assert all(texts["fast"]) and texts["fast"][1] != texts["fast"][0]
    assert counters(fast) == counters(batch) == (4, 150, counters(batch)[2], 3, 1, 0)
    assert (solo(fast).started, solo(batch).started) == (4, 0)


@pytest.mark.parametrize("params", [GREEDY, SEEDED], ids=["greedy", "seeded"])
async def test_a_second_request_moves_the_first_into_the_batch_without_losing_a_token(start_engine, params):
    engine = await start_engine()
    first_params = SamplingParams(max_tokens=300, temperature=params.temperature, seed=params.seed)
    alone = await complete(engine, MESSAGES, first_params)
    second_alone = await complete(engine, OTHER, SEEDED)
    assert solo(engine).started == 2

    first = engine.stream(MESSAGES, first_params)
    head = await anext(first)  # the first is decoding solo and has handed out text
    second = await complete(engine, OTHER, SEEDED)  # joins: the first moves into the batch
    rest = "".join([piece async for piece in first])
    assert head + rest == alone
    assert second == second_alone
    assert solo(engine).moved_to_batch == 1
    stats = engine.stats()
    assert (stats.finished, stats.generated_tokens, stats.running_sequences) == (4, 2 * (300 + 40), 0)
    # The stored system-prefix cache the solo sequence started from was not modified.
    assert await complete(engine, MESSAGES, first_params) == alone


async def test_a_job_waiting_for_a_slot_leaves_the_solo_request_alone(start_engine):
    engine = await start_engine(max_batch=1)
    params = SamplingParams(max_tokens=200, seed=8)
    alone = await complete(engine, MESSAGES, params)
    first = engine.stream(MESSAGES, params)
    head = await anext(first)
    positions = []
    waiting = engine.submit(OTHER, [SEEDED], on_queue=positions.append)
    waited = asyncio.create_task(drain(waiting.pieces()))
    await eventually(lambda: positions == [0])
    assert head + await drain(first) == alone
    assert await waited
    assert solo(engine) == type(solo(engine))(started=3, moved_to_batch=0)


async def test_several_jobs_arriving_together_and_n_candidates_use_the_batch(start_engine):
    engine = await start_engine()
    await complete(engine, MESSAGES, GREEDY)
    texts = {}
    async for index, piece in engine.stream_many(MESSAGES, [SamplingParams(max_tokens=8, seed=s) for s in range(3)]):
        texts[index] = texts.get(index, "") + piece
    assert sorted(texts) == [0, 1, 2]
    assert solo(engine).started == 1


async def test_cancelling_a_solo_request_frees_the_worker(start_engine):
    engine = await start_engine(max_batch=1)
    stream = engine.stream(MESSAGES, SamplingParams(max_tokens=1500))
    await anext(stream)
    await stream.aclose()
    assert await asyncio.wait_for(complete(engine, MESSAGES, SamplingParams(max_tokens=5)), WAIT)
    await eventually(lambda: engine.stats().cancelled == 1)
    stats = engine.stats()
    assert (stats.cancelled, stats.finished, stats.running_sequences) == (1, 1, 0)
    assert solo(engine) == type(solo(engine))(started=2, moved_to_batch=0)


async def test_a_solo_request_past_its_deadline_times_out(start_engine):
    engine = await start_engine(timeout=0.3)
    with pytest.raises(GenerationTimeout):
        await complete(engine, MESSAGES, SamplingParams(max_tokens=5000))
    await eventually(lambda: engine.stats().timed_out == 1 and engine.stats().running_sequences == 0)
    job = engine.submit(MESSAGES, [SamplingParams(max_tokens=5)], timeout=WAIT)
    assert [piece async for piece in job.pieces()]
    assert solo(engine).started == 2


async def test_a_stop_token_ends_a_solo_reply_as_it_ends_a_batched_one(start_engine):
    fast = await start_engine(solo_fast_path=True)
    batch = await start_engine(solo_fast_path=False)
    full = await complete(fast, MESSAGES, GREEDY)
    tokens = fast.tokenizer.encode(full, add_special_tokens=False)
    stop = tokens[len(tokens) // 2]
    results = []
    for engine in (fast, batch):
        engine.tokenizer.eos_token_ids = {stop}
        results.append((await complete(engine, MESSAGES, GREEDY), engine.stats().generated_tokens))
    (fast_text, fast_tokens), (batch_text, batch_tokens) = results
    assert fast_text == batch_text and full.startswith(fast_text) and len(fast_text) < len(full)
    assert fast_tokens - 40 == batch_tokens < 40


# --- the hand-over itself, driven directly: every state continues with the same tokens --------


@pytest.fixture(scope="module")
def loaded(random_model_path):  # noqa: F811
    from mlx_lm import load

    model, tokenizer = load(random_model_path)
    return model, list(tokenizer.apply_chat_template(MESSAGES, add_generation_prompt=True))


def new_solo(model, prompt, params, *, base, base_len):
    from core.engine_solo import SoloSequence

    return SoloSequence(model, prompt=prompt, params=params, base=base, base_len=base_len, stop_tokens=set(),
                        candidates=128, prefill_step=4)


def run_solo(solo, *, steps: int | None = None) -> list[int]:
    tokens, taken = [], 0
    while steps is None or taken < steps:
        taken += 1
        result = solo.step()
        if result is not None:
            tokens.append(result[0])
            if result[1] is not None:
                break
    return tokens


@pytest.mark.parametrize("state", ["fresh", "prefilling", "decoding"])
@pytest.mark.parametrize("params", [GREEDY, SEEDED], ids=["greedy", "seeded"])
def test_a_hand_over_in_any_state_continues_with_the_same_tokens(loaded, state, params):
    import mlx.core as mx
    from mlx_lm.generate import BatchGenerator, StopSequences

    from core.engine_batch import use_lean_decoding
    from core.engine_prompt_cache import prefill
    from core.engine_solo import continue_in_batch

    model, prompt = loaded
    base_len = 10
    base = prefill(model, prompt[:base_len])
    stored = [mx.array(layer.keys) for layer in base]
    expected = run_solo(new_solo(model, prompt, params, base=base, base_len=base_len))
    assert len(expected) == params.max_tokens

    chunks = -(-(len(prompt) - 1 - base_len) // 4)
    steps = {"fresh": 0, "prefilling": chunks // 2, "decoding": chunks + 15}[state]
    solo = new_solo(model, prompt, params, base=base, base_len=base_len)
    before = run_solo(solo, steps=steps)
    assert len(before) == (15 if state == "decoding" else 0)

    generator = BatchGenerator(model, stream=mx.default_stream(mx.default_device()))
    use_lean_decoding(generator)
    uid = continue_in_batch(solo, generator, stops=StopSequences([]))
    after, finished = [], False
    while not finished:
        for response in generator.next()[1]:
            assert response.uid == uid
            after.append(response.token)
            finished = response.finish_reason is not None
    generator.close()
    assert before + after == expected
    # The stored prefix cache the sequence started from is untouched.
    assert all(layer.offset == base_len and mx.array_equal(layer.keys, keys) for layer, keys in zip(base, stored))

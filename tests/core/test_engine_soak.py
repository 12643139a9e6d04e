"""Soak: 500 mixed requests through one engine; every one ends answered or with a typed error."""

from __future__ import annotations

import asyncio
import random
from collections import Counter

import pytest

from core.backends.mlx_backend import MlxBackend
from core.engine import EngineConfig
from core.errors import (
    EngineBusy,
    GenerationTimeout,
    LilmError,
    ModelError,
    PromptTooLong,
)
from core.generation import SamplingParams
from tests.fakes.tiny_mlx_model import random_model_path  # noqa: F401 (fixture)

pytestmark = pytest.mark.slow

REQUESTS = 500
CLIENTS = 48  # concurrent callers: more than batch slots + queue places, so some are refused
RETRIES = 100  # a refused caller tries again a little later, as a user would
SYSTEM = {"role": "system", "content": "你係一個 LIHKG 討論區嘅用戶，用廣東話回覆一句。"}
KINDS = ("normal", "normal", "normal", "candidates", "cancel", "cancel", "timeout", "oversized", "bad", "normal")
# What each kind must end with (a refused caller retries, so EngineBusy is never final).
ALLOWED = {
    "normal": {"answered"},
    "candidates": {"answered"},
    "cancel": {"cancelled"},
    "timeout": {"GenerationTimeout"},
    "oversized": {"PromptTooLong"},
    "bad": {"ModelError"},
}


def _messages(rng: random.Random, *, oversized: bool = False) -> list[dict[str, str]]:
    body = "好長嘅帖文" * 800 if oversized else "".join(rng.choice("今晚食咩好肚餓巴士加價頂唔順") for _ in range(rng.randint(5, 60)))
    return [SYSTEM, {"role": "user", "content": f"貼文類別：吹水台\n貼文標題：測試\n貼文內容：\n{body}"}]


async def _one_request(engine, kind: str, rng: random.Random) -> str:
    """Run one request of `kind`; returns its outcome name."""
    seed = rng.randrange(1 << 30)
    messages = _messages(rng, oversized=kind == "oversized")
    if kind in ("normal", "oversized"):
        params = SamplingParams(max_tokens=rng.randint(4, 24), seed=seed)
        text = "".join([piece async for piece in engine.stream(messages, params)])
        return "answered" if text else "empty"
    if kind == "candidates":
        params = [SamplingParams(max_tokens=rng.randint(4, 16), seed=seed + i) for i in range(3)]
        texts = ["", "", ""]
        async for index, piece in engine.stream_many(messages, params):
            texts[index] += piece
        return "answered" if all(texts) else "empty"
    if kind == "cancel":
        stream = engine.stream(messages, SamplingParams(max_tokens=200, seed=seed))
        for _ in range(rng.randint(1, 3)):
            await anext(stream)
        await stream.aclose()
        return "cancelled"
    if kind == "timeout":
        job = engine.submit(messages, [SamplingParams(max_tokens=1000, seed=seed)], timeout=rng.uniform(0.02, 0.2))
        async for _ in job.pieces():
            pass
        return "finished-late"
    if kind == "bad":  # mlx-lm refuses a negative repetition penalty when the request starts
        params = SamplingParams(max_tokens=8, repetition_penalty=-1.0)
        return "answered" if [piece async for piece in engine.stream(messages, params)] else "empty"
    raise AssertionError(kind)


async def test_500_mixed_requests_all_end_typed_and_the_worker_serves_on(random_model_path):  # noqa: F811
    engine = await MlxBackend.load(random_model_path, config=EngineConfig(max_batch=16, max_waiting=24, timeout=60, max_context_tokens=2048))
    engine.tokenizer.eos_token_ids = set()  # exact lengths: random weights might end a turn at any time
    rng = random.Random(20240611)
    plan = [KINDS[rng.randrange(len(KINDS))] for _ in range(REQUESTS)]
    outcomes: list[tuple[str, str]] = []
    unexpected: list[BaseException] = []
    slots = asyncio.Semaphore(CLIENTS)
    refusals = 0

    async def client(kind: str, seed: int) -> None:
        nonlocal refusals
        async with slots:
            for attempt in range(1, RETRIES + 1):
                try:
                    outcome = await _one_request(engine, kind, random.Random(seed))
                except EngineBusy as error:
                    outcome = type(error).__name__
                    refusals += 1
                    await asyncio.sleep(min(0.5, 0.01 * attempt))
                    continue
                except LilmError as error:
                    outcome = type(error).__name__
                except BaseException as error:  # noqa: BLE001 (anything untyped fails the soak)
                    unexpected.append(error)
                    return
                break
            outcomes.append((kind, outcome))

    try:
        async with asyncio.timeout(240):
            await asyncio.gather(*(client(kind, i) for i, kind in enumerate(plan)))
        assert unexpected == []
        assert len(outcomes) == REQUESTS
        wrong = [(k, o) for k, o in outcomes if o not in ALLOWED[k]]
        assert wrong == []
        tally = Counter(o for _, o in outcomes)
        # The mix really exercised every path, the queue overflowed, and retries got everyone served.
        for outcome in ("answered", "cancelled", "GenerationTimeout", "PromptTooLong", "ModelError"):
            assert tally[outcome] > 0, tally
        assert refusals > 0, "the queue never overflowed: raise CLIENTS"

        # A burst beyond slots + queue: the excess is refused at once, the rest still served.
        burst = []
        with pytest.raises(EngineBusy):
            for _ in range(16 + 24 + 1):
                burst.append(engine.submit(_messages(rng), [SamplingParams(max_tokens=1000)]))
        assert len(burst) >= 24
        for job in burst:
            job.cancel()
        async with asyncio.timeout(30):
            while engine.stats().waiting_jobs or engine.stats().running_sequences:
                await asyncio.sleep(0.01)

        # Still serving, and every accepted job was accounted for exactly once.
        after = "".join([p async for p in engine.stream(_messages(rng), SamplingParams(max_tokens=5))])
        assert after
        accepted = REQUESTS - tally["PromptTooLong"] + len(burst) + 1

        def settled():
            s = engine.stats()
            return s.finished + s.failed + s.cancelled + s.timed_out == accepted

        async with asyncio.timeout(30):
            while not settled():
                await asyncio.sleep(0.01)
        stats = engine.stats()
        assert (stats.running_sequences, stats.waiting_jobs) == (0, 0)
        assert stats.refused_busy == refusals + 1
        assert stats.cancelled == tally["cancelled"] + len(burst)
        assert stats.timed_out == tally["GenerationTimeout"]
        assert stats.failed == tally["ModelError"]
    finally:
        await engine.aclose()


def test_typed_errors_share_one_base():
    for error_type in (EngineBusy, GenerationTimeout, PromptTooLong):
        assert issubclass(error_type, ModelError) and error_type.user_message

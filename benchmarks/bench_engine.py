"""The batching engine's figures, side by side in one process on one model:

1. throughput: 8 concurrent requests vs the same 8 one after another (goal >= 4x);
2. overhead: one request through the engine vs raw `mlx_lm.stream_generate` (goal <= 1.05x),
   and the same engine with its solo fast path off (every request through BatchGenerator);
3. peak memory at 1, 8 and 32 concurrent requests;
4. time to first token of requests that had to queue, under load (p50, p95);
5. prompt caching: the system-message prefix cache on vs off, and N candidates as one
   `stream_many` batch (prompt prefilled once) vs N separate requests;
6. OpenBLAS threads while serving: the engine's default (one fewer than the CPUs) vs every
   CPU, section 1 alternating between the two on one engine.

Stop tokens are cleared so every request generates exactly its token budget, and paired
measurements alternate in rounds so both sides see the same machine load; medians reported.

    .venv/bin/python benchmarks/bench_engine.py [--model model/lilm-tiny] [--rounds 5] [--tokens 128] [--only 123456]
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import os
import queue
import statistics
import threading
import time

from core.blas import preload_openblas

SAMPLING = {"temperature": 0.8, "top_p": 0.95, "repetition_penalty": 1.1}  # the settings' defaults


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="model/lilm-tiny")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--only", default="123456", help="sections to run, e.g. 12")
    args = parser.parse_args()
    print("OpenBLAS:", preload_openblas("auto") or "not found", "| load average:", os.getloadavg())
    asyncio.run(run(args))


async def run(args) -> None:
    from core.backends.mlx_backend import MlxBackend
    from core.demo import demo_threads
    from core.engine import EngineConfig
    from core.generation import SamplingParams
    from core.masking import Masker
    from core.reply import ReplyService

    engine = await MlxBackend.load(args.model, config=EngineConfig(max_batch=32, max_waiting=256, timeout=None))
    engine.tokenizer.eos_token_ids = set()
    params = SamplingParams(max_tokens=args.tokens, **SAMPLING)
    service = ReplyService(backend=engine, fetcher=None, masker=Masker.default(), params=params)
    chats = [service.messages_for(thread, params) for thread in demo_threads()]
    print(f"model {args.model}: {len(chats)} demo prompts of {[len(engine.prompt_tokens(c)) for c in chats]} tokens")
    try:
        if "1" in args.only:
            await throughput(engine, chats, args)
        if "2" in args.only:
            await overhead(engine, chats[0], args)
        if "3" in args.only:
            await peak_memory(engine, chats, args)
        if "6" in args.only:
            await blas_threads(engine, chats, args)
    finally:
        await engine.aclose()
    if "4" in args.only:
        await queued_first_token(args, chats)
    if "5" in args.only:
        await prompt_caching(args, chats)


async def _reply(engine, messages, params) -> tuple[float, float]:
    """(seconds to first piece, seconds to the end) of one request."""
    start = time.perf_counter()
    first = None
    async for _ in engine.stream(messages, params):
        if first is None:
            first = time.perf_counter() - start
    return first or 0.0, time.perf_counter() - start


async def throughput(engine, chats, args) -> None:
    from core.generation import SamplingParams

    requests = [(chats[i % len(chats)], SamplingParams(max_tokens=args.tokens, seed=i, **SAMPLING)) for i in range(8)]
    tokens = 8 * args.tokens
    await asyncio.gather(*(_reply(engine, m, p) for m, p in requests))  # warm-up: compiles every batch shape
    concurrent, sequential = [], []
    for _ in range(args.rounds):
        c, s = await _eight_both_ways(engine, requests)
        concurrent.append(c), sequential.append(s)
    c, s = statistics.median(concurrent), statistics.median(sequential)
    print(f"\n[1] throughput, 8 requests x {args.tokens} tokens (median of {args.rounds} alternating rounds)")
    print(f"    8 concurrent: {c:.2f}s = {tokens / c:,.0f} tok/s | 8 sequential: {s:.2f}s = {tokens / s:,.0f} tok/s"
          f" | speed-up {s / c:.2f}x (goal >= 4x) | median paired {_paired(sequential, concurrent):.2f}x")


async def _eight_both_ways(engine, requests) -> tuple[float, float]:
    """Seconds for the 8 requests concurrently, then one after another."""
    start = time.perf_counter()
    await asyncio.gather(*(_reply(engine, m, p) for m, p in requests))
    concurrent = time.perf_counter() - start
    start = time.perf_counter()
    for m, p in requests:
        await _reply(engine, m, p)
    return concurrent, time.perf_counter() - start


async def blas_threads(engine, chats, args) -> None:
    from core.blas import serving_threads, set_serving_threads
    from core.generation import SamplingParams

    cpus = os.cpu_count() or 1
    default = serving_threads(0)
    requests = [(chats[i % len(chats)], SamplingParams(max_tokens=args.tokens, seed=i, **SAMPLING)) for i in range(8)]
    runs: dict[int, list[tuple[float, float]]] = {default: [], cpus: []}
    try:
        for _ in range(args.rounds):
            for threads, times in runs.items():
                set_serving_threads(threads)
                times.append(await _eight_both_ways(engine, requests))
    finally:
        set_serving_threads(default)
    print(f"\n[6] OpenBLAS threads while serving, section 1 on {cpus} CPUs (median of {args.rounds} alternating rounds)")
    for threads, times in runs.items():
        c, s = (statistics.median(t[i] for t in times) for i in (0, 1))
        label = "engine default" if threads == default else "every CPU"
        print(f"    {threads} thread(s) ({label}): 8 concurrent {c:.2f}s | 8 sequential {s:.2f}s | speed-up {s / c:.2f}x")


class DedicatedThread:
    """Runs raw mlx-lm calls on one thread of their own, never the main one: mlx keeps a
    per-thread compile cache that must be destroyed while the interpreter is still alive."""

    def __init__(self) -> None:
        self._jobs: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._serve, name="bench-raw")
        self._thread.start()

    def _serve(self) -> None:
        while (job := self._jobs.get()) is not None:
            function, future = job
            try:
                future.set_result(function())
            except BaseException as error:  # noqa: BLE001 (handed to the caller)
                future.set_exception(error)

    async def run(self, function):
        future: concurrent.futures.Future = concurrent.futures.Future()
        self._jobs.put((function, future))
        return await asyncio.wrap_future(future)

    def close(self) -> None:
        from core.engine_worker import wait_for_os_thread_exit

        self._jobs.put(None)
        self._thread.join()
        wait_for_os_thread_exit(self._thread)


async def overhead(engine, messages, args) -> None:
    import dataclasses

    import mlx.core as mx
    from mlx_lm import stream_generate
    from mlx_lm.sample_utils import make_logits_processors, make_sampler

    from core.backends.mlx_backend import MlxBackend
    from core.generation import SamplingParams

    prompt = engine.prompt_tokens(messages)
    greedy = SamplingParams(max_tokens=args.tokens, temperature=0.0, repetition_penalty=1.1)

    def raw() -> float:
        # The thread's default stream, as the engine uses: no thread-local stream to outlive it.
        start = time.perf_counter()
        for _ in stream_generate(engine.model, engine.tokenizer, prompt, max_tokens=args.tokens,
                                 sampler=make_sampler(temp=0.0), stream=mx.default_stream(mx.default_device()),
                                 logits_processors=make_logits_processors(repetition_penalty=1.1)):
            pass
        return time.perf_counter() - start

    batched = await MlxBackend.load(args.model, config=dataclasses.replace(engine.config, solo_fast_path=False))
    batched.tokenizer.eos_token_ids = set()
    thread = DedicatedThread()
    try:
        await thread.run(raw)
        await _reply(engine, messages, greedy)
        await _reply(batched, messages, greedy)
        raw_times, engine_times, batched_times = [], [], []
        for _ in range(3 * args.rounds):
            raw_times.append(await thread.run(raw))
            engine_times.append((await _reply(engine, messages, greedy))[1])
            batched_times.append((await _reply(batched, messages, greedy))[1])
    finally:
        thread.close()
        await batched.aclose()
    r, e, b = (statistics.median(times) for times in (raw_times, engine_times, batched_times))
    print(f"\n[2] one request, {args.tokens} greedy tokens (median of {3 * args.rounds} alternating rounds)")
    print(f"    raw stream_generate {r * 1000:.0f} ms | engine.stream {e * 1000:.0f} ms | ratio {e / r:.3f}x (goal <= 1.05x)"
          f" | median paired ratio {_paired(engine_times, raw_times):.3f}x")
    print(f"    engine with solo_fast_path=False {b * 1000:.0f} ms | ratio {b / r:.3f}x"
          f" | median paired ratio {_paired(batched_times, raw_times):.3f}x")


def _paired(times: list[float], base: list[float]) -> float:
    """Median of per-round ratios: each round's sides ran back to back, under the same load."""
    return statistics.median(t / b for t, b in zip(times, base))


async def queued_first_token(args, chats) -> None:
    """64 requests at once on 16 slots: 48 must queue. TTFT from submit to first text."""
    from core.backends.mlx_backend import MlxBackend
    from core.engine import EngineConfig
    from core.generation import SamplingParams

    engine = await MlxBackend.load(args.model, config=EngineConfig(max_batch=16, max_waiting=256, timeout=None))
    engine.tokenizer.eos_token_ids = set()
    queued: list[float] = []
    direct: list[float] = []

    async def one(i: int) -> None:
        waited = []
        params = SamplingParams(max_tokens=args.tokens // 2, seed=i, **SAMPLING)
        start = time.perf_counter()
        job = engine.submit(chats[i % len(chats)], [params], on_queue=waited.append)
        first = None
        async for _ in job.pieces():
            if first is None:
                first = time.perf_counter() - start
        (queued if waited else direct).append(first or 0.0)

    try:
        await asyncio.gather(*(one(i) for i in range(16)))  # warm-up
        queued.clear(), direct.clear()
        for _ in range(max(1, args.rounds // 2)):
            await asyncio.gather(*(one(i) for i in range(64)))
    finally:
        await engine.aclose()
    print(f"\n[4] time to first token, 64 requests at once on 16 slots ({args.tokens // 2} tokens each)")
    print(f"    queued ({len(queued)}): p50 {_pct(queued, 50) * 1000:.0f} ms, p95 {_pct(queued, 95) * 1000:.0f} ms"
          f" | admitted at once ({len(direct)}): p50 {_pct(direct, 50) * 1000:.0f} ms, p95 {_pct(direct, 95) * 1000:.0f} ms")


async def peak_memory(engine, chats, args) -> None:
    import mlx.core as mx
    import psutil

    from core.generation import SamplingParams

    print("\n[3] peak memory (mlx allocator peak; process RSS after)")
    for n in (1, 8, 32):
        mx.clear_cache()
        mx.reset_peak_memory()
        await asyncio.gather(*(_reply(engine, chats[i % len(chats)], SamplingParams(max_tokens=args.tokens, seed=i, **SAMPLING))
                               for i in range(n)))
        rss = psutil.Process().memory_info().rss
        print(f"    {n:>2} concurrent: mlx peak {mx.get_peak_memory() / 1e6:7.1f} MB | RSS {rss / 1e6:7.1f} MB")


async def prompt_caching(args, chats) -> None:
    from core.backends.mlx_backend import MlxBackend
    from core.engine import EngineConfig
    from core.generation import SamplingParams

    print("\n[5] prompt caching")
    cached = await MlxBackend.load(args.model, config=EngineConfig(prefix_cache=True, timeout=None))
    uncached = await MlxBackend.load(args.model, config=EngineConfig(prefix_cache=False, timeout=None))
    first_token = SamplingParams(max_tokens=1, temperature=0.0)
    try:
        for label, repeat in (("default system message", 1), ("8x longer system message", 8)):
            prompts = [[{"role": "system", "content": c[0]["content"] * repeat}, c[1]] for c in chats]
            prompt = cached.prompt_tokens(prompts[0])
            prefix = cached.system_prefix_len(prompts[0], prompt)
            for engine in (cached, uncached):
                await _reply(engine, prompts[0], first_token)
            times: dict[str, list[float]] = {"on": [], "off": []}
            for _ in range(args.rounds):
                for messages in prompts:  # interleaved, so both see the same load
                    times["on"].append((await _reply(cached, messages, first_token))[1])
                    times["off"].append((await _reply(uncached, messages, first_token))[1])
            on, off = statistics.median(times["on"]), statistics.median(times["off"])
            print(f"    {label} ({prefix} of {len(prompt)} prompt tokens): time to first token"
                  f" {on * 1000:.1f} ms cached vs {off * 1000:.1f} ms not ({off / on:.2f}x)")
    finally:
        await cached.aclose()
        await uncached.aclose()

    engine = await MlxBackend.load(args.model, config=EngineConfig(timeout=None))
    engine.tokenizer.eos_token_ids = set()
    try:
        candidates = [SamplingParams(max_tokens=args.tokens // 2, seed=s, **SAMPLING) for s in range(4)]
        long_prompt = [chats[0][0], {"role": "user", "content": chats[0][1]["content"] * 6}]

        async def as_one_batch() -> None:
            async for _ in engine.stream_many(long_prompt, candidates):
                pass

        async def as_separate_requests() -> None:
            await asyncio.gather(*(_reply(engine, long_prompt, p) for p in candidates))

        await as_one_batch(), await as_separate_requests()
        timings = {"stream_many": [], "separate": []}
        for _ in range(args.rounds):
            for label, job in (("stream_many", as_one_batch), ("separate", as_separate_requests)):
                start = time.perf_counter()
                await job()
                timings[label].append(time.perf_counter() - start)
        prompt_len = len(engine.prompt_tokens(long_prompt))
        many, separate = statistics.median(timings["stream_many"]), statistics.median(timings["separate"])
        print(f"    4 candidates on a {prompt_len}-token prompt: stream_many {many:.2f}s vs 4 separate requests"
              f" {separate:.2f}s ({separate / many:.2f}x)")
    finally:
        await engine.aclose()


def _pct(values: list[float], pct: int) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


if __name__ == "__main__":
    main()

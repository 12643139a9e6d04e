"""Core generation overhead vs raw `mlx_lm.stream_generate`, same model, prompt and tokens.

All sides decode greedily for the same number of tokens, in alternating rounds in one
process, so they do identical model work; the ratio is the cost of the core's worker thread,
asyncio bridge and (for the service) prompt building and post-processing. `--tokens` is
clamped to what fits the model's trained window after the prompt (ReplyService would shorten
its reply to that), and every side's token count is checked.

    .venv/bin/python benchmarks/bench_generation.py [--model model/lilm-tiny] [--rounds 15] [--tokens 128]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from core.blas import preload_openblas


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="model/lilm-tiny")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--tokens", type=int, default=128)
    args = parser.parse_args()
    print("OpenBLAS:", preload_openblas("auto") or "not found")
    asyncio.run(run(args))


async def run(args) -> None:
    from dataclasses import replace

    import mlx.core as mx
    from bench_engine import DedicatedThread  # a sibling script
    from mlx_lm import stream_generate
    from mlx_lm.sample_utils import make_logits_processors, make_sampler

    from core.backends.mlx_backend import MlxBackend
    from core.demo import demo_threads
    from core.generation import SamplingParams
    from core.masking import Masker
    from core.reply import ReplyService

    backend = await MlxBackend.load(args.model)
    # No stop tokens: every side generates exactly its token budget.
    backend.tokenizer.eos_token_ids = set()
    params = SamplingParams(max_tokens=args.tokens, temperature=0.0, top_p=1.0, repetition_penalty=1.1)
    service = ReplyService(backend=backend, fetcher=None, masker=Masker.default(), params=params)
    thread = demo_threads()[0]
    prompt = backend.prompt_tokens(service.messages_for(thread, params))
    # What ReplyService leaves for the reply in the model's window; a shorter reply lets the
    # prompt keep more of the post, so repeat until both fit.
    window = backend.context_window
    while window is not None and len(prompt) + params.max_tokens > window and params.max_tokens > 1:
        params = replace(params, max_tokens=max(1, window - len(prompt)))
        prompt = backend.prompt_tokens(service.messages_for(thread, params))
    service = ReplyService(backend=backend, fetcher=None, masker=Masker.default(), params=params)
    tokens = params.max_tokens

    def raw_generate() -> int:
        count = 0
        for _ in stream_generate(
            backend.model,
            backend.tokenizer,
            prompt,
            max_tokens=tokens,
            sampler=make_sampler(temp=0.0),
            logits_processors=make_logits_processors(repetition_penalty=1.1),
            stream=mx.default_stream(mx.default_device()),  # as the engine: no thread-local stream
        ):
            count += 1
        return count

    async def counted(run_core) -> int:
        before = backend.stats().generated_tokens
        await run_core()
        return backend.stats().generated_tokens - before

    async def core_stream() -> None:
        async for _ in backend.stream(service.messages_for(thread, params), params):
            pass

    async def core_service() -> None:
        await service.reply_to_prompt(thread, params=params)

    raw_thread = DedicatedThread()  # joined before exit: mlx's per-thread state must go first
    try:
        # Warm-up (JIT-compiled kernels, caches) that also checks every side's token count.
        counts = [await raw_thread.run(raw_generate), await counted(core_stream), await counted(core_service)]
        if counts != [tokens] * 3:
            raise SystemExit(f"sides generated {counts} tokens, expected {tokens} each")
        timings: dict[str, list[float]] = {"raw stream_generate": [], "core backend.stream": [], "core ReplyService": []}
        for _ in range(args.rounds):
            for label, job in (
                ("raw stream_generate", lambda: raw_thread.run(raw_generate)),
                ("core backend.stream", core_stream),
                ("core ReplyService", core_service),
            ):
                start = time.perf_counter()
                await job()
                timings[label].append(time.perf_counter() - start)
    finally:
        raw_thread.close()
        await backend.aclose()

    base = statistics.median(timings["raw stream_generate"])
    print(f"model {args.model}: {len(prompt)}-token prompt, {tokens} tokens greedy (asked {args.tokens}),"
          f" {args.rounds} alternating rounds (median)")
    for label, values in timings.items():
        median = statistics.median(values)
        print(f"  {label:22s} {median * 1000:8.1f} ms  {tokens / median:7.0f} tok/s  ratio {median / base:.3f}x")


if __name__ == "__main__":
    main()

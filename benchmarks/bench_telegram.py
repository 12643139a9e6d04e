"""Telegram bot latency: a shared LIHKG link to the first visible reply text, and to the final
reply, through the real python-telegram-bot stack (long polling the fake Bot API over loopback
HTTP), the fake LIHKG server and the real tiny model; 1 chat, then 8 chats at once.

Side by side with its baseline: the same threads answered by `ReplyService` directly (no
Telegram, no LIHKG), so the bot's own cost is the difference. Real time everywhere; the
bot's settings are the defaults (private chats stream by native drafts, groups by edits).

    .venv/bin/python benchmarks/bench_telegram.py [--model model/lilm-tiny] [--rounds 20] [--chat private]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the fakes live in tests/

from core.blas import preload_openblas

VISIBLE_CALLS = ("sendMessageDraft", "sendMessage", "editMessageText")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(ROOT / "model" / "lilm-tiny"))
    parser.add_argument("--rounds", type=int, default=20, help="rounds of 1 chat; 8 chats run rounds/4 rounds")
    parser.add_argument("--chat", choices=("private", "group"), default="private")
    args = parser.parse_args()
    print("OpenBLAS:", preload_openblas("auto") or "not found", "| load average:", [round(x, 2) for x in os.getloadavg()])
    asyncio.run(run(args))


async def run(args) -> None:
    from core.backends.mlx_backend import MlxBackend
    from core.lihkg import LihkgClient
    from core.masking import Masker
    from core.reply import ReplyService, prompt_from_thread
    from core.settings import load_settings
    from tests.bots.harness import TOKEN, RealTime, running_bot
    from tests.fakes import lihkg_server as fake_lihkg
    from tests.fakes.lihkg_server import FakeLihkgServer
    from tests.fakes.lihkg_threads import make_thread
    from tests.fakes.telegram_api import FakeBotApi

    # socketserver's listen backlog of 5 drops connects when 8 chats fetch at once, and each
    # dropped SYN costs a 1 s retry: a fake-server artifact, not the bot's latency.
    fake_lihkg._QuietHTTPServer.request_queue_size = 128
    backend = await MlxBackend.load(args.model)
    defaults = load_settings(env_file=None, environ={})
    masker = Masker.default()
    thread_ids = iter(range(5000, 10_000))  # a new thread per request: no LIHKG cache hits
    with FakeLihkgServer() as lihkg_server, FakeBotApi(token=TOKEN) as api:
        for thread_id in range(5000, 10_000):
            lihkg_server.add_thread(make_thread(thread_id, f"今晚食咩好 {thread_id}", cat_id=1, posts=["好肚餓，有冇推介？"]))
        async with LihkgClient(lihkg_server.base_url, device_id="a" * 40, retries=0) as lihkg:
            service = ReplyService.from_settings(defaults, backend=backend, fetcher=lihkg)
            service.masker = masker
            env = {"TELEGRAM_RATE_LIMIT": "0", "TELEGRAM_STREAM_HOLD": str(defaults.telegram_stream_hold)}  # else defaults
            async with running_bot(api, service, env=env, time=RealTime()) as bot:
                print(f"model {Path(args.model).name}, max_tokens {defaults.max_tokens}, {args.chat} chats, streaming {bot.state.settings.telegram_stream}")
                for chats, rounds in ((1, args.rounds), (8, max(2, args.rounds // 4))):
                    await one_round(api, bot, chats, thread_ids, args.chat)  # warm-up (kernels, connections)
                    samples = []
                    for _ in range(rounds):
                        samples += await one_round(api, bot, chats, thread_ids, args.chat)
                    baseline = await direct_round(service, lihkg_server, chats, rounds, thread_ids, prompt_from_thread, lihkg)
                    report(chats, samples, baseline)
    await backend.aclose()


async def one_round(api, bot, chats: int, thread_ids, kind: str) -> list[tuple[float, float]]:
    """`chats` users share a link at the same moment; (first visible, final) seconds each."""
    sent = []
    for n in range(chats):
        user = api.user(100 + n, f"巴打{n}")
        chat = api.private_chat(user) if kind == "private" else api.group(-1000 - n)
        text = f"https://lih.kg/{next(thread_ids)}" if kind == "private" else f"/lihkg https://lih.kg/{next(thread_ids)}"
        sent.append((api.send(chat, user, text), time.monotonic()))
    await bot.settled(300)
    return [latencies(api, message, start) for message, start in sent]


def latencies(api, message: dict, start: float) -> tuple[float, float]:
    chat_id = message["chat"]["id"]
    mine = [c for c in api.calls if c.method in VISIBLE_CALLS and c.status == 200 and _chat(c) == chat_id and c.at >= start]
    with_text = [c for c in mine if _shows_reply(c.params.get("text", ""))]
    if not with_text:
        raise RuntimeError(f"no reply text in chat {chat_id}: {[(c.method, c.params.get('text')) for c in mine]}")
    return with_text[0].done - start, mine[-1].done - start


def _chat(call) -> int:
    return int(call.params.get("chat_id") or 0)


def _shows_reply(html: str) -> bool:
    """True once the text holds generated words, not just the header or the placeholder."""
    body = html.split("\n\n", 1)[1] if "\n\n" in html else ""
    return bool(body.replace("…", "").replace("諗緊", "").strip())


async def direct_round(service, lihkg_server, chats, rounds, thread_ids, prompt_from_thread, lihkg) -> list[tuple[float, float]]:
    """The baseline: the same work straight through ReplyService, `chats` at once."""
    samples = []
    for _ in range(rounds):
        threads = [await lihkg.fetch_thread(next(thread_ids)) for _ in range(chats)]
        samples += await asyncio.gather(*(_direct(service, prompt_from_thread(t)) for t in threads))
    return samples


async def _direct(service, prompt) -> tuple[float, float]:
    start = time.monotonic()
    first = None

    async def on_partial(index: int, text: str) -> None:
        nonlocal first
        if first is None and text.strip():
            first = time.monotonic() - start

    await service.reply_to_prompt(prompt, on_partial=on_partial)
    total = time.monotonic() - start
    return (first if first is not None else total), total


def report(chats: int, samples: list[tuple[float, float]], baseline: list[tuple[float, float]]) -> None:
    def pct(values: list[float], q: float) -> float:
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] * 1000

    print(f"\n{chats} chat(s) at once, {len(samples)} links (baseline: ReplyService directly, {len(baseline)} replies)")
    for label, index in (("link -> first visible text", 0), ("link -> final reply", 1)):
        bot = [s[index] for s in samples]
        base = [s[index] for s in baseline]
        print(
            f"  {label:28s} p50 {pct(bot, .5):7.0f} ms  p95 {pct(bot, .95):7.0f} ms"
            f"   | baseline p50 {pct(base, .5):6.0f} ms  p95 {pct(base, .95):6.0f} ms"
            f"   | bot overhead p50 {pct(bot, .5) - pct(base, .5):+5.0f} ms"
        )
    print(f"  (mean final {statistics.mean(s[1] for s in samples) * 1000:.0f} ms)")


if __name__ == "__main__":
    main()

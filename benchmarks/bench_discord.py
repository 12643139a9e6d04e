"""Discord bot latency: a mention with a LIHKG link to the first visible reply text, and to
the final reply, through the real discord.py stack (gateway payloads into its parsers, real
HTTP to the fake REST API on loopback), the fake LIHKG server and the real tiny model; 1
channel, then 8 channels at once.

Side by side with its baseline: the same threads answered by `ReplyService` directly (no
Discord, no LIHKG), so the bot's own cost is the difference. Real time everywhere; the bot's
settings are the defaults (DISCORD_STREAM_HOLD=1, DISCORD_EDIT_INTERVAL=1.5).

    .venv/bin/python benchmarks/bench_discord.py [--model model/lilm-tiny] [--rounds 20] [--hold 0]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the fakes live in tests/
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_telegram import (  # the same baseline and table
    _shows_reply,
    direct_round,
    report,
)

from core.blas import preload_openblas

GUILD = 10
FIRST_CHANNEL = 11


def main() -> None:
    options = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    options.add_argument("--model", default=str(ROOT / "model" / "lilm-tiny"), help="an MLX model folder")
    options.add_argument("--rounds", type=int, default=20, help="rounds of 1 channel; 8 channels run rounds/4 rounds")
    options.add_argument("--hold", type=float, default=None, help="DISCORD_STREAM_HOLD (default: the setting's default, 1 s)")
    args = options.parse_args()
    blas = preload_openblas("auto") or "not found"
    print(f"OpenBLAS: {blas} | load average: {[round(x, 2) for x in os.getloadavg()]}")
    asyncio.run(run(args))


async def run(args) -> None:
    from core.backends.mlx_backend import MlxBackend
    from core.lihkg import LihkgClient
    from core.masking import Masker
    from core.reply import ReplyService, prompt_from_thread
    from core.settings import load_settings
    from tests.bots.harness import RealTime
    from tests.fakes import discord_payloads as payloads
    from tests.fakes import lihkg_server as fake_lihkg
    from tests.fakes.discord_api import FakeDiscord
    from tests.fakes.discord_harness import TOKEN, running_discord_bot
    from tests.fakes.lihkg_server import FakeLihkgServer
    from tests.fakes.lihkg_threads import make_thread

    # socketserver's listen backlog of 5 drops connects when 8 channels fetch at once (a fake-server artifact).
    fake_lihkg._QuietHTTPServer.request_queue_size = 128
    backend = await MlxBackend.load(args.model)
    defaults = load_settings(env_file=None, environ={})
    thread_ids = iter(range(5000, 10_000))  # a new thread per request: no LIHKG cache hits
    with FakeLihkgServer() as lihkg_server:
        for thread in (make_thread(n, f"今晚食咩好 {n}", cat_id=1, posts=["好肚餓，有冇推介？"]) for n in range(5000, 10_000)):
            lihkg_server.add_thread(thread)
        async with FakeDiscord(token=TOKEN) as fake, LihkgClient(lihkg_server.base_url, device_id="a" * 40, retries=0) as lihkg:
            service = ReplyService.from_settings(defaults, backend=backend, fetcher=lihkg)
            service.masker = Masker.default()
            env = {
                "DISCORD_RATE_LIMIT": "0",
                "DISCORD_STREAM_HOLD": str(defaults.discord_stream_hold if args.hold is None else args.hold),
                "DISCORD_EDIT_INTERVAL": str(defaults.discord_edit_interval),
            }  # else defaults
            async with running_discord_bot(fake, service, env=env, time=RealTime()) as bot:
                channels = [payloads.channel(FIRST_CHANNEL + n, GUILD, f"ch{n}") for n in range(8)]
                bot.server(GUILD, channels=channels)
                print(f"model {Path(args.model).name}, max_tokens {defaults.max_tokens}, edit interval {env['DISCORD_EDIT_INTERVAL']} s, hold {env['DISCORD_STREAM_HOLD']} s")
                for count, rounds in ((1, args.rounds), (8, max(2, args.rounds // 4))):
                    await one_round(bot, count, thread_ids, payloads)  # warm-up (kernels, connections)
                    samples = []
                    for _ in range(rounds):
                        samples += await one_round(bot, count, thread_ids, payloads)
                    baseline = await direct_round(service, lihkg_server, count, rounds, thread_ids, prompt_from_thread, lihkg)
                    report(count, samples, baseline)
    await backend.aclose()


async def one_round(bot, channels: int, thread_ids, payloads) -> list[tuple[float, float]]:
    """`channels` users mention the bot with a link at the same moment; (first visible, final) seconds each."""
    sent = []
    for n in range(channels):
        author = payloads.user(100 + n, f"巴打{n}")
        start = time.monotonic()
        message = bot.say(FIRST_CHANNEL + n, author, f"https://lih.kg/{next(thread_ids)}", guild_id=GUILD, mention=True)
        sent.append((message, start))
    await bot.settled(300)
    return [latencies(bot.fake, message, start) for message, start in sent]


def latencies(fake, message: dict, start: float) -> tuple[float, float]:
    """Seconds from the mention to the first call showing generated text, and to the last call."""
    replies = fake.replies_to(int(message["id"]))
    if not replies:
        raise RuntimeError(f"no reply to message {message['id']}")
    mine = f"/channels/{message['channel_id']}/messages"
    shown = [c for c in fake.calls if c.path.startswith(mine) and c.status == 200 and c.started >= start and c.method in ("POST", "PATCH")]
    with_text = [c for c in shown if _shows_reply(c.content or "")]
    if not with_text:
        raise RuntimeError(f"no reply text for message {message['id']}: {[c.content for c in shown]}")
    return with_text[0].ended - start, shown[-1].ended - start


if __name__ == "__main__":
    main()

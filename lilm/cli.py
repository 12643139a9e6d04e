"""`lilm`: the one command line. Subcommands are wired here; their work lives in core,
pipeline and bots.

Errors print one line on stderr and exit non-zero; LILM_DEBUG=1 (or --debug) shows the
traceback instead.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from core.blas import preload_openblas
from core.errors import LilmError
from core.settings import Settings, load_settings
from lilm import commands

EXIT_ERROR = 1
EXIT_UNEXPECTED = 2
EXIT_INTERRUPTED = 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lilm", description="LIHKG-style Cantonese replies to LIHKG threads.")
    parser.add_argument("--env-file", default=".env", help="settings file (default: .env)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks (same as LILM_DEBUG=1)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    reply = sub.add_parser("reply", help="reply to a LIHKG link (or a message containing one)")
    reply.add_argument("message", help='a LIHKG link or chat message, e.g. "https://lih.kg/3699748"')
    _add_generation_options(reply)
    reply.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    reply.set_defaults(run=commands.reply)

    demo = sub.add_parser("demo", help="reply to the bundled demo threads (no network needed)")
    _add_generation_options(demo)
    demo.set_defaults(run=commands.demo)

    chat = sub.add_parser("chat", help="interactive: paste a LIHKG link or type a post")
    _add_generation_options(chat)
    chat.set_defaults(run=commands.chat)

    mask = sub.add_parser("mask", help="mask sensitive words: standard input to standard output")
    mask.set_defaults(run=commands.mask)

    telegram = sub.add_parser("telegram", help="run the Telegram bot (needs TELEGRAM_BOT_TOKEN; see README)")
    telegram.set_defaults(run=_run_telegram)

    discord = sub.add_parser("discord", help="run the Discord bot (needs DISCORD_BOT_TOKEN; see README)")
    discord.add_argument("--dev-guild", type=int, default=None, help="publish slash commands to this server id only (instant)")
    discord.set_defaults(run=_run_discord)

    from pipeline.cli import commands as pipeline_commands

    for register in pipeline_commands():
        register(sub)
    return parser


def _add_generation_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--n", type=_positive_int, default=None, help="number of candidate replies (default LILM_CANDIDATES)")
    parser.add_argument("--seed", type=int, default=None, help="seed for reproducible replies")


def _run_telegram(args: argparse.Namespace, settings: Settings):
    # python-telegram-bot loads only when the bot runs.
    from bots.telegram_bot import run_telegram

    return run_telegram(args, settings)


def _run_discord(args: argparse.Namespace, settings: Settings):
    # discord.py loads only when the bot runs.
    from bots.discord_bot import run_discord

    return run_discord(args, settings)


def _positive_int(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 8:
        raise argparse.ArgumentTypeError("must be between 1 and 8")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = args.debug
    try:
        settings = load_settings(args.env_file)
        debug = debug or settings.debug
        _configure_logging(args.verbose or debug, settings)
        return _run(args, settings)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except LilmError as error:
        if debug:
            raise
        print(f"lilm: {error.user_message} ({error})", file=sys.stderr)
        return EXIT_ERROR
    except Exception as error:
        if debug:
            raise
        print(f"lilm: unexpected {type(error).__name__}: {error} (run with --debug for details)", file=sys.stderr)
        return EXIT_UNEXPECTED


def _run(args: argparse.Namespace, settings: Settings) -> int:
    preload_openblas(settings.blas)  # before anything imports mlx
    result = args.run(args, settings)
    if asyncio.iscoroutine(result):
        result = asyncio.run(result)
    return int(result or 0)


def _configure_logging(verbose: bool, settings: Settings) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # httpx logs every request URL at INFO; bot API URLs carry tokens.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)


if __name__ == "__main__":
    sys.exit(main())

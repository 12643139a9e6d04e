"""`lilm scrape`: the command line of the LIHKG scraper (also `python -m pipeline.scrape_cli`).

    lilm scrape --category 1,5 --latest --ids 3600000-3600500 --rpm 30

Exit codes: 0 done, 3 some threads failed (left for the next run), 1 an error (e.g. every IP
banned), 130 interrupted. Whatever was stored stays stored; running again resumes.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from core.device import load_device_id, new_device_id
from core.errors import ConfigError, LilmError
from core.settings import Settings, load_settings
from pipeline.scrape import ScrapeOptions, Scraper, ScrapeResult
from pipeline.scrape_limits import (
    ExitPool,
    PoliteFetcher,
    ScrapeClient,
    build_exits,
    load_proxies,
)
from pipeline.scrape_store import ScrapeStore

DB_FILE_NAME = "lihkg.sqlite3"
EXIT_ERROR = 1
EXIT_INCOMPLETE = 3
EXIT_INTERRUPTED = 130


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the `scrape` subcommand to a parent parser's subparsers."""
    parser = subparsers.add_parser(
        "scrape",
        help="scrape LIHKG threads (every page) into SQLite, politely and resumably",
        description="Discover threads from LIHKG lists and/or an id range and store every page of each in SQLite. "
        "Re-running fetches only new or changed threads.",
    )
    add_options(parser)
    parser.set_defaults(run=run)
    return parser


def add_options(parser: argparse.ArgumentParser) -> None:
    what = parser.add_argument_group("what to scrape (at least one)")
    what.add_argument("--category", dest="categories", type=_int_list, action="extend", default=[], metavar="IDS",
                      help="category ids to list, comma separated or repeated (e.g. 1,5 = 吹水台, 時事台)")
    what.add_argument("--latest", action="store_true", help="the latest threads list")
    what.add_argument("--hot", action="store_true", help="the hot threads list")
    what.add_argument("--ids", type=_id_range, default=None, metavar="FIRST-LAST",
                      help="every thread id in this range not stored yet (e.g. 3600000-3600500)")
    what.add_argument("--list-pages", type=int, default=10, metavar="N", help="pages (60 threads each) read per list")
    how = parser.add_argument_group("how")
    how.add_argument("--db", default=None, help="SQLite file (default LILM_SCRAPE_DB, else <state dir>/lihkg.sqlite3)")
    how.add_argument("--rpm", type=float, default=None, help="requests per minute per IP (default LIHKG_REQUESTS_PER_MINUTE)")
    how.add_argument("--concurrency", type=int, default=None, help="threads fetched at once (default LILM_SCRAPE_CONCURRENCY)")
    how.add_argument("--proxy-file", default=None, help="file of proxy URLs, one a line (default LIHKG_PROXY_FILE)")
    how.add_argument("--no-direct", action="store_true", help="use only the proxies, not the direct connection")
    how.add_argument("--max-attempts", type=int, default=None, help="tries per request (default LILM_SCRAPE_MAX_ATTEMPTS)")
    how.add_argument("--no-progress", action="store_true", help="no progress bar (it shows only on a terminal anyway)")


def scrape_db_path(settings: Settings, override: str | None = None) -> Path:
    """--db, else LILM_SCRAPE_DB, else `<state_dir>/lihkg.sqlite3`."""
    return Path(override or settings.scrape_db or Path(settings.state_dir) / DB_FILE_NAME)


def build_fetcher(
    settings: Settings, *, requests_per_minute: float, proxy_file: str, direct: bool, max_attempts: int
) -> PoliteFetcher:
    """The exits (direct and proxies), one LIHKG client each, behind the retrying fetcher."""
    proxies = load_proxies(settings.lihkg_proxies, proxy_file)
    exits = build_exits(proxies=proxies, direct=direct, direct_proxy=settings.lihkg_proxy or None,
                        requests_per_minute=requests_per_minute)
    clients = {}
    for exit_ in exits:
        # The direct exit keeps this install's device id; each proxy looks like its own browser.
        device_id = load_device_id(settings.state_dir) if exit_.label == "direct" else new_device_id()
        clients[exit_.label] = ScrapeClient(
            settings.lihkg_base_url, timeout=settings.lihkg_timeout, retries=0, proxy=exit_.proxy,
            device_id=device_id, cache_ttl=0,
        )
    return PoliteFetcher(ExitPool(exits), clients, max_attempts=max_attempts)


async def run_scrape(args: argparse.Namespace, settings: Settings) -> ScrapeResult:
    """Scrape as the parsed options say (settings fill what the options leave out)."""
    try:
        options = ScrapeOptions(
            categories=tuple(args.categories), latest=args.latest, hot=args.hot, id_range=args.ids,
            list_pages=args.list_pages,
            concurrency=args.concurrency if args.concurrency is not None else settings.scrape_concurrency,
            progress=not args.no_progress and sys.stderr.isatty(),
        )
    except ValueError as exc:
        raise ConfigError(f"lilm scrape: {exc}") from None
    fetcher = build_fetcher(
        settings,
        requests_per_minute=args.rpm if args.rpm is not None else settings.lihkg_requests_per_minute,
        proxy_file=args.proxy_file if args.proxy_file is not None else settings.lihkg_proxy_file,
        direct=settings.scrape_direct and not args.no_direct,
        max_attempts=args.max_attempts if args.max_attempts is not None else settings.scrape_max_attempts,
    )
    try:
        with ScrapeStore.open(scrape_db_path(settings, args.db)) as store:
            return await Scraper(store, fetcher, options).run()
    finally:
        for client in fetcher.clients.values():
            await client.aclose()


async def run(args: argparse.Namespace, settings: Settings) -> int:
    """The `lilm scrape` entry point: scrape, print a one-line summary, return the exit code."""
    result = await run_scrape(args, settings)
    print(result.summary())
    return EXIT_INCOMPLETE if result.failed else 0


def main(argv: list[str] | None = None) -> int:
    """`python -m pipeline.scrape_cli [options]`: the same as `lilm scrape [options]`."""
    parser = argparse.ArgumentParser(prog="python -m pipeline.scrape_cli", description="Scrape LIHKG into SQLite.")
    parser.add_argument("--env-file", default=".env", help="settings file (default: .env)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    add_options(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        settings = load_settings(args.env_file)
        return asyncio.run(run(args, settings))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except LilmError as error:
        print(f"lilm scrape: {error.user_message} ({error})", file=sys.stderr)
        return EXIT_ERROR


def _int_list(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected ids like 1,5, got {text!r}") from None


def _id_range(text: str) -> tuple[int, int]:
    first, sep, last = text.replace(":", "-").partition("-")
    try:
        bounds = (int(first), int(last) if sep else int(first))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected FIRST-LAST, got {text!r}") from None
    if not 1 <= bounds[0] <= bounds[1]:
        raise argparse.ArgumentTypeError(f"need 1 <= FIRST <= LAST, got {text!r}")
    return bounds


if __name__ == "__main__":
    sys.exit(main())

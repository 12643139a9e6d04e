"""The scraper against a fake LIHKG that enforces a per-IP limit, beside a naive scraper.

Run: .venv/bin/python benchmarks/bench_scrape.py [--rpm 600] [--duration 60] [--proxies 2] [--naive-seconds 15]

The fake LIHKG server (tests/fakes/) allows each IP `--rpm` requests a minute (a token bucket,
5 saved up), answers 429 with Retry-After beyond it and bans an IP for good (403) after 10 429s
within a minute. Loopback tagging proxies stand for `--proxies` more IPs. The corpus is sized
so that fetching all of it at the allowed rate takes about `--duration` seconds; a third of the
threads fit on one page, the rest run to 2-6 pages.

Ours: `lilm scrape` (pipeline/scrape.py) over the direct connection and every proxy, each held
to `--rpm`. Naive: a thread pool imitating the original LiLM scripts over the direct connection:
no pacing, no backoff (a failed request is sent again at once), and pages 2+ submitted without
their page argument with the error swallowed, so multi-page threads are lost whole.

Figures: share of the allowed request rate reached (goal >= 90%), IPs banned (goal 0), and the
share of the posts that pass the dataset criteria that ended up stored (goal 100%). The criteria
are the original project's (see ELIGIBLE_SQL) minus the sensitive-word and token-budget ones,
which judge text and do not depend on what was scraped.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sqlite3
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the fakes live in tests/

import httpx

from pipeline.scrape import ScrapeOptions, Scraper, parse_page_with_time, thread_records
from pipeline.scrape_limits import ExitPool, PoliteFetcher, ScrapeClient, build_exits
from pipeline.scrape_store import ScrapeStore
from tests.fakes.lihkg_server import FakeLihkgServer, RateLimitPolicy
from tests.fakes.lihkg_threads import FakeThread, make_corpus
from tests.fakes.tagging_proxy import TaggingProxy

GOAL_RATE_SHARE = 0.90
# A reply passes when: its thread's first reply is not by the author; it is not by the author;
# it quotes nothing; likes + dislikes >= 20; likes >= 2 x (dislikes + 1); and (in Python) it
# has no link or embed.
ELIGIBLE_SQL = """
WITH first_reply AS (
  SELECT p.thread_id, p.user_id FROM posts AS p
  JOIN (SELECT thread_id, MIN(msg_num) AS n FROM posts WHERE msg_num > 1 GROUP BY thread_id) AS f
    ON f.thread_id = p.thread_id AND f.n = p.msg_num)
SELECT p.thread_id, p.msg_num, p.msg FROM posts AS p JOIN threads AS t ON t.thread_id = p.thread_id
LEFT JOIN first_reply AS fr ON fr.thread_id = p.thread_id
WHERE p.msg_num > 1 AND p.status = 1 AND fr.user_id != t.user_id AND p.user_id != t.user_id
  AND p.quote_post_id = '' AND p.like_count + p.dislike_count >= 20 AND p.like_count >= 2 * (p.dislike_count + 1)
"""
LINK_OR_EMBED_RE = re.compile(r"<a\s|https?://|www\.|<iframe|<video|<img(?![^>]*hkgmoji)", re.IGNORECASE)
CAT_IDS = (1, 5, 6)
DEVICE = "0123456789abcdef0123456789abcdef01234567"


@dataclass
class Outcome:
    """One scraper's figures."""

    name: str
    ips: int
    seconds: float
    answered: int  # requests the server answered 200
    limited: int  # 429s
    forbidden: int  # 403s
    banned: list[str]
    first_ban_after: float | None
    threads: int
    eligible_stored: int
    eligible_total: int
    allowed_per_minute: float

    @property
    def rate_share(self) -> float:
        """Answered requests over the most a client pacing each IP to the limit could get in the
        same time: one at the start, then one per interval (the saved-up burst not counted)."""
        most = self.ips * (1 + self.allowed_per_minute * self.seconds / 60.0)
        return self.answered / most if self.seconds else 0.0

    @property
    def requests_per_minute(self) -> float:
        return (self.answered + self.limited + self.forbidden) * 60.0 / self.seconds if self.seconds else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rpm", type=float, default=600, help="requests a minute the server allows each IP")
    parser.add_argument("--duration", type=float, default=60, help="seconds the corpus takes at the allowed rate")
    parser.add_argument("--proxies", type=int, default=2, help="loopback proxies (IPs) besides the direct one")
    parser.add_argument("--our-rpm", type=float, default=None,
                        help="our per-IP setting (default --rpm; try 2x to see a misconfigured scraper adapt)")
    parser.add_argument("--naive-seconds", type=float, default=15, help="how long the naive scraper may run")
    parser.add_argument("--naive-workers", type=int, default=16)
    parser.add_argument("--retry-after", type=float, default=10, help="Retry-After the server sends with 429")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    ips = args.proxies + 1
    corpus = corpus_for(args.rpm * ips * args.duration / 60.0, seed=args.seed)
    pages = sum(t.total_page for t in corpus)
    print(f"corpus: {len(corpus)} threads, {pages} pages, {sum(len(t.posts) for t in corpus)} posts; "
          f"server allows {args.rpm:g} requests/min per IP; load average {[round(x, 2) for x in os.getloadavg()]}")
    policy = RateLimitPolicy(requests_per_minute=args.rpm, burst=5, retry_after=args.retry_after, ban_after=10)
    with tempfile.TemporaryDirectory() as workdir:
        eligible = eligible_posts(reference_db(corpus, Path(workdir) / "truth.sqlite3"))
        ours = run_ours(corpus, policy, args, Path(workdir) / "ours.sqlite3", eligible)
        naive = run_naive(corpus, policy, args, Path(workdir) / "naive.sqlite3", eligible)
    report([ours, naive])


def corpus_for(requests: float, *, seed: int) -> list[FakeThread]:
    """Threads whose pages (plus list pages) add up to about `requests`."""
    count = max(10, int(requests / 2.6))
    corpus = make_corpus(count, cat_ids=CAT_IDS, max_posts=150, seed=seed)
    while sum(t.total_page for t in corpus) + len(corpus) / 60 + 2 * len(CAT_IDS) > requests and len(corpus) > 10:
        corpus.pop()
    return corpus


def reference_db(corpus: list[FakeThread], path: Path) -> Path:
    """Every thread exactly as the server holds it, stored without HTTP: the ground truth."""
    with ScrapeStore.open(path) as store:
        for thread in corpus:
            pages = [parse_page_with_time(thread.page_payload(p)) for p in range(1, thread.total_page + 1)]
            store.save_thread(*thread_records(pages, fetched_at=0.0))
    return path


def eligible_posts(db: Path) -> set[tuple[int, int]]:
    """(thread_id, msg_num) of the replies that pass the dataset criteria."""
    with sqlite3.connect(db) as connection:
        rows = connection.execute(ELIGIBLE_SQL).fetchall()
    return {(thread_id, msg_num) for thread_id, msg_num, msg in rows if not LINK_OR_EMBED_RE.search(msg)}


def serve(corpus: list[FakeThread], policy: RateLimitPolicy) -> FakeLihkgServer:
    server = FakeLihkgServer().start()
    for thread in corpus:
        server.add_thread(thread)
    server.enforce_rate_limit(policy)
    return server


def outcome(name: str, server: FakeLihkgServer, db: Path, eligible: set[tuple[int, int]], *, ips: int,
            seconds: float, rpm: float) -> Outcome:
    stats = server.ip_stats()
    with sqlite3.connect(db) as connection:
        stored = set(connection.execute("SELECT thread_id, msg_num FROM posts").fetchall())
        threads = connection.execute("SELECT COUNT(*) FROM threads").fetchone()[0]
    bans = [s.banned_at - s.first_request_at for s in stats.values() if s.banned]
    return Outcome(
        name, ips, seconds,
        answered=sum(s.ok for s in stats.values()), limited=sum(s.limited for s in stats.values()),
        forbidden=sum(s.forbidden for s in stats.values()), banned=[ip for ip, s in stats.items() if s.banned],
        first_ban_after=min(bans) if bans else None, threads=threads,
        eligible_stored=len(eligible & stored), eligible_total=len(eligible), allowed_per_minute=rpm,
    )


# ---------------------------------------------------------------------------------- ours


def run_ours(corpus, policy, args, db: Path, eligible) -> Outcome:
    server = serve(corpus, policy)
    proxies = [TaggingProxy(f"proxy-{n}").start() for n in range(1, args.proxies + 1)]
    try:
        our_rpm = args.our_rpm or args.rpm
        seconds = asyncio.run(scrape_ours(server, [p.url for p in proxies], our_rpm, db, len(corpus)))
        return outcome("lilm scrape", server, db, eligible, ips=len(proxies) + 1, seconds=seconds, rpm=args.rpm)
    finally:
        for proxy in proxies:
            proxy.stop()
        server.stop()


async def scrape_ours(server: FakeLihkgServer, proxy_urls: list[str], rpm: float, db: Path, threads: int) -> float:
    exits = build_exits(proxies=proxy_urls, direct=True, direct_proxy=None, requests_per_minute=rpm)
    clients = {e.label: ScrapeClient(server.base_url, retries=0, proxy=e.proxy, device_id=DEVICE, cache_ttl=0)
               for e in exits}
    fetcher = PoliteFetcher(ExitPool(exits), clients, max_attempts=5)
    options = ScrapeOptions(categories=CAT_IDS, list_pages=threads // 60 + 2, concurrency=4 * len(exits),
                            progress=sys.stderr.isatty())
    try:
        with ScrapeStore.open(db) as store:
            result = await Scraper(store, fetcher, options).run()
    finally:
        for client in clients.values():
            await client.aclose()
    print(f"ours: {result.summary()}")
    return result.seconds


# ---------------------------------------------------------------------------------- naive


def run_naive(corpus, policy, args, db: Path, eligible) -> Outcome:
    """The original scripts' way: a thread per id, retry at once on any failure, pages 2+ lost."""
    server = serve(corpus, policy)
    deadline = time.monotonic() + args.naive_seconds
    local = threading.local()
    counts: Counter[str] = Counter()
    saved = []
    lock = threading.Lock()

    def fetch_page(thread_id: int, page: int) -> httpx.Response:
        return local.client.get(f"/api_v2/thread/{thread_id}/page/{page}")  # no order: the original's bug

    def scrape_id(thread_id: int) -> None:
        if not hasattr(local, "client"):
            local.client = httpx.Client(base_url=server.base_url, trust_env=False, timeout=10)
        while time.monotonic() < deadline:  # the original: `while True`
            try:
                answer = fetch_page(thread_id, 1).json()
            except (httpx.HTTPError, ValueError):
                continue  # no backoff
            if answer.get("success") == 1:
                break
        else:
            return
        first = parse_page_with_time(answer)
        try:
            for page in range(2, first[0].total_page + 1):
                fetch_page(thread_id)  # type: ignore[call-arg]  # the original forgot the page
        except TypeError:
            return  # ...and swallowed the error: the whole thread is lost
        with lock:
            saved.append(thread_records([first], fetched_at=time.time()))
            counts["saved"] += 1

    started = time.monotonic()
    try:
        with ThreadPoolExecutor(args.naive_workers) as pool:
            list(pool.map(scrape_id, [t.thread_id for t in corpus]))
        seconds = time.monotonic() - started
        with ScrapeStore.open(db) as store:
            for thread, posts in saved:
                store.save_thread(thread, posts)
        return outcome("naive thread pool", server, db, eligible, ips=1, seconds=seconds, rpm=args.rpm)
    finally:
        server.stop()


# ---------------------------------------------------------------------------------- report


def report(outcomes: list[Outcome]) -> None:
    rows = [
        ("IPs", lambda o: str(o.ips)),
        ("allowed requests/min (all IPs)", lambda o: f"{o.allowed_per_minute * o.ips:,.0f}"),
        ("requests/min sent", lambda o: f"{o.requests_per_minute:,.0f}"),
        ("answered 200 per min", lambda o: f"{o.answered * 60 / o.seconds:,.0f}" if o.seconds else "-"),
        ("share of allowed rate reached", lambda o: f"{o.rate_share:.1%}"),
        ("429 answers", lambda o: f"{o.limited:,}"),
        ("403 answers", lambda o: f"{o.forbidden:,}"),
        ("IPs banned", lambda o: f"{len(o.banned)}" + (f" (first after {o.first_ban_after:.2f} s)" if o.banned else "")),
        ("threads stored", lambda o: f"{o.threads:,}"),
        ("eligible posts stored", lambda o: f"{o.eligible_stored:,} / {o.eligible_total:,} "
                                            f"({o.eligible_stored / max(1, o.eligible_total):.1%})"),
        ("wall time", lambda o: f"{o.seconds:.1f} s"),
    ]
    print()
    print("| | " + " | ".join(o.name for o in outcomes) + " |")
    print("| --- |" + " --- |" * len(outcomes))
    for label, cell in rows:
        print(f"| {label} | " + " | ".join(cell(o) for o in outcomes) + " |")
    ours = outcomes[0]
    ok = ours.rate_share >= GOAL_RATE_SHARE and not ours.banned and ours.eligible_stored == ours.eligible_total
    print(f"\ngoals (>= {GOAL_RATE_SHARE:.0%} of the allowed rate, 0 bans, 100% of eligible posts): "
          f"{'met' if ok else 'NOT met'}")


if __name__ == "__main__":
    main()

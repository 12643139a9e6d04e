"""`lilm scrape`: discover LIHKG threads, fetch every page of each, store them in SQLite.

Discovery reads thread lists (`/thread/category`, `/thread/latest`, `/thread/hot`, page by page
until LIHKG's `error_code: 100` past the end) and/or an id range. A listed thread is fetched
only when it is new or its `no_of_reply`/`last_reply_time` changed since it was stored; an id in
a range only when it is neither stored nor known gone. Each thread is fetched page by page
(`?order=reply_time`, until `total_page`) and written with all its posts in one transaction
(pipeline/scrape_store.py), so a killed run leaves whole threads and the next run resumes.

    result = await scrape(store, fetcher, ScrapeOptions(categories=(1, 5), id_range=(100, 200)))
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from tqdm import tqdm

from core.errors import LihkgBadResponse, LihkgBlocked, LihkgError, ThreadNotFound
from core.lihkg_parse import coerce_int, parse_thread_page, raise_for_error_envelope
from core.thread import Thread
from pipeline.scrape_limits import PoliteFetcher
from pipeline.scrape_store import PostRecord, ScrapeStore, ThreadRecord

log = logging.getLogger(__name__)

LIST_SIZE = 60  # threads per list page, as the LIHKG web app asks
PAGE_ORDER = "reply_time"
LIST_SOURCES = ("category", "latest", "hot")


@dataclass(frozen=True)
class ScrapeOptions:
    """What to scrape. `list_pages` bounds how deep each list is read."""

    categories: tuple[int, ...] = ()
    latest: bool = False
    hot: bool = False
    id_range: tuple[int, int] | None = None
    list_pages: int = 10
    concurrency: int = 8
    progress: bool = False

    def __post_init__(self) -> None:
        if self.concurrency < 1 or self.list_pages < 1:
            raise ValueError(f"need concurrency >= 1 and list_pages >= 1, got {self.concurrency}, {self.list_pages}")
        if self.id_range is not None and not 1 <= self.id_range[0] <= self.id_range[1]:
            raise ValueError(f"id range must be 1 <= first <= last, got {self.id_range}")
        if not (self.categories or self.latest or self.hot or self.id_range):
            raise ValueError("nothing to scrape: give categories, latest, hot or an id range")


@dataclass
class ScrapeResult:
    """What one run did. `failed` threads are left for the next run."""

    saved: int = 0
    posts: int = 0
    unchanged: int = 0
    gone: int = 0
    failed: int = 0
    list_pages: int = 0
    pages: int = 0
    requests: int = 0
    rate_limited: int = 0
    retired: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def requests_per_minute(self) -> float:
        return self.requests * 60.0 / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        retired = f", retired IPs: {', '.join(self.retired)}" if self.retired else ""
        return (
            f"saved {self.saved} threads ({self.posts} posts), {self.unchanged} unchanged, {self.gone} gone, "
            f"{self.failed} failed (left for the next run); {self.requests} requests in {self.seconds:.1f} s "
            f"({self.requests_per_minute:.0f}/min), {self.rate_limited} answered 429{retired}"
        )


@dataclass(frozen=True)
class ListedThread:
    """A thread as a list shows it: enough to tell whether the stored copy is current."""

    thread_id: int
    no_of_reply: int
    last_reply_time: int


def parse_list_page(payload: Any) -> list[ListedThread]:
    """The threads of one list page; [] past the end (LIHKG's `error_code: 100`)."""
    if not isinstance(payload, dict):
        raise LihkgBadResponse(f"LIHKG list: expected a JSON object, got {type(payload).__name__}")
    try:
        raise_for_error_envelope(payload)
    except ThreadNotFound:
        return []
    response = payload.get("response")
    items = response.get("items") if isinstance(response, dict) else None
    if not isinstance(items, list):
        raise LihkgBadResponse("LIHKG list answer lacks response.items")
    listed = []
    for item in items:
        if not isinstance(item, dict):
            raise LihkgBadResponse(f"LIHKG list item: expected an object, got {type(item).__name__}")
        listed.append(
            ListedThread(
                thread_id=coerce_int(item.get("thread_id"), field="thread_id"),
                no_of_reply=coerce_int(item.get("no_of_reply"), field="no_of_reply", default=0),
                last_reply_time=coerce_int(item.get("last_reply_time"), field="last_reply_time", default=0),
            )
        )
    return listed


def parse_page_with_time(payload: Any) -> tuple[Thread, int]:
    """A thread page and its `last_reply_time` (which `Thread` does not carry)."""
    thread = parse_thread_page(payload)
    try:
        last_reply_time = coerce_int(payload["response"].get("last_reply_time"), field="last_reply_time", default=0)
    except LihkgBadResponse:
        last_reply_time = 0
    return thread, last_reply_time


def thread_records(pages: list[tuple[Thread, int]], *, fetched_at: float) -> tuple[ThreadRecord, list[PostRecord]]:
    """Rows for a fully fetched thread: the thread's fields from its last page (the freshest)."""
    thread, last_reply_time = pages[-1]
    posts = {p.post_id: p for page, _ in pages for p in page.posts}
    post_rows = [
        PostRecord(
            post_id=p.post_id,
            thread_id=thread.thread_id,
            msg_num=p.msg_num,
            user_id=p.user_id,
            user_nickname=p.user_nickname,
            like_count=p.like_count,
            dislike_count=p.dislike_count,
            quote_post_id=p.quote_post_id,
            msg=p.msg,
            reply_time=p.reply_time,
            status=p.status,
        )
        for p in sorted(posts.values(), key=lambda p: p.msg_num)
    ]
    record = ThreadRecord(
        thread_id=thread.thread_id,
        cat_id=thread.cat_id,
        category=thread.category,
        title=thread.title,
        user_id=thread.user_id,
        user_nickname=thread.user_nickname,
        no_of_reply=thread.no_of_reply,
        like_count=thread.like_count,
        dislike_count=thread.dislike_count,
        total_page=thread.total_page,
        create_time=thread.create_time,
        last_reply_time=last_reply_time,
        fetched_at=fetched_at,
    )
    return record, post_rows


class Scraper:
    """One run: a discovery task feeding `concurrency` thread workers through a bounded queue."""

    def __init__(
        self,
        store: ScrapeStore,
        fetcher: PoliteFetcher,
        options: ScrapeOptions,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.fetcher = fetcher
        self.options = options
        self.result = ScrapeResult()
        self._clock = clock
        self._base_url = next(iter(fetcher.clients.values())).base_url
        self._bar: tqdm | None = None

    async def run(self) -> ScrapeResult:
        started = self._clock()
        queue: asyncio.Queue[int | None] = asyncio.Queue(maxsize=self.options.concurrency * 2)
        self._bar = tqdm(
            total=0, unit="thread", desc="scrape", file=sys.stderr, disable=not self.options.progress, dynamic_ncols=True
        )
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._discover(queue))
                for _ in range(self.options.concurrency):
                    group.create_task(self._work(queue))
        except BaseExceptionGroup as group_error:
            raise _first_lihkg_error(group_error) from None
        finally:
            self._bar.close()
            self._finish(started)
        return self.result

    def _finish(self, started: float) -> None:
        result = self.result
        result.seconds = self._clock() - started
        result.requests = self.fetcher.stats.requests
        result.rate_limited = self.fetcher.stats.rate_limited
        result.retired = [e.label for e in self.fetcher.pool.exits if e.retired]

    # -- discovery

    async def _discover(self, queue: asyncio.Queue[int | None]) -> None:
        seen: set[int] = set()
        async for listed in self._listed_threads():
            if listed.thread_id in seen:
                continue
            seen.add(listed.thread_id)
            stored = self.store.stored_state(listed.thread_id)
            if stored and stored.is_current(no_of_reply=listed.no_of_reply, last_reply_time=listed.last_reply_time):
                self.result.unchanged += 1
                continue
            await self._enqueue(queue, listed.thread_id)
        if self.options.id_range is not None:
            for thread_id in self.store.missing_ids(*self.options.id_range):
                if thread_id not in seen:
                    seen.add(thread_id)
                    await self._enqueue(queue, thread_id)
        # One stop sign per worker. Not in a `finally`: on failure the task group cancels the
        # workers, and waiting here for room in the queue would then never end.
        for _ in range(self.options.concurrency):
            await queue.put(None)

    async def _enqueue(self, queue: asyncio.Queue[int | None], thread_id: int) -> None:
        self._bar.total += 1
        self._bar.refresh()
        await queue.put(thread_id)

    async def _listed_threads(self) -> AsyncIterator[ListedThread]:
        sources = [("category", {"cat_id": str(c), "type": "now"}) for c in self.options.categories]
        if self.options.latest:
            sources.append(("latest", {"cat_id": "1"}))
        if self.options.hot:
            sources.append(("hot", {"cat_id": "2", "type": "now"}))
        for kind, params in sources:
            for page in range(1, self.options.list_pages + 1):
                query = {**params, "page": str(page), "count": str(LIST_SIZE)}
                try:
                    listed = await self.fetcher.fetch(
                        f"/api_v2/thread/{kind}", query, referer=f"{self._base_url}/category/{params['cat_id']}",
                        parse=parse_list_page,
                    )
                except LihkgBlocked:
                    raise
                except LihkgError as exc:
                    log.warning("list %s %s page %d failed, skipping the rest of it: %s", kind, params, page, exc)
                    break
                self.result.list_pages += 1
                if not listed:
                    break
                for item in listed:
                    yield item

    # -- thread workers

    async def _work(self, queue: asyncio.Queue[int | None]) -> None:
        while (thread_id := await queue.get()) is not None:
            try:
                await self._scrape_thread(thread_id)
            except ThreadNotFound:
                self.store.mark_gone(thread_id)
                self.result.gone += 1
            except LihkgBlocked:
                raise  # every IP is banned: nothing more can be fetched
            except LihkgError as exc:
                self.result.failed += 1
                log.warning("thread %d failed, left for the next run: %s", thread_id, exc)
            self._bar.update(1)
            self._bar.set_postfix(
                posts=self.result.posts, req=self.fetcher.stats.requests, r429=self.fetcher.stats.rate_limited,
                ips=len(self.fetcher.pool.active), failed=self.result.failed, refresh=False,
            )

    async def _scrape_thread(self, thread_id: int) -> None:
        pages: list[tuple[Thread, int]] = []
        page, total_page = 1, 1
        referer = f"{self._base_url}/thread/{thread_id}/page/1"
        while page <= total_page:
            try:
                fetched = await self.fetcher.fetch(
                    f"/api_v2/thread/{thread_id}/page/{page}", {"order": PAGE_ORDER},
                    referer=referer, parse=parse_page_with_time,
                )
            except ThreadNotFound:
                if page == 1:
                    raise
                break  # the thread shrank (posts removed) since page 1 said how many pages
            pages.append(fetched)
            self.result.pages += 1
            total_page = fetched[0].total_page  # the latest page knows best: threads grow
            page += 1
        thread, posts = thread_records(pages, fetched_at=time.time())
        self.store.save_thread(thread, posts)
        self.result.saved += 1
        self.result.posts += len(posts)


def _first_lihkg_error(group_error: BaseExceptionGroup) -> BaseException:
    """The error to report from a failed task group: a LihkgError first, else the first one."""
    flat: list[BaseException] = []
    stack: list[BaseException] = [group_error]
    while stack:
        error = stack.pop(0)
        if isinstance(error, BaseExceptionGroup):
            stack.extend(error.exceptions)
        else:
            flat.append(error)
    return next((e for e in flat if isinstance(e, LihkgError)), flat[0])


async def scrape(store: ScrapeStore, fetcher: PoliteFetcher, options: ScrapeOptions) -> ScrapeResult:
    """Run one scrape; see the module docstring."""
    return await Scraper(store, fetcher, options).run()

"""The scrape database: SQLite in WAL mode, one transaction per completed thread.

`threads` and `posts` are the contract with `lilm dataset` (fixed columns, below). A thread row
and all its posts are written in one transaction, only once every page was fetched, so a
process killed at any moment leaves whole threads or none. `scrape_gone` is the scraper's own:
ids LIHKG answered "no such thread" for, so an id-range scrape does not ask again.

    store = ScrapeStore.open("lihkg.sqlite3")
    store.save_thread(record, posts)
    store.close()
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Iterator
from dataclasses import astuple, dataclass, fields
from pathlib import Path
from typing import Self

SCHEMA = """
CREATE TABLE IF NOT EXISTS threads (
  thread_id INTEGER PRIMARY KEY,
  cat_id INTEGER NOT NULL,
  category TEXT NOT NULL,
  title TEXT NOT NULL,
  user_id TEXT NOT NULL,
  user_nickname TEXT NOT NULL DEFAULT '',
  no_of_reply INTEGER NOT NULL,
  like_count INTEGER NOT NULL DEFAULT 0,
  dislike_count INTEGER NOT NULL DEFAULT 0,
  total_page INTEGER NOT NULL,
  create_time INTEGER NOT NULL DEFAULT 0,
  last_reply_time INTEGER NOT NULL DEFAULT 0,
  fetched_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS posts (
  post_id TEXT PRIMARY KEY,
  thread_id INTEGER NOT NULL REFERENCES threads(thread_id),
  msg_num INTEGER NOT NULL,
  user_id TEXT NOT NULL,
  user_nickname TEXT NOT NULL DEFAULT '',
  like_count INTEGER NOT NULL DEFAULT 0,
  dislike_count INTEGER NOT NULL DEFAULT 0,
  quote_post_id TEXT NOT NULL DEFAULT '',
  msg TEXT NOT NULL,
  reply_time INTEGER NOT NULL DEFAULT 0,
  status INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX IF NOT EXISTS posts_by_thread ON posts(thread_id, msg_num);
CREATE TABLE IF NOT EXISTS scrape_gone (
  thread_id INTEGER PRIMARY KEY,
  checked_at REAL NOT NULL
);
"""


@dataclass(frozen=True)
class ThreadRecord:
    """One `threads` row (columns in table order)."""

    thread_id: int
    cat_id: int
    category: str
    title: str
    user_id: str
    user_nickname: str
    no_of_reply: int
    like_count: int
    dislike_count: int
    total_page: int
    create_time: int
    last_reply_time: int
    fetched_at: float


@dataclass(frozen=True)
class PostRecord:
    """One `posts` row (columns in table order)."""

    post_id: str
    thread_id: int
    msg_num: int
    user_id: str
    user_nickname: str
    like_count: int
    dislike_count: int
    quote_post_id: str
    msg: str
    reply_time: int
    status: int


@dataclass(frozen=True)
class StoredState:
    """What a thread list is compared with to decide whether a stored thread changed."""

    no_of_reply: int
    last_reply_time: int

    def is_current(self, *, no_of_reply: int, last_reply_time: int) -> bool:
        """True when a list entry shows nothing new (a 0 time means the list did not say)."""
        same_time = last_reply_time == 0 or last_reply_time == self.last_reply_time
        return no_of_reply == self.no_of_reply and same_time


def _insert_sql(table: str, record_type: type) -> str:
    names = [f.name for f in fields(record_type)]
    return f"INSERT OR REPLACE INTO {table} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})"


_INSERT_THREAD = _insert_sql("threads", ThreadRecord)
_INSERT_POST = _insert_sql("posts", PostRecord)


class ScrapeStore:
    """The database behind one scrape. Not shared across threads: use it from one event loop."""

    def __init__(self, connection: sqlite3.Connection, path: str) -> None:
        self._db = connection
        self.path = path

    @classmethod
    def open(cls, path: str | Path) -> ScrapeStore:
        """Open (creating it and its folder if needed) a scrape database in WAL mode."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        # Autocommit mode: transactions are explicit BEGIN/COMMIT pairs below.
        connection = sqlite3.connect(path, isolation_level=None, timeout=30.0)
        connection.execute("PRAGMA journal_mode=WAL")
        # In WAL mode NORMAL keeps every committed transaction across a process crash (kill -9);
        # only an OS crash or power cut can lose the last ones.
        connection.execute("PRAGMA synchronous=NORMAL")
        connection.execute("PRAGMA foreign_keys=ON")
        connection.executescript(SCHEMA)
        return cls(connection, str(path))

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- writes

    def save_thread(self, thread: ThreadRecord, posts: Iterable[PostRecord]) -> None:
        """Replace a thread and all its posts in one transaction."""
        rows = [astuple(p) for p in posts]
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute("DELETE FROM posts WHERE thread_id = ?", (thread.thread_id,))
            db.execute(_INSERT_THREAD, astuple(thread))
            db.executemany(_INSERT_POST, rows)
            db.execute("DELETE FROM scrape_gone WHERE thread_id = ?", (thread.thread_id,))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def mark_gone(self, thread_id: int) -> None:
        """Remember that LIHKG has no such thread (a stored copy, if any, is kept)."""
        self._db.execute(
            "INSERT OR REPLACE INTO scrape_gone (thread_id, checked_at) VALUES (?, ?)", (thread_id, time.time())
        )

    # -- reads

    def stored_state(self, thread_id: int) -> StoredState | None:
        row = self._db.execute(
            "SELECT no_of_reply, last_reply_time FROM threads WHERE thread_id = ?", (thread_id,)
        ).fetchone()
        return StoredState(*row) if row else None

    def missing_ids(self, first: int, last: int) -> Iterator[int]:
        """Ids in first..last (inclusive) neither stored nor known gone, ascending."""
        known = {
            row[0]
            for table in ("threads", "scrape_gone")
            for row in self._db.execute(f"SELECT thread_id FROM {table} WHERE thread_id BETWEEN ? AND ?", (first, last))
        }
        return (thread_id for thread_id in range(first, last + 1) if thread_id not in known)

    def counts(self) -> tuple[int, int]:
        """(threads, posts) stored."""
        threads = self._db.execute("SELECT COUNT(*) FROM threads").fetchone()[0]
        posts = self._db.execute("SELECT COUNT(*) FROM posts").fetchone()[0]
        return threads, posts

    def post_ids(self) -> set[str]:
        return {row[0] for row in self._db.execute("SELECT post_id FROM posts")}

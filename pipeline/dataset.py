"""`lilm dataset`: the scrape database -> mlx-lm JSONL (train/valid/test) + stats.json.

One streaming pass, thread by thread, in thread order:

    SQLite (numeric criteria, candidates only) -> link/embed check on the reply HTML
    -> HTML to text -> empty / sensitive word -> duplicate -> core.prompt.build_messages
    -> exact token count of the whole chat (batched) -> the thread's split file

A second read-only connection counts the SQL-side drops in a background thread meanwhile.
A chat is kept when `build_messages` fits it (it cuts a long first post by tokens, as
inference does, and refuses when even an empty post leaves no room) and its exact count,
chat template included, is within the budget; both count as `over_token_budget`.

Memory holds a batch of candidate replies, the duplicate hashes and a bounded token-count
cache, whatever the size of the database. Files are written under temporary names and
renamed at the end, so an interrupted build never leaves a dataset that looks complete.

    result = build_dataset("lihkg.sqlite3", "data/lihkg", model_dir="model/lilm-tiny")
    print(result.stats.table())
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from itertools import groupby
from operator import itemgetter
from pathlib import Path

from core.errors import ConfigError
from core.masking import Masker
from core.prompt import SYSTEM_MESSAGE, build_messages, format_user_message
from core.settings import DEFAULT_MODEL_DIR
from pipeline import dataset_filters as criteria_names
from pipeline.dataset_filters import (
    CANDIDATE,
    DROP_REASONS,
    FIRST_POST_SQL,
    FIRST_REPLY_BY_AUTHOR_SQL,
    FLAGGED_TABLE,
    SQL_REASONS,
    DatasetCriteria,
    candidates_sql,
    normalized_reply,
    reason_counts_sql,
    sensitive_flags,
    sql_parameters,
)
from pipeline.dataset_html import has_link_or_embed, post_text, prefix_at_line_break
from pipeline.dataset_split import SPLITS, DuplicateIndex, SplitRatios, split_of_thread
from pipeline.dataset_tokens import ChatTokenCounter

FORMATS = ("chat", "completions")
STATS_FILE = "stats.json"
REQUIRED_COLUMNS = {  # the scrape contract's columns this builder reads
    "threads": {"thread_id", "category", "title", "user_id"},
    "posts": {"thread_id", "msg_num", "user_id", "like_count", "dislike_count", "quote_post_id", "msg", "status"},
}
FETCH_ROWS = 2000  # rows per SQLite fetch
FIRST_POST_HTML_CHARS_PER_TOKEN = 4  # HTML read of a long first post: this many characters per budget token
TOKEN_BATCH_ROWS = 512  # replies gathered (over threads) before one batched token stage


@dataclass(frozen=True)
class DatasetOptions:
    """Everything that shapes the dataset besides its input and output paths."""

    criteria: DatasetCriteria = field(default_factory=DatasetCriteria)
    ratios: SplitRatios = field(default_factory=SplitRatios)
    seed: int = 0
    output_format: str = "chat"  # chat: {"messages": [...]}; completions: {"prompt", "completion"}
    system: str = SYSTEM_MESSAGE

    def __post_init__(self) -> None:
        if self.output_format not in FORMATS:
            raise ValueError(f"output_format must be one of {FORMATS}, got {self.output_format!r}")


@dataclass
class DatasetStats:
    """What went in, what came out, and how many replies each criterion dropped."""

    threads: int = 0
    replies: int = 0
    dropped: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DROP_REASONS, 0))
    rows: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SPLITS, 0))
    threads_used: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SPLITS, 0))
    seconds: float = 0.0

    @property
    def kept(self) -> int:
        return sum(self.rows.values())

    def to_json(self) -> dict:
        return {**asdict(self), "kept": self.kept}

    def table(self) -> str:
        """A plain-text table for the terminal."""
        lines = [f"{'threads in database':<28}{self.threads:>10,}", f"{'replies considered':<28}{self.replies:>10,}"]
        lines.append("dropped by criterion (first one failed):")
        lines += [f"  {reason:<26}{count:>10,}" for reason, count in self.dropped.items()]
        lines.append(f"{'rows kept':<28}{self.kept:>10,}")
        for split in SPLITS:
            lines.append(f"  {split:<26}{self.rows[split]:>10,}  ({self.threads_used[split]:,} threads)")
        lines.append(f"{'seconds':<28}{self.seconds:>10.1f}")
        return "\n".join(lines)


@dataclass(frozen=True)
class DatasetResult:
    out_dir: Path
    files: dict[str, Path]
    stats: DatasetStats


def build_dataset(
    db_path: str | Path,
    out_dir: str | Path,
    *,
    model_dir: str | Path = DEFAULT_MODEL_DIR,
    masker: Masker | None = None,
    options: DatasetOptions | None = None,
) -> DatasetResult:
    """Build `train/valid/test.jsonl` and `stats.json` in `out_dir` from a scrape database.

    `masker` holds the sensitive words (default: the bundled list); `model_dir` gives the
    tokenizer and chat template the token budget is measured with.
    """
    started = time.perf_counter()
    options = options or DatasetOptions()
    db_path, out_dir = Path(db_path), Path(out_dir)
    if not db_path.is_file():
        raise ConfigError(f"scrape database not found: {db_path} (run `lilm scrape` first or pass --db)")
    counter = ChatTokenCounter.from_model_dir(model_dir, limit=options.criteria.max_tokens)
    if masker is None and options.criteria.drop_sensitive:
        masker = Masker.default()
    out_dir.mkdir(parents=True, exist_ok=True)
    stats = DatasetStats()
    files = {split: out_dir / f"{split}.jsonl" for split in SPLITS}
    # The SQL-side drop counts scan the posts once more: on their own connection and thread
    # (SQLite releases the GIL), alongside the main pass.
    _check_schema(db_path)
    with ThreadPoolExecutor(max_workers=1) as background:
        sql_drops = background.submit(_sql_drop_counts, db_path, options.criteria)
        connection = _connect(db_path, options.criteria)
        try:
            writers = {split: open(_partial(path), "w", encoding="utf-8") for split, path in files.items()}  # noqa: SIM115
            try:
                _stream_rows(connection, _ThreadRows(counter=counter, masker=masker, options=options, stats=stats), writers, stats)
            finally:
                for writer in writers.values():
                    writer.close()
        except BaseException:
            for path in files.values():
                _partial(path).unlink(missing_ok=True)
            raise
        finally:
            connection.close()
        stats.threads, stats.replies, sql_dropped = sql_drops.result()
    for reason, count in sql_dropped.items():
        stats.dropped[reason] += count
    for path in files.values():
        _partial(path).replace(path)
    stats.seconds = time.perf_counter() - started
    # The configuration beside the artifact, as mlx-lm keeps adapter_config.json beside adapters.
    config = {"db": str(db_path), "model": str(model_dir), **asdict(options)}
    saved = {**stats.to_json(), "config": config}
    (out_dir / STATS_FILE).write_text(json.dumps(saved, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return DatasetResult(out_dir=out_dir, files=files, stats=stats)


def _stream_rows(connection: sqlite3.Connection, builder: _ThreadRows, writers: dict, stats: DatasetStats) -> None:
    """The main pass: candidate threads in order, token stage in batches, rows to their split."""
    pending: list[_Thread] = []
    for thread_id, category, title, replies in _candidate_threads(connection, builder.criteria):
        first_post = connection.execute(FIRST_POST_SQL, (thread_id,)).fetchone()
        thread = builder.prepare(thread_id, category, title, first_post[0] if first_post else "", replies)
        if thread is not None:
            pending.append(thread)
        if sum(len(t.replies) for t in pending) >= TOKEN_BATCH_ROWS:
            _write(builder.finish(pending), writers, stats)
            pending = []
    _write(builder.finish(pending), writers, stats)


def _partial(path: Path) -> Path:
    return path.with_name(path.name + ".partial")


def _check_schema(db_path: Path) -> None:
    """Refuse, with a clear error, a file that is not a scrape database."""
    try:
        connection = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
        try:
            for table, needed in REQUIRED_COLUMNS.items():
                columns = {row[1] for row in connection.execute(f"PRAGMA table_info({table})")}
                if missing := needed - columns:
                    raise ConfigError(f"{db_path} is not a scrape database: table {table} lacks {', '.join(sorted(missing))}")
        finally:
            connection.close()
    except sqlite3.DatabaseError as error:
        raise ConfigError(f"cannot read scrape database {db_path}: {error}") from None


def _connect(db_path: Path, criteria: DatasetCriteria) -> sqlite3.Connection:
    """A read-only connection holding FLAGGED_TABLE: the threads the thread criterion drops."""
    connection = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, check_same_thread=False)
    connection.execute(f"CREATE TABLE {FLAGGED_TABLE} (thread_id INTEGER PRIMARY KEY)")
    if criteria.first_reply_not_by_author:
        connection.execute(f"INSERT INTO {FLAGGED_TABLE} {FIRST_REPLY_BY_AUTHOR_SQL}")
    return connection


def _sql_drop_counts(db_path: Path, criteria: DatasetCriteria) -> tuple[int, int, dict[str, int]]:
    """(threads, replies, drops by the SQL-side criteria), on a connection of its own."""
    connection = _connect(db_path, criteria)
    try:
        threads = connection.execute("SELECT COUNT(*) FROM threads").fetchone()[0]
        replies, dropped = 0, dict.fromkeys(SQL_REASONS, 0)
        parameters = sql_parameters(criteria)
        for reason, count in connection.execute(reason_counts_sql(criteria), parameters):
            replies += count
            if reason != CANDIDATE:
                dropped[reason] += count
        # In a flagged thread every reply not already deleted is dropped by the thread criterion.
        for reason, count in connection.execute(reason_counts_sql(criteria, flagged_only=True), parameters):
            if reason != criteria_names.DELETED:
                if reason != CANDIDATE:
                    dropped[reason] -= count
                dropped[criteria_names.FIRST_REPLY_BY_AUTHOR] += count
        return threads, replies, dropped
    finally:
        connection.close()


def _candidate_threads(connection: sqlite3.Connection, criteria: DatasetCriteria) -> Iterator[tuple[int, str, str, list[str]]]:
    """(thread_id, category, title, candidate reply HTML in msg_num order), thread by thread."""
    cursor = connection.execute(candidates_sql(criteria), sql_parameters(criteria))
    cursor.arraysize = FETCH_ROWS
    rows = (row for batch in iter(cursor.fetchmany, []) for row in batch)
    for thread_id, group in groupby(rows, key=itemgetter(0)):
        group = list(group)
        yield thread_id, group[0][1], group[0][2], [row[4] for row in group]


def _write(threads: list[tuple[str, list[str]]], writers: dict, stats: DatasetStats) -> None:
    for split, lines in threads:
        if lines:
            stats.rows[split] += len(lines)
            stats.threads_used[split] += 1
            writers[split].write("".join(lines))


class _MessageJson:
    """`json.dumps(message)`, memoised: a thread's system and user messages repeat on every row."""

    def __init__(self) -> None:
        self._done: dict[tuple[str, str], str] = {}

    def __call__(self, message: dict[str, str]) -> str:
        key = (message["role"], message["content"])
        if (text := self._done.get(key)) is None:
            text = self._done[key] = json.dumps(message, ensure_ascii=False)
        return text


@dataclass
class _Thread:
    """One thread's replies that passed the text criteria, waiting for the token stage."""

    split: str
    category: str
    title: str
    content: str  # first post as text
    replies: list[str]


class _ThreadRows:
    """Turns candidate replies into output rows, counting every drop.

    `prepare` runs the text criteria of one thread; `finish` runs the token stage for many
    threads at once, so the tokenizer gets large batches.
    """

    def __init__(self, *, counter: ChatTokenCounter, masker: Masker | None, options: DatasetOptions, stats: DatasetStats) -> None:
        self.counter = counter
        self.masker = masker
        self.options = options
        self.criteria = options.criteria
        self.stats = stats
        self.duplicates = DuplicateIndex()

    def prepare(self, thread_id: int, category: str, title: str, first_post_html: str, replies_html: Sequence[str]) -> _Thread | None:
        replies = self._text_filtered(replies_html)
        if not replies:
            return None
        content = self._first_post_text(first_post_html)
        prompt_key = DuplicateIndex.prompt_key(category, title, content)
        unique = []
        for reply in replies:
            if self.duplicates.add(prompt_key, normalized_reply(reply)):
                unique.append(reply)
            else:
                self._drop(criteria_names.DUPLICATE)
        if not unique:
            return None
        split = split_of_thread(thread_id, seed=self.options.seed, ratios=self.options.ratios)
        return _Thread(split, category, title, content, unique)

    def _first_post_text(self, html: str) -> str:
        """The first post as text; of a very long post only a head that is surely longer than
        the token budget (the builder cuts the rest anyway, and it is the prompt trained on)."""
        head = prefix_at_line_break(html, FIRST_POST_HTML_CHARS_PER_TOKEN * self.criteria.max_tokens)
        if head is not None:
            text = post_text(head)
            if self.counter(text) > self.criteria.max_tokens:
                return text
        return post_text(html)

    def finish(self, threads: list[_Thread]) -> list[tuple[str, list[str]]]:
        """(split, JSON lines) of each thread: the chats that fit the token budget."""
        headers = [format_user_message(t.category, t.title, "") for t in threads]
        self.counter.prefetch([self.options.system, *headers, *(t.content for t in threads), *(r for t in threads for r in t.replies)])
        return [(thread.split, self._fitting_rows(thread, header)) for thread, header in zip(threads, headers)]

    def _text_filtered(self, replies_html: Sequence[str]) -> list[str]:
        texts = []
        for msg in replies_html:
            if self.criteria.drop_links and has_link_or_embed(msg):
                self._drop(criteria_names.LINK_OR_EMBED)
            elif not (text := post_text(msg)):
                self._drop(criteria_names.EMPTY)
            else:
                texts.append(text)
        if not (self.criteria.drop_sensitive and self.masker is not None):
            return texts
        kept = []
        for text, sensitive in zip(texts, sensitive_flags(self.masker, texts)):
            if sensitive:
                self._drop(criteria_names.SENSITIVE)
            else:
                kept.append(text)
        return kept

    def _fitting_rows(self, thread: _Thread, header: str) -> list[str]:
        """JSON lines of the chats built by the core prompt builder whose exact token count fits."""
        counter, budget, system = self.counter, self.criteria.max_tokens, self.options.system
        category, title = thread.category, thread.title
        content = self._content_for_thread(thread, header, max(map(counter, thread.replies)))
        chats, replies = [], []
        for reply in thread.replies:
            try:
                chats.append(build_messages(category, title, content, count_tokens=counter, budget=budget, system=system, reply=reply))
                replies.append(reply)
            except ValueError:  # title, system message and reply alone exceed the budget
                self._drop(criteria_names.TOO_LONG)
        lines, message_json = [], _MessageJson()
        for chat, reply, length in zip(chats, replies, counter.chat_lengths(chats)):
            if length > budget:
                self._drop(criteria_names.TOO_LONG)
            elif self.options.output_format == "chat":
                # json.dumps({"messages": chat}) with the thread's shared messages encoded once.
                lines.append('{"messages": [' + ", ".join(map(message_json, chat)) + "]}\n")
            else:
                lines.append(json.dumps({"prompt": chat[1]["content"], "completion": reply}, ensure_ascii=False) + "\n")
        return lines

    def _content_for_thread(self, thread: _Thread, header: str, longest_reply: int) -> str:
        """The first post cut once for the thread's longest reply, so the builder's binary search
        over prefixes runs once per thread, not once per reply."""
        counter, content, budget = self.counter, thread.content, self.criteria.max_tokens
        if counter(content) + counter(header) + counter(self.options.system) + longest_reply + 32 <= budget:
            return content  # fits as it is: nothing to cut
        try:
            # build_messages counts 8 tokens a message of template overhead; a reply adds one message.
            messages = build_messages(
                thread.category, thread.title, content, count_tokens=counter, budget=budget,
                reserve=longest_reply + 8, system=self.options.system,
            )
        except ValueError:
            return content  # even an empty post does not fit the longest reply: judged per reply
        return messages[1]["content"][len(header):]

    def _drop(self, reason: str) -> None:
        self.stats.dropped[reason] += 1

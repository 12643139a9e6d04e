"""The test split as `lilm eval` reads it, and reply-length statistics.

`test.jsonl` is mlx-lm chat format, one `{"messages": [system, user, assistant]}` a line, the
user turn written by `core.prompt.format_user_message`; reading it back gives the thread
(category, title, first post) and the real reply.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from core.errors import ConfigError
from core.reply import ThreadPrompt

TEST_FILE = "test.jsonl"
_FIELDS = ("貼文類別：", "貼文標題：", "貼文內容：")


@dataclass(frozen=True)
class TestThread:
    """One row of the test split: the chat as stored, and the thread it was built from."""

    __test__ = False  # not a pytest test class, despite the name

    category: str
    title: str
    content: str
    reply: str
    messages: tuple[dict[str, str], ...]

    @property
    def prompt(self) -> ThreadPrompt:
        return ThreadPrompt(category=self.category, title=self.title, content=self.content)


def parse_user_message(text: str) -> tuple[str, str, str]:
    """Category, title and content of a user turn written by `core.prompt.format_user_message`.

    >>> parse_user_message("貼文類別：吹水台\\n貼文標題：今日好熱\\n貼文內容：\\n熱到溶\\n真係")
    ('吹水台', '今日好熱', '熱到溶\\n真係')
    """
    lines = text.split("\n", 3)
    if len(lines) < 3 or not all(line.startswith(label) for line, label in zip(lines, _FIELDS)):
        raise ValueError(f"expected a user turn starting {'/'.join(_FIELDS)}, found {text[:60]!r}")
    category = lines[0].removeprefix(_FIELDS[0])
    title = lines[1].removeprefix(_FIELDS[1])
    content = lines[3] if len(lines) > 3 else ""
    return category, title, content


def split_file(path: str | Path) -> Path:
    """`path` itself when it is a file, else `path/test.jsonl`."""
    path = Path(path)
    return path if path.is_file() else path / TEST_FILE


def read_test_split(path: str | Path) -> list[TestThread]:
    """Every row of a dataset directory's test.jsonl (or of a .jsonl file). Raises ConfigError
    naming the line when a row is not a system/user/assistant chat."""
    file = split_file(path)
    if not file.is_file():
        raise ConfigError(f"no test split at {file}: expected a dataset directory with {TEST_FILE}")
    threads = []
    with file.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                threads.append(_thread_from_row(json.loads(line)))
            except (ValueError, KeyError, TypeError) as error:
                raise ConfigError(f"{file}:{number}: not a chat row: {error}") from None
    if not threads:
        raise ConfigError(f"{file} has no rows")
    return threads


def _thread_from_row(row: dict) -> TestThread:
    messages = tuple(dict(m) for m in row["messages"])
    by_role = {m["role"]: m["content"] for m in messages}
    roles = [m["role"] for m in messages]
    if roles[-1] != "assistant" or "user" not in by_role:
        raise ValueError(f"expected [system,] user, assistant turns, found {roles}")
    category, title, content = parse_user_message(by_role["user"])
    return TestThread(category=category, title=title, content=content, reply=by_role["assistant"], messages=messages)


@dataclass(frozen=True)
class LengthStats:
    """Summary of reply lengths in characters."""

    count: int
    mean: float
    median: float
    p10: float
    p90: float
    min: int
    max: int

    @classmethod
    def of(cls, texts: Sequence[str]) -> LengthStats:
        """
        >>> LengthStats.of(["一二", "一二三四", "", "一二三四五六"])
        LengthStats(count=4, mean=3.0, median=3.0, p10=0.0, p90=6.0, min=0, max=6)
        """
        lengths = sorted(len(t) for t in texts)
        if not lengths:
            return cls(count=0, mean=0.0, median=0.0, p10=0.0, p90=0.0, min=0, max=0)
        return cls(
            count=len(lengths),
            mean=statistics.fmean(lengths),
            median=float(statistics.median(lengths)),
            p10=_nearest_rank(lengths, 0.10),
            p90=_nearest_rank(lengths, 0.90),
            min=lengths[0],
            max=lengths[-1],
        )


def _nearest_rank(sorted_values: Sequence[int], fraction: float) -> float:
    """The nearest-rank percentile: the smallest value with at least `fraction` of values at or below it."""
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return float(sorted_values[rank - 1])

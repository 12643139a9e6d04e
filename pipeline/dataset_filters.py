"""The dataset criteria: which replies become training rows, and why the others do not.

Every reply is judged by the reasons below in this order and counted under the first one it
fails, so the drop counts add up to the number of replies. The numeric criteria run inside
SQLite (only candidate rows, with their HTML, ever reach Python); the text criteria run on
the reply itself, cheapest first, before any HTML parsing or tokenising.

"The thread's first reply is not by the author" (from the original LiLM README) is a thread
criterion: the first reply is the post with the lowest `msg_num` above 1 (whatever its
status). When the author wrote it, the author was still adding to the opening post, so the
prompt (title + first post) is incomplete and no reply of that thread is used.
"""

from __future__ import annotations

import bisect
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the CLI imports this module: keep numpy and OpenCC out of its start-up
    from core.masking import Masker

# Drop reasons, in the order they are checked (SQL-side first, then per reply in Python).
DELETED = "deleted"  # status != 1: removed or hidden posts
FIRST_REPLY_BY_AUTHOR = "first_reply_by_author"
BY_AUTHOR = "by_author"
QUOTES = "quotes_another_post"
TOO_FEW_VOTES = "too_few_votes"
NOT_POSITIVE = "not_positive"
LINK_OR_EMBED = "link_or_embed"
EMPTY = "empty_text"
SENSITIVE = "sensitive_word"
DUPLICATE = "duplicate"
TOO_LONG = "over_token_budget"

SQL_REASONS = (DELETED, FIRST_REPLY_BY_AUTHOR, BY_AUTHOR, QUOTES, TOO_FEW_VOTES, NOT_POSITIVE)
TEXT_REASONS = (LINK_OR_EMBED, EMPTY, SENSITIVE, DUPLICATE, TOO_LONG)
DROP_REASONS = SQL_REASONS + TEXT_REASONS
CANDIDATE = "candidate"

_NON_WORD_RE = re.compile(r"[\s\u200b]+")
_JOINT = "\ue000"  # private use: neither a separator nor an entry character for the masker


@dataclass(frozen=True)
class DatasetCriteria:
    """Thresholds and switches of the criteria (defaults: the original project's)."""

    min_votes: int = 20  # likes + dislikes
    positive_ratio: float = 2.0  # likes >= ratio * (dislikes + 1)
    first_reply_not_by_author: bool = True
    drop_author_replies: bool = True
    drop_quotes: bool = True
    drop_links: bool = True
    drop_sensitive: bool = True
    max_tokens: int = 2048  # whole chat: system + user + assistant, chat template included

    def __post_init__(self) -> None:
        if self.min_votes < 0 or self.positive_ratio < 0:
            raise ValueError("min_votes and positive_ratio must be >= 0")
        if self.max_tokens < 16:
            raise ValueError(f"max_tokens must be at least 16, got {self.max_tokens}")


def _reason_case(criteria: DatasetCriteria) -> str:
    """SQL CASE naming the first per-reply criterion a reply `p` of thread `t` fails
    (the thread criterion, first reply by the author, is applied around it)."""
    branches = [f"WHEN p.status != 1 THEN '{DELETED}'"]
    if criteria.drop_author_replies:
        branches.append(f"WHEN p.user_id = t.user_id THEN '{BY_AUTHOR}'")
    if criteria.drop_quotes:
        branches.append(f"WHEN p.quote_post_id != '' THEN '{QUOTES}'")
    branches.append(f"WHEN p.like_count + p.dislike_count < :min_votes THEN '{TOO_FEW_VOTES}'")
    branches.append(f"WHEN p.like_count < :ratio * (p.dislike_count + 1) THEN '{NOT_POSITIVE}'")
    return "CASE " + " ".join(branches) + f" ELSE '{CANDIDATE}' END"


def sql_parameters(criteria: DatasetCriteria) -> dict[str, float]:
    return {"min_votes": criteria.min_votes, "ratio": criteria.positive_ratio}


# Threads whose first reply (lowest msg_num above 1) is by the author: the covering index
# gives each thread's first reply number, then one lookup per thread.
FIRST_REPLY_BY_AUTHOR_SQL = """
SELECT f.thread_id
FROM (SELECT thread_id, MIN(msg_num) AS msg_num FROM posts WHERE msg_num > 1 GROUP BY thread_id) AS f
JOIN posts AS p ON p.thread_id = f.thread_id AND p.msg_num = f.msg_num
JOIN threads AS t ON t.thread_id = f.thread_id
GROUP BY f.thread_id
HAVING MAX(p.user_id = t.user_id)"""
FLAGGED_TABLE = "temp.lilm_flagged_threads"


def reason_counts_sql(criteria: DatasetCriteria, *, flagged_only: bool = False) -> str:
    """Query: (reason, number of replies) for every per-reply reason and `candidate`;
    with `flagged_only`, only over the threads in FLAGGED_TABLE."""
    where = f" AND p.thread_id IN {FLAGGED_TABLE}" if flagged_only else ""
    return f"""
SELECT {_reason_case(criteria)} AS reason, COUNT(*)
FROM posts AS p JOIN threads AS t ON t.thread_id = p.thread_id
WHERE p.msg_num > 1{where}
GROUP BY reason"""


def candidates_sql(criteria: DatasetCriteria) -> str:
    """Query: candidate replies (thread_id, category, title, msg_num, msg), in thread order;
    threads in FLAGGED_TABLE are left out."""
    return f"""
SELECT p.thread_id, t.category, t.title, p.msg_num, p.msg
FROM threads AS t JOIN posts AS p ON p.thread_id = t.thread_id
WHERE p.msg_num > 1 AND ({_reason_case(criteria)}) = '{CANDIDATE}' AND p.thread_id NOT IN {FLAGGED_TABLE}
ORDER BY p.thread_id, p.msg_num"""


FIRST_POST_SQL = "SELECT msg FROM posts WHERE thread_id = ? AND msg_num = 1 ORDER BY status != 1 LIMIT 1"


def sensitive_flags(masker: Masker, texts: Sequence[str]) -> list[bool]:
    """Which texts hold a listed word: one `Masker.find` over all of them joined.

    The joint is a private-use character, which folds to "no entry character", so no match
    can reach across it: the result is what `find` on each text would say, for one scan.

    >>> from core.masking import Masker
    >>> sensitive_flags(Masker(["撚"]), ["好正", "冇撚用", "撚"])
    [False, True, True]
    """
    if not texts:
        return []
    starts, position = [], 0
    for text in texts:
        starts.append(position)
        position += len(text) + len(_JOINT)
    flags = [False] * len(texts)
    for start, _end, _word in masker.find(_JOINT.join(texts)):
        flags[bisect.bisect_right(starts, start) - 1] = True
    return flags


def normalized_reply(text: str) -> str:
    """The form duplicate detection compares: NFKC, case-folded, without whitespace.

    >>> normalized_reply("ＯＫ 好正\\n") == normalized_reply("ok好正")
    True
    """
    return _NON_WORD_RE.sub("", unicodedata.normalize("NFKC", text).casefold())

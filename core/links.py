"""Find LIHKG thread links inside chat messages.

Accepted shapes (host case-insensitive, scheme optional, inside any surrounding text):
`lihkg.com/thread/<id>[/page/<n>][/][?query][#fragment]` on `lihkg.com`, `www.lihkg.com`
or `m.lihkg.com`, and share links `lih.kg/<id>` (also `www.lih.kg`). `?post=<n>` is read.

Anything that is not literally a link to those hosts is refused: other hosts, a host glued
to other URL characters (`notlihkg.com`, `lihkg.com.evil.com`), userinfo (`a@lihkg.com`,
`lihkg.com@evil.com`), ports other than 80/443, look-alike letters. Pure text work, no I/O.
One regex with bounded quantifiers and no nested repetition, so a scan stays linear.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from core.errors import LinkError

MAX_LINKS = 10
MAX_PAGE = 9999
CANONICAL_BASE = "https://lihkg.com"

# Characters that make the text before a host part of another host, userinfo or URL, and
# characters after a path that would make it a different path. Letters and digits too.
_GLUE_BEFORE_CHARS = frozenset(".+-_~%@/\\=?&#")
_GLUE_AFTER_CHARS = frozenset("_%@/\\-")
_GLUE_BEFORE = "A-Za-z0-9" + re.escape("".join(sorted(_GLUE_BEFORE_CHARS)))

_LINK = re.compile(
    rf"""
    (?<![{_GLUE_BEFORE}])
    (?:https?://)?
    (?:
        (?:www\.|m\.)?lihkg\.com(?::(?:443|80))?
        /thread/(?P<thread>\d{{1,10}})(?:/page/(?P<page>\d{{1,4}}))?
      | (?:www\.)?lih\.kg(?::(?:443|80))?/(?P<short>\d{{1,10}})
    )
    /?
    (?![A-Za-z0-9_%@/\\\-]|[.:][A-Za-z0-9])   # the path ends here: no `/thread/12abc`
    (?P<path_end>)
    (?:\?(?P<query>[A-Za-z0-9\-._~%=&+]*+))?
    (?:\#[A-Za-z0-9\-._~%=&+/]*+)?
    """,
    re.ASCII | re.IGNORECASE | re.VERBOSE,
)
_POST_PARAM = re.compile(r"(?:^|&)post=(\d{1,10})(?![^&])", re.ASCII | re.IGNORECASE)


@dataclass(frozen=True)
class ThreadLink:
    """One LIHKG thread, optionally a page and a post (`msg_num`) in it."""

    thread_id: int
    page: int = 1
    post: int | None = None

    def __post_init__(self) -> None:
        post_ok = self.post is None or self.post > 0
        if self.thread_id <= 0 or not 1 <= self.page <= MAX_PAGE or not post_ok:
            raise ValueError(f"invalid thread link: thread {self.thread_id}, page {self.page}, post {self.post}")

    @property
    def url(self) -> str:
        """Canonical address.

        >>> ThreadLink(3699748, page=3, post=5).url
        'https://lihkg.com/thread/3699748/page/3'
        """
        return f"{CANONICAL_BASE}/thread/{self.thread_id}/page/{self.page}"


def find_links(text: str, *, limit: int = MAX_LINKS) -> list[ThreadLink]:
    """Every thread link in `text`, in order, one per thread id (first wins), at most `limit`.

    >>> find_links("睇下呢個https://lihkg.com/thread/3699748/page/2?post=7好好笑 同 lih.kg/123")
    [ThreadLink(thread_id=3699748, page=2, post=7), ThreadLink(thread_id=123, page=1, post=None)]
    >>> find_links("https://lihkg.com.evil.com/thread/1 https://evil.com@lihkg.com/thread/2")
    []
    """
    found: dict[int, ThreadLink] = {}
    if limit <= 0:
        return []
    for match in _LINK.finditer(text):
        link = _link_from_match(text, match)
        if link is not None and link.thread_id not in found:
            found[link.thread_id] = link
            if len(found) >= limit:
                break
    return list(found.values())


def parse_link(text: str) -> ThreadLink:
    """The first thread link in `text`; LinkError (with a Cantonese user_message) if none.

    >>> parse_link("lih.kg/3699748?post=2")
    ThreadLink(thread_id=3699748, page=1, post=2)
    """
    links = find_links(text, limit=1)
    if not links:
        raise LinkError(
            "expected a LIHKG thread link such as https://lihkg.com/thread/<id>/page/<n> "
            f"or https://lih.kg/<id>, found none in {_preview(text)}"
        )
    return links[0]


def _link_from_match(text: str, match: re.Match[str]) -> ThreadLink | None:
    start, path_end = match.start(), match.start("path_end")
    # The regex only sees ASCII; full-width or foreign letters can glue onto the host too.
    if start > 0 and _glues_before(text[start - 1]):
        return None
    if path_end < len(text) and _glues_after(text[path_end]):
        return None
    thread_id = int(match["thread"] or match["short"])
    page = int(match["page"] or 1)
    if thread_id == 0 or not 1 <= page <= MAX_PAGE:
        return None
    return ThreadLink(thread_id, page, _post_from_query(match["query"]))


def _post_from_query(query: str | None) -> int | None:
    """The `post` parameter, if it is a positive number.

    >>> _post_from_query("order=reply_time&post=12."), _post_from_query("post=0"), _post_from_query(None)
    (12, None, None)
    """
    if not query:
        return None
    found = _POST_PARAM.search(query.rstrip("."))  # a sentence may end right after the link
    post = int(found[1]) if found else 0
    return post or None


def _glues_before(char: str) -> bool:
    """True when `char` would join the host after it into a longer host or another URL."""
    if char.isascii():
        return False  # the regex look-behind already judged ASCII
    return _non_ascii_glues(char, _GLUE_BEFORE_CHARS)


def _glues_after(char: str) -> bool:
    if char.isascii():
        return False  # the regex look-ahead already judged ASCII
    return _non_ascii_glues(char, _GLUE_AFTER_CHARS)


def _non_ascii_glues(char: str, glue: frozenset[str]) -> bool:
    """Full-width forms of URL characters, and letters of non-CJK scripts, glue; CJK does not.

    >>> [_non_ascii_glues(c, frozenset()) for c in "ａі好"]
    [True, True, False]
    """
    folded = unicodedata.normalize("NFKC", char)
    if any(c.isascii() and (c.isalnum() or c in glue) for c in folded):
        return True
    return char.isalnum() and unicodedata.east_asian_width(char) not in ("W", "F", "H")


def _preview(text: str, size: int = 60) -> str:
    shown = text if len(text) <= size else text[:size] + "…"
    return f"{shown!r} ({len(text)} characters)"

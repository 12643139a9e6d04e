"""Discord message text: `Span`s rendered as escaped Markdown that never pings anyone.

Generated text is escaped (no stray bold, spoilers, headings or links from the model) and
mentions are broken visibly with a zero-width space (`@\u200beveryone`), on top of the
`AllowedMentions.none()` every send uses. Pieces are at most 2000 characters counted as UTF-16
units (stricter than Discord's count, so a piece is never refused for its length).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from bots.chat_text import (
    STREAMING_MARK,
    Markup,
    Span,
    first_piece,
    split_spans,
    utf16_len,
)

MESSAGE_LIMIT = 2000

_SPECIAL = re.compile(r"([\\*_~`|\[\]()<>#\-+:])")
_MENTION = re.compile(r"@(everyone|here|[!&]?[0-9]{15,21})")


def escape(text: str) -> str:
    """`text` shown literally in Discord: Markdown escaped, mentions broken.

    >>> escape("**@everyone** <@123456789012345678> #1")
    '\\\\*\\\\*@\\u200beveryone\\\\*\\\\* \\\\<@\\u200b123456789012345678\\\\> \\\\#1'
    """
    return _MENTION.sub("@\u200b\\1", _SPECIAL.sub(r"\\\1", text))


def length(text: str) -> int:
    """Length of `text` once escaped, in UTF-16 units."""
    return utf16_len(escape(text))


MARKDOWN = Markup(escape=escape, bold="**{}**", italic="_{}_", code="`{}`", link="[{}](<{url}>)")


def render(spans: Sequence[Span]) -> str:
    """Discord Markdown for `spans`, every piece of text escaped; links never embed.

    >>> render([Span("【吹水台】", bold=True), Span("標題*", bold=True, url="https://lih.kg/1"), Span(" ok")])
    '**【吹水台】**[**標題\\\\***](<https://lih.kg/1>) ok'
    """
    return MARKDOWN.render(spans)


def _format_room(spans: Sequence[Span]) -> int:
    """Characters the formatting adds to all of `spans` (a bound for any piece of them)."""
    return utf16_len(render(spans)) - sum(length(span.text) for span in spans)


def message_pieces(spans: Sequence[Span]) -> list[str]:
    """The final text as Discord messages of at most MESSAGE_LIMIT each, cut cleanly.

    >>> pieces = message_pieces([Span("句子。" * 1000)])
    >>> len(pieces), max(utf16_len(p) for p in pieces) <= MESSAGE_LIMIT
    (2, True)
    """
    limit = MESSAGE_LIMIT - _format_room(spans)
    return [render(piece) for piece in split_spans(spans, limit, length=length)]


def streaming_piece(spans: Sequence[Span]) -> str:
    """What one message shows while the reply still grows: the first piece and a mark."""
    return render(first_piece(spans, MESSAGE_LIMIT - _format_room(spans), length=length, mark=STREAMING_MARK))

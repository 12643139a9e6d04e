"""LIHKG post HTML to plain text, the one form used for prompts and training data.

Rules: `<br />` is a line break (the `\\n` LIHKG puts after it is source formatting), each
line of a `<blockquote>` is prefixed with `> ` (nested quotes give `> > `), links become
`[連結]`, posted images `[圖片]`, videos `[影片]`, LIHKG emoji the portable `[hkg:pack/name]`
token from `core.emoji`, every other tag is unwrapped. Whitespace is collapsed the way a
browser shows it: runs of spaces become one, lines are trimmed, as is the whole text.
"""

from __future__ import annotations

import re

from bs4 import BeautifulSoup, NavigableString, Tag
from bs4.element import Comment, Declaration, Doctype, ProcessingInstruction

from core.emoji import emoji_from_src

LINK_MARK = "[連結]"
IMAGE_MARK = "[圖片]"
VIDEO_MARK = "[影片]"
QUOTE_PREFIX = "> "

_BLOCK_TAGS = frozenset({"div", "p", "ul", "ol", "li", "h1", "h2", "h3", "h4", "h5", "h6", "pre", "table", "tr"})
_VIDEO_TAGS = frozenset({"iframe", "video", "embed", "object"})
_DROPPED_TAGS = frozenset({"script", "style", "head", "title", "noscript", "template"})
_SKIPPED_STRINGS = (Comment, Declaration, Doctype, ProcessingInstruction)
_SPACES_RE = re.compile(r"[ \t\f\v\xa0\u200b]+")


class _LineBuilder:
    """Collects rendered text as lines; blocks (quotes) always sit on lines of their own."""

    def __init__(self) -> None:
        self.lines: list[str] = [""]
        # After a block the next text starts a new line; a <br> right after a block gives
        # that same new line, not an extra empty one.
        self.after_block = False

    def text(self, value: str) -> None:
        if self.after_block:
            if not value.strip():
                return
            self.lines.append("")
            self.after_block = False
        self.lines[-1] += value

    def line_break(self) -> None:
        self.lines.append("")
        self.after_block = False

    def block(self, block_lines: list[str]) -> None:
        if not block_lines:
            return
        if self.after_block or self.lines[-1].strip():
            self.lines.append("")
        self.lines[-1:] = block_lines
        self.after_block = True

    def finish(self) -> list[str]:
        """Normalized lines without leading or trailing empty lines."""
        lines = [_SPACES_RE.sub(" ", line).strip() for line in self.lines]
        while lines and not lines[0]:
            lines.pop(0)
        while lines and not lines[-1]:
            lines.pop()
        return lines


def post_to_text(html: str) -> str:
    """Plain text of one post's `msg` HTML.

    >>> post_to_text('<blockquote>你講咩</blockquote>冇嘢<img src="/assets/faces/normal/clown.gif" class="hkgmoji" />')
    '> 你講咩\\n冇嘢[hkg:normal/clown]'
    >>> post_to_text('一<br />\\n二&amp;三<br />\\n<a href="https://x.com/">https://x.com/</a>')
    '一\\n二&三\\n[連結]'
    """
    if not html:
        return ""
    soup = BeautifulSoup(html, "html.parser")
    builder = _LineBuilder()
    _render_children(soup, builder)
    return "\n".join(builder.finish())


def _render_children(node: Tag, builder: _LineBuilder) -> None:
    for child in node.children:
        if isinstance(child, _SKIPPED_STRINGS):
            continue
        if isinstance(child, NavigableString):
            # LIHKG pairs every real line break with <br />; raw newlines are formatting.
            builder.text(str(child).replace("\r", "").replace("\n", ""))
        elif isinstance(child, Tag):
            _render_tag(child, builder)


def _render_tag(tag: Tag, builder: _LineBuilder) -> None:
    name = tag.name.lower()
    if name == "br":
        builder.line_break()
    elif name == "img":
        builder.text(_image_text(tag))
    elif name == "a":
        builder.text(IMAGE_MARK if _holds_posted_image(tag) else LINK_MARK)
    elif name == "blockquote":
        builder.block(_quoted(_inner_lines(tag)))
    elif name in _BLOCK_TAGS:
        builder.block(_inner_lines(tag))
    elif name in _VIDEO_TAGS:
        builder.text(VIDEO_MARK)
    elif name in _DROPPED_TAGS:
        return
    else:
        _render_children(tag, builder)


def _inner_lines(tag: Tag) -> list[str]:
    inner = _LineBuilder()
    _render_children(tag, inner)
    return inner.finish()


def _quoted(lines: list[str]) -> list[str]:
    return [f"{QUOTE_PREFIX}{line}" if line else QUOTE_PREFIX.rstrip() for line in lines]


def _image_text(img: Tag) -> str:
    token = emoji_from_src(str(img.get("src") or ""))
    if token is not None:
        return token
    if "hkgmoji" in (img.get("class") or []):
        return ""  # an emoji whose src we cannot read: dropping it beats calling it a photo
    return IMAGE_MARK


def _holds_posted_image(anchor: Tag) -> bool:
    return any(emoji_from_src(str(img.get("src") or "")) is None for img in anchor.find_all("img"))

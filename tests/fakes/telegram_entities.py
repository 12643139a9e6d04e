"""Telegram's text rules for the fake Bot API: HTML parse mode, entities and lengths.

`parse_html(text)` turns a `parse_mode=HTML` message into the visible text and its entities
the way the Bot API does, and raises `EntityParseError` (the "can't parse entities" 400) on
anything Telegram refuses: unknown tags, unclosed or crossed tags, `<`, `>` or `&` that are not
part of a tag or an entity. Offsets and lengths count UTF-16 units, as Telegram's do.
`detect_entities(text)` finds what Telegram marks in incoming user messages (commands,
@mentions, URLs).
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field

MAX_TEXT_UTF16 = 4096

TAG_TYPES = {
    "b": "bold", "strong": "bold", "i": "italic", "em": "italic", "u": "underline", "ins": "underline",
    "s": "strikethrough", "strike": "strikethrough", "del": "strikethrough", "a": "text_link",
    "code": "code", "pre": "pre", "blockquote": "blockquote", "tg-spoiler": "spoiler", "span": "spoiler",
}  # fmt: skip
_TAG = re.compile(r"<(/?)([a-zA-Z][a-zA-Z0-9-]*)((?:\s+[a-zA-Z-]+\s*=\s*(?:\"[^\"]*\"|'[^']*'|[^\s>\"']+))*)\s*>")
_ATTRIBUTE = re.compile(r"([a-zA-Z-]+)\s*=\s*(?:\"([^\"]*)\"|'([^']*)'|([^\s>\"']+))")
_ENTITY = re.compile(r"&(lt|gt|amp|quot|#[0-9]{1,7}|#x[0-9a-fA-F]{1,6});")
_COMMAND = re.compile(r"/[A-Za-z0-9_]{1,32}(?:@[A-Za-z0-9_]{3,32})?")
_MENTION = re.compile(r"(?<![A-Za-z0-9_])@[A-Za-z0-9_]{5,32}")
_URL = re.compile(r"https?://[^\s<>\"]+", re.IGNORECASE)


class EntityParseError(ValueError):
    """The text is not valid Telegram HTML; `str()` is the Bot API's description tail."""


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


@dataclass
class Entity:
    """One formatting entity; offset and length in UTF-16 units."""

    type: str
    offset: int
    length: int
    url: str | None = None
    extra: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        data = {"type": self.type, "offset": self.offset, "length": self.length, **self.extra}
        if self.url is not None:
            data["url"] = self.url
        return data


def parse_html(text: str) -> tuple[str, list[Entity]]:
    """Visible text and entities of an HTML-formatted message, or EntityParseError.

    >>> parse_html('<b>標題</b> &lt;3 <a href="https://lih.kg/1">連結</a>')
    ('標題 <3 連結', [Entity(type='bold', offset=0, length=2, url=None, extra={}), Entity(type='text_link', offset=6, length=2, url='https://lih.kg/1', extra={})])
    """
    out: list[str] = []
    units = 0  # UTF-16 length of the text so far
    stack: list[tuple[str, int, str | None]] = []
    entities: list[Entity] = []
    pos = 0
    while pos < len(text):
        char = text[pos]
        if char == "<":
            match = _TAG.match(text, pos)
            if match is None:
                raise EntityParseError(f"Unsupported start tag at byte offset {_byte_offset(text, pos)}")
            closing, name, attributes = match.group(1) == "/", match.group(2).lower(), match.group(3)
            if name not in TAG_TYPES:
                raise EntityParseError(f'Unsupported start tag "{name}" at byte offset {_byte_offset(text, pos)}')
            if closing:
                if not stack or stack[-1][0] != name:
                    raise EntityParseError(f'Unmatched end tag at byte offset {_byte_offset(text, pos)}, expected "</{stack[-1][0] if stack else ""}>", found "</{name}>"')
                _, start, url = stack.pop()
                if units > start:
                    entities.append(Entity(TAG_TYPES[name], start, units - start, url))
            else:
                stack.append((name, units, _href(name, attributes, text, pos)))
            pos = match.end()
        elif char == "&":
            match = _ENTITY.match(text, pos)
            if match is None:
                raise EntityParseError(f"Character entity expected at byte offset {_byte_offset(text, pos)}")
            decoded = html.unescape(match.group(0))
            out.append(decoded)
            units += utf16_len(decoded)
            pos = match.end()
        elif char == ">":
            raise EntityParseError(f'Unexpected ">" at byte offset {_byte_offset(text, pos)}')
        else:
            out.append(char)
            units += 2 if ord(char) > 0xFFFF else 1
            pos += 1
    if stack:
        raise EntityParseError(f'Can\'t find end tag corresponding to start tag "{stack[-1][0]}"')
    entities.sort(key=lambda e: (e.offset, -e.length))
    return "".join(out), entities


def detect_entities(text: str) -> list[Entity]:
    """Entities Telegram attaches to a user's message: a leading /command, @mentions, URLs.

    >>> [(e.type, e.offset, e.length) for e in detect_entities("/lihkg@lilm_bot 睇 https://lih.kg/1")]
    [('bot_command', 0, 15), ('url', 18, 16)]
    """
    found: list[Entity] = []
    command = _COMMAND.match(text)
    if command:
        found.append(Entity("bot_command", 0, utf16_len(command.group(0))))
    for pattern, kind in ((_MENTION, "mention"), (_URL, "url")):
        for match in pattern.finditer(text):
            if command and match.start() < command.end():
                continue
            found.append(Entity(kind, utf16_len(text[: match.start()]), utf16_len(match.group(0))))
    return sorted(found, key=lambda e: e.offset)


def _href(name: str, attributes: str, text: str, pos: int) -> str | None:
    values = {m.group(1).lower(): html.unescape(next(g for g in m.groups()[1:] if g is not None)) for m in _ATTRIBUTE.finditer(attributes)}
    if name == "a":
        href = values.get("href", "")
        if not re.match(r"^(https?://|tg://)", href):
            raise EntityParseError(f"Wrong HTTP URL at byte offset {_byte_offset(text, pos)}")
        return href
    if name == "span" and values.get("class") != "tg-spoiler":
        raise EntityParseError(f'Tag "span" must have class "tg-spoiler" at byte offset {_byte_offset(text, pos)}')
    return None


def _byte_offset(text: str, pos: int) -> int:
    return len(text[:pos].encode())

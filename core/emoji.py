"""LIHKG emoji ("hkgmoji") in one portable text form: `[hkg:<pack>/<name>]`.

Post HTML carries emoji as `<img src="/assets/faces/<pack>/<name>.gif" class="hkgmoji" />`.
`core.html_text` turns each into a token such as `[hkg:normal/clown]`; training data and
prompts use that token verbatim, and only chat output is rendered for people by
`render_emoji`.
"""

from __future__ import annotations

import re

EMOJI_TOKEN_RE = re.compile(r"\[hkg:([a-z0-9_-]+)/([a-z0-9_-]+)\]")

# Relative `/assets/faces/...`, protocol-relative `//cdn.lihkg.com/...` or absolute on a
# lihkg.com host; an optional query (cache buster) is allowed.
_FACE_SRC_RE = re.compile(
    r"^(?:(?:https?:)?//(?:[a-z0-9-]+\.)*lihkg\.com)?"
    r"/assets/faces/([a-z0-9_-]+)/([a-z0-9_-]+)\.(?:gif|png|webp|jpe?g)"
    r"(?:[?#].*)?$",
    re.IGNORECASE,
)

# By emoji name, whatever the pack (normal/clown and dog/clown mean the same face).
UNICODE_BY_NAME: dict[str, str] = {
    "369": "🤪",
    "adore": "🥰",
    "agree": "👌",
    "angel": "😇",
    "angry": "😡",
    "ass": "🍑",
    "banghead": "🤕",
    "bomb": "💣",
    "bye": "👋",
    "chicken": "🐔",
    "clap": "👏",
    "clown": "🤡",
    "cool": "😎",
    "cry": "😭",
    "dead": "💀",
    "devil": "😈",
    "diu": "🖕",
    "donno": "🤷",
    "dying": "😵",
    "fire": "🔥",
    "flowerface": "😊",
    "frown": "☹️",
    "fuck": "🖕",
    "good": "👍",
    "hehe": "😏",
    "hoho": "😆",
    "kill": "🔪",
    "kiss": "😘",
    "lol": "🤣",
    "love": "😍",
    "money": "💰",
    "no": "🙅",
    "oh": "😯",
    "photo": "📷",
    "power": "💪",
    "puke": "🤮",
    "sad": "😞",
    "shocking": "😱",
    "shy": "😳",
    "sleep": "😴",
    "smile": "🙂",
    "sorry": "🙏",
    "sosad": "😢",
    "surprise": "😮",
    "sweat": "😓",
    "think": "🤔",
    "tongue": "😛",
    "wail": "😭",
    "wonder": "🤔",
    "yipes": "😨",
    "z": "😴",
}

RENDER_STYLES = ("unicode", "text")


def emoji_token(pack: str, name: str) -> str:
    """The portable token for one emoji.

    >>> emoji_token("normal", "clown")
    '[hkg:normal/clown]'
    """
    return f"[hkg:{pack.lower()}/{name.lower()}]"


def emoji_from_src(src: str) -> str | None:
    """The portable token for an emoji image URL, or None when `src` is not a LIHKG face.

    >>> emoji_from_src("/assets/faces/normal/clown.gif")
    '[hkg:normal/clown]'
    >>> emoji_from_src("https://cdn.lihkg.com/assets/faces/lomoji/agree.png")
    '[hkg:lomoji/agree]'
    >>> emoji_from_src("https://example.com/assets/faces/normal/clown.gif") is None
    True
    """
    match = _FACE_SRC_RE.match(src.strip())
    if match is None:
        return None
    return emoji_token(match.group(1), match.group(2))


def render_emoji(text: str, style: str = "unicode") -> str:
    """Turn portable tokens into something fit for a chat message.

    "unicode": a Unicode emoji for well-known names, else `[name]`; "text": tokens unchanged.

    >>> render_emoji("好笑[hkg:normal/clown] [hkg:dog/mysterious]")
    '好笑🤡 [mysterious]'
    >>> render_emoji("[hkg:pig/wail]", style="text")
    '[hkg:pig/wail]'
    """
    if style not in RENDER_STYLES:
        raise ValueError(f"style must be one of {RENDER_STYLES}, got {style!r}")
    if style == "text":
        return text
    return EMOJI_TOKEN_RE.sub(_unicode_or_name, text)


def _unicode_or_name(match: re.Match[str]) -> str:
    name = match.group(2)
    return UNICODE_BY_NAME.get(name, f"[{name}]")

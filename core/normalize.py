"""Clean-up of generated replies before they reach a chat.

Models may think aloud (`<think>…</think>`), leak special tokens (`<|im_end|>`), emit U+FFFD
for broken bytes, or drift into simplified characters. `clean_reply` removes all of that and
converts to Hong Kong traditional characters (OpenCC `s2hk`).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable

import opencc

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"
# `<|im_end|>`, `<|eot_id|>`, DeepSeek's full-width `<｜end▁of▁sentence｜>`. Bounded: linear.
_SPECIAL_TOKEN = re.compile(r"<[|｜][^<>|｜\s]{1,80}[|｜]>")
_BLANK_LINES = re.compile(r"\n(?:[ \t]*\n){2,}")  # three or more line breaks


@functools.cache
def _s2hk() -> opencc.OpenCC:
    """The converter, created on first use (loading OpenCC dictionaries takes a moment)."""
    return opencc.OpenCC("s2hk")


def to_hk_traditional(text: str) -> str:
    """Simplified (or mixed) Chinese to Hong Kong traditional; Cantonese characters kept.

    >>> to_hk_traditional("这个东西几多钱？佢哋话冇。")
    '這個東西幾多錢？佢哋話冇。'
    """
    return _s2hk().convert(text) if text else text


def strip_reasoning(text: str) -> str:
    """Remove `<think>…</think>` blocks, an unclosed `<think>` to the end, and a stray
    `</think>` with everything before it (templates that open the block themselves).

    >>> strip_reasoning("<think>佢問咩？</think>好正")
    '好正'
    >>> strip_reasoning("諗緊嘢…</think>好正<think>唔講")
    '好正'
    """
    kept, position = [], 0
    while (start := text.find(THINK_OPEN, position)) != -1:
        kept.append(text[position:start])
        end = text.find(THINK_CLOSE, start)
        if end == -1:
            position = len(text)  # unclosed: the rest is reasoning
            break
        position = end + len(THINK_CLOSE)
    kept.append(text[position:])
    result = "".join(kept)
    # A `</think>` left over closes a block the chat template opened: drop it and all before.
    stray = result.rfind(THINK_CLOSE)
    return result if stray == -1 else result[stray + len(THINK_CLOSE) :]


def strip_special_tokens(text: str, special_tokens: Iterable[str] = ()) -> str:
    """Remove the given special tokens and anything shaped like `<|…|>`.

    >>> strip_special_tokens("好正<|im_end|><|endoftext|>[EOS]", ["[EOS]", ""])
    '好正'
    """
    for token in special_tokens:
        if token:
            text = text.replace(token, "")
    return _SPECIAL_TOKEN.sub("", text)


def clean_reply(text: str, special_tokens: Iterable[str] = ()) -> str:
    """Everything a raw generation needs before it is shown: no reasoning, no special tokens,
    no U+FFFD, at most one blank line in a row, trimmed, Hong Kong traditional characters.

    >>> clean_reply("<think>嗯</think>\\n\\n这个post正\\ufffd<|im_end|>\\n\\n\\n\\n\\n下一段  ")
    '這個post正\\n\\n下一段'
    """
    # U+FFFD first: a broken byte inside a tag would otherwise hide the tag.
    text = text.replace("\ufffd", "").replace("\r\n", "\n")
    text = strip_special_tokens(strip_reasoning(text), special_tokens)
    text = _BLANK_LINES.sub("\n\n", text)
    return to_hk_traditional(text.strip())

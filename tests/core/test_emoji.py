"""LIHKG emoji: image src -> portable token -> chat rendering."""

from __future__ import annotations

import pytest

from core.emoji import EMOJI_TOKEN_RE, emoji_from_src, render_emoji


@pytest.mark.parametrize(
    ("src", "token"),
    [
        ("/assets/faces/normal/clown.gif", "[hkg:normal/clown]"),
        ("/assets/faces/big/sosad.gif", "[hkg:big/sosad]"),
        ("/assets/faces/pig/wail.gif", "[hkg:pig/wail]"),
        ("/assets/faces/lm2/bye.gif", "[hkg:lm2/bye]"),
        ("/assets/faces/fs/smile.gif", "[hkg:fs/smile]"),
        ("/assets/faces/lomoji/agree.png", "[hkg:lomoji/agree]"),
        ("/assets/faces/normal_xmas/clown.gif", "[hkg:normal_xmas/clown]"),
        ("/assets/faces/newyear-2022/369.gif", "[hkg:newyear-2022/369]"),
        ("https://cdn.lihkg.com/assets/faces/dog/dead.gif", "[hkg:dog/dead]"),
        ("https://lihkg.com/assets/faces/normal/hoho.gif?t=1", "[hkg:normal/hoho]"),
        ("//cdn.lihkg.com/assets/faces/tiger/angry.gif", "[hkg:tiger/angry]"),
        ("/assets/faces/Normal/Clown.GIF", "[hkg:normal/clown]"),
    ],
)
def test_emoji_from_src(src: str, token: str) -> None:
    assert emoji_from_src(src) == token
    assert EMOJI_TOKEN_RE.fullmatch(token)


@pytest.mark.parametrize(
    "src",
    [
        "https://na.cx/i/ND7jPUp.png",
        "https://evil.example/assets/faces/normal/clown.gif",
        "https://lihkg.com.evil.example/assets/faces/normal/clown.gif",
        "/assets/faces/normal/sub/clown.gif",
        "/assets/faces/normal/clown.svg",
        "",
    ],
)
def test_non_emoji_src_is_none(src: str) -> None:
    assert emoji_from_src(src) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[hkg:normal/clown]", "🤡"),
        ("[hkg:dog/clown]", "🤡"),
        ("[hkg:normal/smile][hkg:normal/dead][hkg:normal/sosad]", "🙂💀😢"),
        ("[hkg:normal/hoho] [hkg:pig/wail] [hkg:cow/angry]", "😆 😭 😡"),
        ("好正[hkg:lm2/mysterious]", "好正[mysterious]"),
        ("no tokens here [hkg:Bad/x", "no tokens here [hkg:Bad/x"),
    ],
)
def test_render_unicode(text: str, expected: str) -> None:
    assert render_emoji(text) == expected


def test_render_text_keeps_tokens() -> None:
    text = "笑死[hkg:normal/clown][hkg:x/y]"
    assert render_emoji(text, style="text") == text


def test_unknown_style_is_rejected() -> None:
    with pytest.raises(ValueError, match="style"):
        render_emoji("x", style="html")

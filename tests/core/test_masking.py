"""Sensitive-word masking: examples, disguises, no false positives, word files, properties."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import core.masking
from core.errors import ConfigError
from core.masking import DEFAULT_WORDS_FILE, Masker, read_word_list


@pytest.fixture(scope="module")
def masker() -> Masker:
    return Masker.default()


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("冇撚用", "冇X用"),
        ("咩撚嘢呀你", "咩X嘢呀你"),
        ("屌你老母", "XXXX"),
        ("屌，你老母", "X，XXX"),
        ("丢你老母", "XXXX"),
        ("仆街啦你", "XX啦你"),
        ("你個on9仔", "你個XXXX"),
        ("戇鳩", "XX"),
        ("食屎啦", "XX啦"),
        ("DLLM!!", "XXXX!!"),
        ("躝屍趌路啦", "XXXX啦"),
        ("冚家鏟", "XXX"),
        ("what the fuck", "what the XXXX"),
        ("diu 佢", "XXX 佢"),
        ("撚手小菜好好食", "撚手小菜好好食"),  # a listed exception
        ("撚手小菜好好食，但係冇撚用", "撚手小菜好好食，但係冇X用"),
    ],
)
def test_examples(masker: Masker, text: str, masked: str) -> None:
    assert masker.mask(text) == masked


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("屌 你 老 母", "X X X X"),  # spaces
        ("屌.你-老*母", "X.X-X*X"),  # punctuation
        ("屌\u200b你\u200c老\u200d母\u2060！\ufeff", "X\u200bX\u200cX\u200dX\u2060！\ufeff"),  # zero-width
        ("仆\ufeff街", "X\ufeffX"),
        ("冇　撚　用", "冇　X　用"),  # full-width space
        ("Ｏｎ９", "XXX"),  # full-width letters and digits
        ("ON9", "XXX"),  # case
        ("oN 9", "XX X"),
        ("ｄ.Ｉ.ｕ", "X.X.X"),
        ("F.u.C.k", "X.X.X.X"),
        ("戆鸠", "XX"),  # simplified
        ("冚家铲", "XXX"),
        ("扑街", "XX"),
        ("屌😂你老母", "X😂XXX"),  # emoji between
        ("𝐨𝐧𝟗", "XXX"),  # mathematical letters
        ("\u043en9", "XXX"),  # Cyrillic о
        ("ón9", "XXX"),  # accent
    ],
)
def test_sees_through_disguises(masker: Masker, text: str, masked: str) -> None:
    assert masker.mask(text) == masked


@pytest.mark.parametrize(
    "text",
    [
        "今日天氣好好，我哋去飲茶啦。",
        "吊燈同埋檯燈邊隻好啲？",
        "佢將啲垃圾丟咗落街。",
        "斑鳩係一種雀，鳩佔鵲巢係成語。",
        "支票寫壹佰零柒元正。",
        "佢仆倒喺街度，好痛。",
        "我哋冚家去旅行。",
        "老母叫我早啲返屋企食飯。",
        "撚手小菜要早啲訂位。",
        "好鍾意食西瓜，呢個西環好靚。",
        "七頭牛食草。",
        "hi 巴打，早晨！",
        "兩隊PK完先至食飯",
        "hidden diuretic Lundon Dickens shitake scunthorpe 7up on 2 lines",
        "person9 salon99 ion9 lungs diurnal",
        "呢個 post 有 9 個 like",
    ],
)
def test_no_false_positives(masker: Masker, text: str) -> None:
    assert masker.find(text) == []
    assert masker.mask(text) == text


def test_ascii_entries_need_word_boundaries(masker: Masker) -> None:
    assert masker.find("hidiuhi") == []
    assert masker.find("x-diu-x") == [(2, 5, "diu")]
    assert masker.find("屌diu") == [(0, 1, "屌"), (1, 4, "diu")]  # CJK next to it is a boundary
    assert masker.find("ｘdiu") == []  # a full-width letter is still a letter


def test_find_spans_index_the_original_text(masker: Masker) -> None:
    text = "講咩呀，屌 你 老 母！"
    spans = masker.find(text)
    assert (4, 11, "屌你老母") in spans
    assert all(text[start] == "屌" for start, _, _ in spans)
    assert masker.find("戆鸠") == [(0, 2, "戇鳩")]  # the listed spelling is reported


def test_blank_entries_never_match() -> None:
    blank = ["", " ", "\t", "\u200b", "，", "  \u3000 "]
    assert len(Masker(blank)) == 0
    assert Masker(blank).mask("今日好熱") == "今日好熱"
    masker = Masker.default(extra_words=blank)
    assert len(masker) == len(Masker.default())
    assert masker.mask("今日好熱，冇撚用") == "今日好熱，冇X用"


def test_extra_words(masker: Masker) -> None:
    extra = Masker.default(extra_words=["壞蛋"])
    assert extra.mask("你個壞蛋") == "你個XX"
    assert masker.mask("你個壞蛋") == "你個壞蛋"


def test_extra_file(tmp_path: Path) -> None:
    words = tmp_path / "words.txt"
    words.write_text("\ufeff# my words\n\n壞蛋  # trailing comment\n  臭蛋\n!壞蛋糕\n   \n", encoding="utf-8")
    assert read_word_list(words) == (["壞蛋", "臭蛋"], ["壞蛋糕"])
    masker = Masker.default(extra_file=words)
    assert masker.mask("壞蛋同臭蛋食壞蛋糕") == "XX同XX食壞蛋糕"
    assert masker.mask("冇撚用") == "冇X用"  # the bundled list is still there
    assert len(Masker.default(extra_file="")) == len(Masker.default())


def test_missing_extra_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="missing.txt"):
        Masker.default(extra_file=tmp_path / "missing.txt")


def test_bundled_list() -> None:
    words = read_word_list(DEFAULT_WORDS_FILE)
    assert len(words.blocked) >= 300
    assert len(Masker(words.blocked)) >= 300  # distinct after folding
    assert len(set(words.blocked)) == len(words.blocked)
    # No entry may contain the mask character, or masked text could match again.
    assert not [w for w in words.blocked if "x" in core.masking._folding().fold(w)]


def test_empty_and_odd_text(masker: Masker) -> None:
    assert masker.mask("") == ""
    assert masker.mask("\ud800屌") == "\ud800X"  # a lone surrogate does not break anything
    assert masker.find("\x00屌\x00") == [(1, 2, "屌")]


# --- properties ---------------------------------------------------------------------------

BLOCKED = sorted(set(read_word_list(DEFAULT_WORDS_FILE).blocked))
SEPARATORS = [" ", "\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", ".", "-", "*", "，", "、", "　", "_", "~"]
SEPARATORS += ["😂", "\n"]
# Filler text: everyday characters, ASCII, punctuation. No 手, so 撚手… exceptions cannot form.
FILLER = st.text(alphabet="今日天氣好我哋你佢係唔啦呢個嘅咗喺度同埋真睇下abc xyz123，。！?\n", max_size=12)


@st.composite
def disguised(draw: st.DrawFn, word: str) -> str:
    """`word` with random separators between characters, full-width letters and case changes."""
    out = []
    for i, char in enumerate(word):
        if char.isascii() and char.isalnum():
            if draw(st.booleans()):
                char = char.upper()
            if draw(st.booleans()):
                char = chr(ord(char) + 0xFEE0)  # full-width form
        if i and draw(st.booleans()):
            out.append("".join(draw(st.lists(st.sampled_from(SEPARATORS), min_size=1, max_size=3))))
        out.append(char)
    return "".join(out)


@settings(max_examples=300)
@given(st.data(), st.sampled_from(BLOCKED), FILLER, FILLER)
def test_no_listed_word_survives_masking(data: st.DataObject, word: str, head: str, tail: str) -> None:
    masker = _default_masker()
    hidden = data.draw(disguised(word))
    # ASCII-edged words only count at word boundaries: give them one.
    text = f"{head} {hidden} {tail}"
    start = len(head) + 1
    end = start + len(hidden)
    assert any(s <= start and end <= e for s, e, _ in masker.find(text)), (text, word)
    masked = masker.mask(text)
    assert masker.find(masked) == []
    expected = "".join(c if c in SEPARATORS else "X" for c in hidden)
    assert masked[start:end] == expected
    assert len(masked) == len(text)


@given(st.text(max_size=60) | FILLER)
def test_masking_never_raises_and_keeps_length(text: str) -> None:
    masker = _default_masker()
    masked = masker.mask(text)
    assert len(masked) == len(text)
    assert masker.find(masked) == []
    for start, end, _ in masker.find(text):
        assert 0 <= start < end <= len(text)


@given(FILLER, st.sampled_from(BLOCKED), FILLER)
def test_find_reports_spans_of_the_original(head: str, word: str, tail: str) -> None:
    text = f"{head} {word} {tail}"
    for start, end, listed in _default_masker().find(text):
        assert core.masking._folding().fold(text[start:end]) == core.masking._folding().fold(listed)


@functools.cache
def _default_masker() -> Masker:
    """Hypothesis tests cannot take function-scoped fixtures; build the masker once."""
    return Masker.default()

"""Cutting long text for chat platforms: every piece fits, nothing is lost, clusters stay whole."""

import doctest
import importlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bots.chat_text import (
    Markup,
    Span,
    first_piece,
    plain_text,
    split_ranges,
    split_spans,
    split_text,
    utf16_len,
)

# Both platforms' rules: Telegram counts UTF-16 units up to 4096, Discord characters up to 2000.
PLATFORMS = [pytest.param(4096, utf16_len, id="telegram"), pytest.param(2000, len, id="discord")]
BOT_MODULES = ["access", "chat_text", "log_redaction", "preferences", "streaming", "telegram_send"]


@pytest.mark.parametrize("module", BOT_MODULES)
def test_docstring_examples(module):
    result = doctest.testmod(importlib.import_module(f"bots.{module}"), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0


@pytest.mark.parametrize("limit, length", PLATFORMS)
def test_paragraphs_are_kept_whole_when_they_fit(limit, length):
    paragraphs = [f"第{i}段：" + "講嘢。" * 150 for i in range(12)]
    pieces = split_text("\n\n".join(paragraphs), limit, length=length)
    assert len(pieces) > 1
    assert all(length(p) <= limit for p in pieces)
    assert all(p.endswith("講嘢。") and p.startswith("第") for p in pieces)
    assert "\n\n".join(pieces) == "\n\n".join(paragraphs)


@pytest.mark.parametrize("limit, length", PLATFORMS)
def test_a_single_huge_sentence_is_cut_at_clauses_then_anywhere(limit, length):
    text = "，".join(["好長好長"] * 2000)
    pieces = split_text(text, limit, length=length)
    assert all(length(p) <= limit for p in pieces)
    assert all(p.endswith("，") for p in pieces[:-1])
    assert "".join(pieces) == text
    solid = "字" * (limit * 2 + 5)
    assert "".join(split_text(solid, limit, length=length)) == solid


def test_utf16_counts_astral_characters_twice():
    text = "🤡" * 3000  # 3000 characters, 6000 UTF-16 units
    pieces = split_text(text, 4096, length=utf16_len)
    assert [utf16_len(p) for p in pieces] == [4096, 1904]
    assert all(len(p) * 2 == utf16_len(p) for p in pieces)  # no half surrogate pair


@pytest.mark.parametrize("cluster", ["👍🏽", "🇭🇰", "👨‍👩‍👧", "é", "1️⃣"])
def test_a_cut_never_splits_what_shows_as_one_character(cluster):
    text = "a" * 9 + cluster * 10
    for piece in split_text(text, 10):
        assert piece.replace("a", "").replace(cluster, "") == ""


def test_limit_must_leave_room():
    with pytest.raises(ValueError):
        split_ranges("abc", 1)


@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=800), st.integers(min_value=8, max_value=300))
@settings(max_examples=300, deadline=None)
def test_any_text_splits_within_the_limit_losing_only_blanks_at_cuts(text, limit):
    ranges = split_ranges(text, limit, length=utf16_len)
    assert all(utf16_len(text[a:b]) <= limit for a, b in ranges)
    assert all(a < b for a, b in ranges)
    kept = "".join(text[a:b] for a, b in ranges)
    dropped = set(text) - set(kept)
    assert dropped <= set("\n \t\u3000")
    assert [a for a, _ in ranges] == sorted(a for a, _ in ranges)


def test_formatted_text_splits_without_losing_formats():
    spans = [Span("標題" * 3, bold=True, url="https://lih.kg/1"), Span("\n\n"), Span("內容。" * 10)]
    pieces = split_spans(spans, 12)
    assert all(len(plain_text(p)) <= 12 for p in pieces)
    assert pieces[0][0] == Span("標題" * 3, bold=True, url="https://lih.kg/1")
    assert all(not span.bold for piece in pieces[1:] for span in piece)
    assert "".join(plain_text(p) for p in pieces) == "標題" * 3 + "內容。" * 10


def test_first_piece_marks_text_still_growing():
    piece = first_piece([Span("字" * 5000)], 4096, length=utf16_len)
    assert utf16_len(plain_text(piece)) <= 4096 and plain_text(piece).endswith(" …")


def test_markup_quotes_link_targets_and_leaves_blank_text_unwrapped():
    html = Markup(escape=lambda t: t.replace("&", "&amp;"), bold="<b>{}</b>", link='<a href="{url}">{}</a>', quote_url=lambda u: u.replace('"', "%22"))
    rendered = html.render([Span("A&B", bold=True, url='https://lih.kg/1?q="x"&p=2'), Span("  ", bold=True), Span("尾")])
    assert rendered == '<a href="https://lih.kg/1?q=%22x%22&p=2"><b>A&amp;B</b></a>  尾'

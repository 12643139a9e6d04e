"""Post HTML to text: line breaks, quotes, links, images, emoji, entities."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.emoji import EMOJI_TOKEN_RE
from core.html_text import post_to_text
from core.lihkg import parse_thread_page

# The shared samples sit beside the checkout; the project never needs them to run.
SAMPLE_PAGE = Path(__file__).resolve().parents[3] / "shared" / "lihkg-samples" / "thread_page.json"


@pytest.mark.parametrize(
    ("html", "text"),
    [
        ("一<br />\n二<br />\n三", "一\n二\n三"),
        ("一<br />\n<br />\n二", "一\n\n二"),
        ("一<br>二<br/>三", "一\n二\n三"),
        ("  <br />\n 前後空白 <br />\n ", "前後空白"),
        ("a    b\t c", "a b c"),
        ("Q&amp;A &lt;3 &quot;ok&quot; &#39;x&#39; &nbsp;y", "Q&A <3 \"ok\" 'x' y"),
        ('<span class="red">紅字</span><strong>粗</strong><em>斜</em><u>底</u><del>刪</del>', "紅字粗斜底刪"),
        ("此回覆已被刪除", "此回覆已被刪除"),
        ("", ""),
    ],
)
def test_lines_and_inline_markup(html: str, text: str) -> None:
    assert post_to_text(html) == text


@pytest.mark.parametrize(
    ("html", "text"),
    [
        ("<blockquote>你講咩</blockquote>冇嘢", "> 你講咩\n冇嘢"),
        ("<blockquote>一<br />\n二</blockquote><br />\n答", "> 一\n> 二\n答"),
        ("<blockquote>一<br />\n<br />\n二</blockquote>", "> 一\n>\n> 二"),
        ("<blockquote><blockquote>最早</blockquote>中間</blockquote>最新", "> > 最早\n> 中間\n最新"),
        ("前面<blockquote>引用</blockquote>後面", "前面\n> 引用\n後面"),
        ("<blockquote><blockquote>雙層</blockquote></blockquote>", "> > 雙層"),
    ],
)
def test_quotes_are_marked_and_nest(html: str, text: str) -> None:
    assert post_to_text(html) == text


@pytest.mark.parametrize(
    ("html", "text"),
    [
        (
            ('睇<a href="https://youtu.be/x" data-sr-url="https://r.lihkg.com/link?u=x" target="_blank">'
            "https://youtu.be/x</a>啦"),
            "睇[連結]啦",
        ),
        ('<img src="https://na.cx/i/x.png" data-thumbnail-src="https://i.lih.kg/thumbnail?u=x" />', "[圖片]"),
        ('<a href="https://i.imgur.com/x.jpg"><img src="https://i.imgur.com/x.jpg" /></a>', "[圖片]"),
        ('<iframe src="https://www.youtube.com/embed/x"></iframe>', "[影片]"),
        ('好笑<img src="/assets/faces/normal/clown.gif" class="hkgmoji" />', "好笑[hkg:normal/clown]"),
        ('<img src="https://cdn.lihkg.com/assets/faces/lomoji/agree.png" class="hkgmoji" />', "[hkg:lomoji/agree]"),
        ('<img src="/weird/face.gif" class="hkgmoji" />笑', "笑"),
        ("<script>alert(1)</script>正文<!-- comment -->", "正文"),
    ],
)
def test_links_images_and_emoji(html: str, text: str) -> None:
    assert post_to_text(html) == text


def test_quote_with_emoji_link_and_image() -> None:
    html = (
        '<blockquote>睇下<a href="https://x.com/">https://x.com/</a><br />\n'
        '<img src="https://x.com/a.jpg" /></blockquote>'
        '正<img src="/assets/faces/pig/wail.gif" class="hkgmoji" />'
    )
    assert post_to_text(html) == "> 睇下[連結]\n> [圖片]\n正[hkg:pig/wail]"


@pytest.mark.skipif(not SAMPLE_PAGE.is_file(), reason="shared LIHKG samples not beside this checkout")
def test_real_sample_page_converts_cleanly() -> None:
    thread = parse_thread_page(json.loads(SAMPLE_PAGE.read_text(encoding="utf-8")))
    assert thread.thread_id == 2651271 and thread.category == "Apps台" and len(thread.posts) == 25
    texts = [post_to_text(post.msg) for post in thread.posts]
    for text in texts:
        assert "<" not in text and "&amp;" not in text and "\n\n\n\n\n" not in text
        assert text == text.strip()
    assert texts[0].startswith("> > [圖片]") and "[連結]" in texts[0]
    assert texts[3] == "[hkg:normal/clown]"
    for post, text in zip(thread.posts, texts):
        assert ("hkgmoji" in post.msg) == bool(EMOJI_TOKEN_RE.search(text))
    quoting = next(p for p in thread.posts if p.quote is not None and p.quote.quote is not None)
    assert post_to_text(quoting.quote.quote.msg)

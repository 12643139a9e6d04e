"""The dataset's HTML helpers: the fast text path equals core.html_text, link/embed detection."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from core.html_text import post_to_text
from pipeline.dataset_html import _simple_post_text, has_link_or_embed, post_text

pytestmark = pytest.mark.timeout(60)

SAMPLES = Path("/work/shared/lihkg-samples/thread_page.json")

PIECES = st.sampled_from([
    "今日好熱", "巴打 你講得啱", "  多 空格  ", "ok!", "a < b", "x > y", "&amp;", "&lt;3", "&nbsp;", "&#39;", "&copy;",
    "&amp", "& ", "\n", "\r\n", "\t", " ", "\f", "\r\n\t", "\u3000全形空格", "\xa0", "😂", "<br />", "<br>", "<br/>\n", "<BR />",
    '<img src="/assets/faces/normal/clown.gif" class="hkgmoji" />',
    '<img src="/assets/faces/lomoji/ok.png" class="hkgmoji" />',
    '<img src="https://cdn.lihkg.com/assets/faces/pig/dying.gif?v=2" class="hkgmoji" />',
    '<img src="/weird/face.gif" class="hkgmoji" />',
    '<img src="https://na.cx/i/x.png" data-thumbnail-src="https://i.lih.kg/thumbnail?u=x&amp;h=1&s={SIZE}" />',
    "<img src=noquote.gif />",
    '<a href="https://x.com/?a=1&b=2" target="_blank">https://x.com/</a>',
    '<a href="https://x.com"><img src="https://na.cx/i/x.png" /></a>',
    '<a href="https://x.com"><img src="/assets/faces/normal/good.gif" class="hkgmoji" /></a>',
    '<a href="https://x.com">未完',
    '<span class="red">紅字</span>', "<strong>粗</strong>", '<span style="color: red;">', "</span>", "<em>", "</div>",
    "<blockquote>引用<br />\n第二行</blockquote>", "<div>塊</div>", "<!-- 註解 -->", "<iframe src=\"https://youtube.com/embed/x\"></iframe>",
])


@settings(max_examples=400)
@given(st.lists(PIECES, max_size=12).map("".join))
@example('<a href="https://x.com">x</a>\r\n\t<a href="https://x.com">y</a>')  # whitespace-only string between tags
@example('<span class="red">紅字</span> <br />\n<br />\n  後面 &amp; 前面 <img src="/assets/faces/normal/clown.gif" class="hkgmoji" />')
def test_fast_path_renders_exactly_like_core_html_text(html: str) -> None:
    assert post_text(html) == post_to_text(html)


def test_fast_path_takes_the_common_posts() -> None:
    common = [
        "好正",
        '就快有<br />\n打住公會先<img src="/assets/faces/cow/sorry.gif" class="hkgmoji" />',
        '<span class="red">注意</span><br />\nQ&amp;A',
        '睇 <a href="https://x.com/a?b=1&c=2" target="_blank">https://x.com/a</a>',
        '<img src="https://na.cx/i/x.png" data-thumbnail-src="https://i.lih.kg/t?u=x&h=1" /><br />\n新手',
    ]
    assert all(_simple_post_text(html) is not None for html in common)


@pytest.mark.skipif(not SAMPLES.is_file(), reason="shared LIHKG samples not present")
def test_real_lihkg_posts_render_the_same() -> None:
    posts = json.loads(SAMPLES.read_text(encoding="utf-8"))["response"]["item_data"]
    assert [post_text(p["msg"]) for p in posts] == [post_to_text(p["msg"]) for p in posts]


@pytest.mark.parametrize(
    ("html", "expected"),
    [
        ("好正", False),
        ('正<img src="/assets/faces/normal/good.gif" class="hkgmoji" />', False),
        ('正<img src="https://cdn.lihkg.com/assets/faces/dog/agree.gif" class="hkgmoji" />', False),
        ("Q&amp;A 同埋 1.5倍", False),
        ("e.g. 呢個同嗰個", False),
        ('<a href="https://x.com">https://x.com</a>', True),
        ('<A HREF="https://x.com">x</A>', True),
        ('<img src="https://na.cx/i/x.png" data-thumbnail-src="https://i.lih.kg/t" />', True),
        ('<img src="/assets/faces/normal/good.gif" data-thumbnail-src="https://i.lih.kg/t" />', True),
        ('<iframe src="https://www.youtube.com/embed/x"></iframe>', True),
        ("<video controls></video>", True),
        ("去 https://x.com 睇", True),
        ("去 www.x.com 睇", True),
        ("上 openrice.com 搵", True),
        ("&lt;a href&gt; 唔係連結", False),
    ],
)
def test_link_or_embed_detection(html: str, expected: bool) -> None:
    assert has_link_or_embed(html) is expected

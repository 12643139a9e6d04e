"""LIHKG thread links found in chat messages: shapes, refusals, and properties."""

from __future__ import annotations

import re

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from core.errors import LinkError
from core.links import ThreadLink, find_links, parse_link


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("https://lihkg.com/thread/3699748/page/1", ThreadLink(3699748, 1)),
        ("https://lihkg.com/thread/3699748/page/3?post=5", ThreadLink(3699748, 3, 5)),
        ("https://lihkg.com/thread/3699748", ThreadLink(3699748)),
        ("https://lihkg.com/thread/3699748/", ThreadLink(3699748)),
        ("https://lihkg.com/thread/3699748/page/2/", ThreadLink(3699748, 2)),
        ("http://lihkg.com/thread/3699748/page/2", ThreadLink(3699748, 2)),
        ("lihkg.com/thread/3699748/page/9999", ThreadLink(3699748, 9999)),
        ("www.lihkg.com/thread/42", ThreadLink(42)),
        ("https://m.lihkg.com/thread/42/page/4?post=9", ThreadLink(42, 4, 9)),
        ("HTTPS://LIHKG.COM/thread/42", ThreadLink(42)),
        ("https://LiHkG.CoM/thread/42/page/2", ThreadLink(42, 2)),
        ("https://lihkg.com:443/thread/42", ThreadLink(42)),
        ("https://lihkg.com/thread/42/page/3?order=reply_time&post=7&x=1", ThreadLink(42, 3, 7)),
        ("https://lihkg.com/thread/42?post=7#top", ThreadLink(42, 1, 7)),
        ("https://lihkg.com/thread/42#reply", ThreadLink(42)),
        ("https://lihkg.com/thread/42?post=abc", ThreadLink(42)),
        ("https://lihkg.com/thread/42?post=0", ThreadLink(42)),
        ("https://lih.kg/3699748", ThreadLink(3699748)),
        ("https://lih.kg/3699748?post=12", ThreadLink(3699748, 1, 12)),
        ("lih.kg/3699748", ThreadLink(3699748)),
        ("www.lih.kg/3699748/", ThreadLink(3699748)),
        ("LIH.KG/3699748", ThreadLink(3699748)),
        ("睇下呢個https://lihkg.com/thread/3699748/page/1好好笑", ThreadLink(3699748)),
        ("睇下呢個lihkg.com/thread/3699748好好笑", ThreadLink(3699748)),
        ("呢度：https://lih.kg/3699748?post=2。", ThreadLink(3699748, 1, 2)),
        ("「https://lihkg.com/thread/3699748/page/2」", ThreadLink(3699748, 2)),
        ("(lihkg.com/thread/3699748)", ThreadLink(3699748)),
        ("see lihkg.com/thread/3699748.", ThreadLink(3699748)),
        ("see lihkg.com/thread/3699748?post=3.", ThreadLink(3699748, 1, 3)),
        ("link:https://lihkg.com/thread/3699748", ThreadLink(3699748)),
        ("\u200bhttps://lihkg.com/thread/3699748\u200b", ThreadLink(3699748)),
        ("lihkg.com/thread/9999999999", ThreadLink(9_999_999_999)),
    ],
)
def test_finds_link(text: str, expected: ThreadLink) -> None:
    assert find_links(text) == [expected]
    assert parse_link(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "冇連結喎",
        "https://evil.com/thread/1",
        "evil.com/thread/1",
        "https://lihkg.com.evil.com/thread/1",
        "https://lihkg.com./thread/1",
        "https://notlihkg.com/thread/1",
        "https://evillihkg.com/thread/1",
        "https://x.lihkg.com/thread/1",
        "https://evil.www.lihkg.com/thread/1",
        "https://lih.kg.evil.com/1",
        "https://lihkg.co/thread/1",
        "https://lihkg.com@evil.com/thread/1",
        "https://evil.com@lihkg.com/thread/1",
        "https://user:pass@lihkg.com/thread/1",
        "https://@lihkg.com/thread/1",
        "https://lihkg.com:8080/thread/1",
        "https://lihkg.com:4430/thread/1",
        "https://lihkg.com:443@evil.com/thread/1",
        "https://1.2.3.4/thread/1",
        "http://[::1]/thread/1",
        "https://l\u0456hkg.com/thread/1",  # Cyrillic і
        "https://lihkg.c\u043em/thread/1",  # Cyrillic о
        "https://ｌｉｈｋｇ.com/thread/1",
        "https://lihkg．com/thread/1",
        "ｗｗｗ．lihkg.com/thread/1",
        "ｌlihkg.com/thread/1",
        "élihkg.com/thread/1",
        "ftp://lihkg.com/thread/1",
        "https://evil.com/lihkg.com/thread/1",
        "https://evil.com/?u=lihkg.com/thread/1",
        "https://evil.com/go?to=https://lihkg.com/thread/1",
        "https://lihkg.com/",
        "https://lihkg.com/thread/",
        "https://lihkg.com/thread/abc",
        "https://lihkg.com/thread/12abc",
        "https://lihkg.com/thread/1.html",
        "https://lihkg.com/thread/1ａ",
        "https://lihkg.com/thread/1/foo",
        "https://lihkg.com/thread/1/page/",
        "https://lihkg.com/thread/1/page/0",
        "https://lihkg.com/thread/1/page/10000",
        "https://lihkg.com/thread/0",
        "https://lihkg.com/thread/12345678901",
        "https://lihkg.com/threads/1",
        "https://lihkg.com/profile/1",
        "https://lihkg.com/category/1",
        "https://lihkg.com/3699748",
        "https://lih.kg/thread/3699748",
        "https://lih.kg/abc",
        "https://lihkg.com/thread/１２３",  # full-width digits
    ],
)
def test_refuses(text: str) -> None:
    assert find_links(text) == []
    with pytest.raises(LinkError):
        parse_link(text)


def test_several_links_in_order_deduplicated_and_limited() -> None:
    text = (
        "第一個 https://lihkg.com/thread/3/page/2 第二個lih.kg/1?post=4，"
        "重覆 https://lihkg.com/thread/3/page/9 同 m.lihkg.com/thread/2"
    )
    assert find_links(text) == [ThreadLink(3, 2), ThreadLink(1, 1, 4), ThreadLink(2)]
    assert find_links(text, limit=2) == [ThreadLink(3, 2), ThreadLink(1, 1, 4)]
    assert find_links(text, limit=0) == []
    many = " ".join(f"lih.kg/{n}" for n in range(1, 30))
    assert [link.thread_id for link in find_links(many)] == list(range(1, 11))


def test_parse_link_error_says_what_was_expected() -> None:
    with pytest.raises(LinkError) as raised:
        parse_link("睇下 https://evil.com/thread/1")
    assert "lihkg.com/thread/<id>" in str(raised.value)
    assert "evil.com" in str(raised.value)
    assert raised.value.user_message.startswith("搵唔到 LIHKG 連結")


def test_canonical_url_and_validation() -> None:
    assert ThreadLink(3699748, 3, 5).url == "https://lihkg.com/thread/3699748/page/3"
    assert parse_link("lih.kg/7").url == "https://lihkg.com/thread/7/page/1"
    for bad in ((0,), (1, 0), (1, 10_000), (1, 1, 0)):
        with pytest.raises(ValueError):
            ThreadLink(*bad)


@pytest.mark.parametrize(
    "junk",
    [
        "a" * 1_000_000,
        "lihkg.com/thread/" * 60_000,
        "https://" * 125_000,
        "www." * 250_000,
        "lihkg.com/thread/1?" + "post=1&" * 140_000,
        "lihkg.com/thread/" + "9" * 1_000_000,
        "好lihkg.com/thread/1/page/1/" * 35_000,
        ("lih.kg/" + "1" * 11 + " ") * 50_000,
    ],
    ids=["letters", "paths", "schemes", "www", "long-query", "long-id", "repeated-valid", "long-short-ids"],
)
@pytest.mark.timeout(60)
def test_linear_time_on_huge_input(junk: str) -> None:
    # Backtracking would make this hours long; the timeout fails it, no clock is asserted.
    find_links(junk)


# --- properties ---------------------------------------------------------------------------

ids = st.integers(min_value=1, max_value=9_999_999_999)
pages = st.integers(min_value=1, max_value=9999)
posts = st.none() | st.integers(min_value=1, max_value=9_999_999_999)
query_words = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_-.~%", min_size=1, max_size=8)


def random_case(draw: st.DrawFn, text: str) -> str:
    return "".join(c.upper() if draw(st.booleans()) else c for c in text)


@st.composite
def valid_links(draw: st.DrawFn) -> tuple[str, ThreadLink]:
    """A link in any accepted shape, with the ThreadLink it stands for."""
    scheme = draw(st.sampled_from(["", "http://", "https://", "HTTPS://"]))
    port = draw(st.sampled_from(["", "", ":443", ":80"]))
    thread_id, post = draw(ids), draw(posts)
    if draw(st.booleans()):
        host = random_case(draw, draw(st.sampled_from(["", "www.", "m."])) + "lihkg.com")
        page = draw(pages)
        page_part = f"/page/{page}" if page != 1 or draw(st.booleans()) else ""
        path = f"/thread/{thread_id}{page_part}"
    else:
        host, page = random_case(draw, draw(st.sampled_from(["", "www."])) + "lih.kg"), 1
        path = f"/{thread_id}"
    path += draw(st.sampled_from(["", "/"]))
    pairs = draw(st.lists(st.tuples(query_words, query_words), max_size=3))
    params = [f"{k}={v}" for k, v in pairs if k != "post"]
    if post is not None:
        params.insert(draw(st.integers(0, len(params))), f"post={post}")
    query = "?" + "&".join(params) if params else ""
    fragment = draw(st.sampled_from(["", "#top", "#reply-3"]))
    return f"{scheme}{host}{port}{path}{query}{fragment}", ThreadLink(thread_id, page, post)


before_link = st.sampled_from([" ", "\n", "好", "：", "「", "(", "，", "\u200b"])
after_link = st.sampled_from([" ", "\n", "好", "。", "」", ")", "，", "!"])


@given(st.text(), before_link, valid_links(), after_link, st.text())
@example("睇下呢個", "", ("https://lihkg.com/thread/3699748/page/1", ThreadLink(3699748)), "", "好好笑")
def test_valid_link_in_random_text_is_found(
    head: str, left: str, link: tuple[str, ThreadLink], right: str, tail: str
) -> None:
    url, expected = link
    text = head + left + url + right + tail
    assert expected in find_links(text, limit=1000)


@given(st.lists(st.tuples(valid_links(), before_link), min_size=1, max_size=6))
def test_several_valid_links_are_all_found_in_order(parts: list[tuple[tuple[str, ThreadLink], str]]) -> None:
    text = "".join(sep + url for (url, _), sep in parts)
    expected: dict[int, ThreadLink] = {}
    for (_, link), _ in parts:
        expected.setdefault(link.thread_id, link)
    assert find_links(text) == list(expected.values())


BAD_HOSTS = [
    "evil.com",
    "lihkg.com.evil.com",
    "notlihkg.com",
    "evillihkg.com",
    "lihkg.co",
    "lihkg.com.",
    "lihkgcom",
    "lih.kg.evil.com",
    "sub.lihkg.com",
    "www2.lihkg.com",
    "1.2.3.4",
    "127.0.0.1",
    "[::1]",
    "l\u0456hkg.com",
    "lihkg.c\u043em",
    "ｌｉｈｋｇ.com",
    "lihkg．com",
    "ｌih.kg",
    "xn--lihkg-9za.com",
]


@st.composite
def hostile_urls(draw: st.DrawFn) -> str:
    """Something that looks like a thread link but is not hosted on lihkg.com / lih.kg."""
    scheme = draw(st.sampled_from(["", "http://", "https://", "//", "ftp://"]))
    path = draw(st.sampled_from(["/thread/123", "/thread/123/page/2", "/123", "/thread/123?post=4"]))
    shape = draw(st.sampled_from(["bad-host", "userinfo", "port", "in-path"]))
    if shape == "bad-host":
        return scheme + draw(st.sampled_from(BAD_HOSTS)) + path
    if shape == "userinfo":
        user = draw(st.sampled_from(["user", "user:pw", "evil.com", "lihkg.com", "", "a%40b"]))
        host = draw(st.sampled_from(["lihkg.com", "lih.kg", "evil.com"]))
        return f"{scheme}{user}@{host}{path}"
    if shape == "port":
        port = draw(st.sampled_from([":8080", ":1", ":4430", ":80443", ":", ":443@evil.com"]))
        return f"{scheme}{draw(st.sampled_from(['lihkg.com', 'lih.kg']))}{port}{path}"
    carrier = draw(st.sampled_from(["evil.com/", "evil.com/?u=", "evil.com/go?to=https://", "evil.com#"]))
    return f"{scheme}{carrier}lihkg.com{path}"


@given(st.lists(hostile_urls(), min_size=1, max_size=4), st.text(alphabet="好 。abc", max_size=5))
def test_hostile_urls_yield_nothing(urls: list[str], glue: str) -> None:
    assert find_links((" " + glue + " ").join(urls)) == []


fragments = st.sampled_from(
    [
        "lihkg.com", "lih.kg", "LIHKG.COM", "/thread/", "/page/", "1", "23", "0", "?post=", "&", "#", "@",
        "evil.com", "https://", "www.", "m.", ":443", ":8080", ".", "/", "ｌ", "\u0456", "好", " ", "9" * 11,
    ]
)  # fmt: skip
messy_text = st.lists(fragments | st.text(max_size=4), max_size=40).map("".join)
LITERAL = "(?:lihkg\\.com(?::443|:80)?/thread/0*{id}|lih\\.kg(?::443|:80)?/0*{id})(?!\\d)"


def stands_alone(text: str, host_at: int) -> bool:
    """The host is not glued to userinfo, a longer host or another URL's path or query."""
    before = text[:host_at].lower()
    for allowed_prefix in ("https://www.", "http://www.", "https://m.", "http://m.", "https://", "http://",
                           "www.", "m."):  # fmt: skip
        if before.endswith(allowed_prefix):
            before = before[: -len(allowed_prefix)]
            break
    return not before or before[-1] not in "@./=?&#abcdefghijklmnopqrstuvwxyz0123456789"


@given(messy_text | st.text())
def test_every_found_link_is_literally_on_lihkg(text: str) -> None:
    for link in find_links(text, limit=1000):
        literal = re.compile(LITERAL.format(id=link.thread_id), re.IGNORECASE | re.ASCII)
        assert any(stands_alone(text, m.start()) for m in literal.finditer(text)), (text, link)


@given(messy_text | st.text() | st.binary().map(lambda b: b.decode("utf-8", "replace")))
def test_find_links_never_raises(text: str) -> None:
    links = find_links(text)
    assert len(links) <= 10
    assert all(isinstance(link, ThreadLink) for link in links)

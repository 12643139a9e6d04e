"""Chat text shared by the bots: the Cantonese lines users see, and cutting long text to fit.

Platform-neutral. A platform passes its own limit and length function: Telegram counts
UTF-16 units up to 4096 (`utf16_len`), Discord counts characters up to 2000 (`len`).
Formatted text is a list of `Span`s, so a cut never leaves a tag open: each platform renders
the spans of every piece itself (HTML for Telegram, Markdown for Discord).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

Length = Callable[[str], int]

EXAMPLE_LINK = "https://lih.kg/3699748"

# --- what users read (one short Cantonese line each, unless it is help) -------------------
WORKING = "諗緊…"
STREAMING_MARK = " …"
EMPTY_REPLY = "（個 AI 諗唔到講咩，再試下啦）"
UNTITLED = "（冇標題）"
NO_LINK_IN_COMMAND = f"/lihkg 後面要跟住 LIHKG 連結，例如：/lihkg {EXAMPLE_LINK}"
CANCELLED = "已經取消咗。"
NOTHING_TO_CANCEL = "你而家冇嘢做緊，唔使取消。"
SHUTTING_DOWN = "bot 重新啟動緊，遲啲再試下。"
UNEXPECTED = "出咗少少問題，遲啲再試下啦。"
ONLY_FIRST_LINK = "（一次只答第一條連結）"


def queue_position(position: int) -> str:
    """The waiting line's message.

    >>> queue_position(3)
    '排緊隊，前面仲有 3 個，輪到你就會開始。'
    """
    return f"排緊隊，前面仲有 {position} 個，輪到你就會開始。"


def help_text(*, group: bool = False) -> str:
    """/start and /help: what the bot does, an example link, the commands."""
    lines = [
        "我係 LiLM，一個學咗連登口吻嘅 AI 🐵",
        "貼條 LIHKG 帖文連結俾我，我就扮連登仔回你一句。",
        f"例如：{EXAMPLE_LINK}",
        "",
        "喺群組：打 /lihkg 連結、@我再貼連結，或者回覆我嘅訊息。" if group else "喺群組都用得：打 /lihkg 連結，或者 @我。",
        "/settings 睇同改呢個對話嘅設定（候選數量、溫度、風格）",
        "/cancel 取消你做緊嘅請求",
        "粗口同敏感字會自動打 X。",
    ]
    return "\n".join(lines)


# --- lengths and cutting -------------------------------------------------------------------


def utf16_len(text: str) -> int:
    """Length in UTF-16 code units, as Telegram counts (emoji outside the BMP count 2).

    >>> utf16_len("abc"), utf16_len("你好"), utf16_len("🤡")
    (3, 2, 2)
    """
    return len(text) + sum(1 for char in text if ord(char) > 0xFFFF)


_SENTENCE_ENDS = frozenset("。！？!?…；;")
_CLAUSE_ENDS = frozenset("，,、：:")
_SPACES = frozenset(" \t\u3000")
_JOINERS = frozenset("\u200d\ufe0e\ufe0f\u20e3")


def split_ranges(text: str, limit: int, *, length: Length = len) -> list[tuple[int, int]]:
    """(start, end) pieces of `text`, each at most `limit` by `length`, cut at the best
    boundary found in the second half of the room: paragraph, line, sentence, clause, space,
    else anywhere that does not split a character cluster. Blank space at a cut is dropped.

    >>> text = "第一段。\\n\\n第二段，好長好長。"
    >>> [text[a:b] for a, b in split_ranges(text, 10)]
    ['第一段。', '第二段，好長好長。']
    """
    if limit < 2:
        raise ValueError(f"limit must be at least 2, got {limit}")
    ranges: list[tuple[int, int]] = []
    pos, size = 0, len(text)
    while pos < size:
        if ranges:
            while pos < size and (text[pos] == "\n" or text[pos] in _SPACES):
                pos += 1
            if pos >= size:
                break
        if length(text[pos:]) <= limit:
            ranges.append((pos, size))
            break
        hard = _fit(text, pos, limit, length)
        end = _best_break(text, pos, hard)
        trimmed = end
        while trimmed > pos and (text[trimmed - 1] == "\n" or text[trimmed - 1] in _SPACES):
            trimmed -= 1
        ranges.append((pos, trimmed if trimmed > pos else end))
        pos = end
    return ranges


def split_text(text: str, limit: int, *, length: Length = len) -> list[str]:
    """`text` in pieces of at most `limit` (see `split_ranges`).

    >>> split_text("一二三四五六七八九十", 4)
    ['一二三四', '五六七八', '九十']
    """
    return [text[a:b] for a, b in split_ranges(text, limit, length=length)]


def _fit(text: str, pos: int, limit: int, length: Length) -> int:
    """The largest end with length(text[pos:end]) <= limit, moved off a cluster's inside."""
    low, high = pos + 1, min(len(text), pos + limit)
    while low < high:  # every character is at least one unit, so the answer is <= pos + limit
        middle = (low + high + 1) // 2
        if length(text[pos:middle]) <= limit:
            low = middle
        else:
            high = middle - 1
    end = low
    while end - 1 > pos and _inside_cluster(text, end):
        end -= 1
    return end


def _inside_cluster(text: str, index: int) -> bool:
    """True when cutting before text[index] would split what shows as one character."""
    if index >= len(text):
        return False
    char, before = text[index], text[index - 1]
    code = ord(char)
    return (
        char in _JOINERS
        or before == "\u200d"
        or unicodedata.combining(char) > 0
        or 0x1F3FB <= code <= 0x1F3FF  # skin tones
        or 0xE0020 <= code <= 0xE007F  # emoji tag sequences
        or (_is_flag_letter(char) and _flag_letters_before(text, index) % 2 == 1)  # inside a flag
    )


def _is_flag_letter(char: str) -> bool:
    return 0x1F1E6 <= ord(char) <= 0x1F1FF


def _flag_letters_before(text: str, index: int) -> int:
    count = 0
    while index - count - 1 >= 0 and _is_flag_letter(text[index - count - 1]):
        count += 1
    return count


def _best_break(text: str, pos: int, hard: int) -> int:
    """Where to end a piece that must end by `hard`: the best boundary past half the room."""
    floor = pos + max(1, (hard - pos) // 2)
    window = text[floor:hard]
    for separator in ("\n\n", "\n"):
        found = window.rfind(separator)
        if found >= 0:
            return floor + found
    for kinds in (_SENTENCE_ENDS, _CLAUSE_ENDS):
        for index in range(hard - 1, floor - 1, -1):
            if text[index] in kinds:
                return index + 1
    for index in range(hard - 1, floor - 1, -1):
        if text[index] in _SPACES:
            return index
    return hard


# --- formatted text ------------------------------------------------------------------------


@dataclass(frozen=True)
class Span:
    """A run of text with one format; platforms render it (`url` makes it a link)."""

    text: str
    bold: bool = False
    italic: bool = False
    code: bool = False
    url: str | None = None


@dataclass(frozen=True)
class Markup:
    """How a platform writes `Span`s: an escape for text and a format per style (`{}` is the
    escaped text; `link` also gets `url`, through `quote_url` if given). Blank text is never
    wrapped (markers would show).

    >>> html = Markup(escape=lambda t: t.replace("<", "&lt;"), bold="<b>{}</b>", link='<a href="{url}">{}</a>')
    >>> html.render([Span("<標題>", bold=True, url="https://lih.kg/1"), Span(" ok")])
    '<a href="https://lih.kg/1"><b>&lt;標題></b></a> ok'
    """

    escape: Callable[[str], str]
    bold: str = "{}"
    italic: str = "{}"
    code: str = "{}"
    link: str = "{}"
    quote_url: Callable[[str], str] | None = None

    def render(self, spans: Sequence[Span]) -> str:
        out = []
        for span in spans:
            text = self.escape(span.text)
            if text.strip():
                for wanted, form in ((span.code, self.code), (span.italic, self.italic), (span.bold, self.bold)):
                    text = form.format(text) if wanted else text
                url = self.quote_url(span.url) if self.quote_url and span.url else span.url
                text = self.link.format(text, url=url) if url else text
            out.append(text)
        return "".join(out)


def plain_text(spans: Sequence[Span]) -> str:
    """The visible text of `spans`, formatting dropped.

    >>> plain_text([Span("標題", bold=True), Span("\\n內容")])
    '標題\\n內容'
    """
    return "".join(span.text for span in spans)


def split_spans(spans: Sequence[Span], limit: int, *, length: Length = len) -> list[list[Span]]:
    """Cut formatted text into pieces whose visible text is at most `limit` each.

    >>> split_spans([Span("一二三", bold=True), Span("四五六")], 4)
    [[Span(text='一二三', bold=True, italic=False, code=False, url=None), Span(text='四', bold=False, italic=False, code=False, url=None)], [Span(text='五六', bold=False, italic=False, code=False, url=None)]]
    """
    text = plain_text(spans)
    return [_slice_spans(spans, start, end) for start, end in split_ranges(text, limit, length=length)]


def first_piece(spans: Sequence[Span], limit: int, *, length: Length = len, mark: str = STREAMING_MARK) -> list[Span]:
    """What fits in one message while text is still growing: the first piece, then `mark`.

    >>> plain_text(first_piece([Span("一二三四五六")], 5, mark="…"))
    '一二三四…'
    """
    pieces = split_spans(spans, limit - length(mark), length=length) or [[]]
    return [*pieces[0], Span(mark)]


def answer_spans(thread, replies: Sequence[str], url: str, *, note: str | None = None, streaming: bool = False) -> list[Span]:
    """An answer's layout on any platform: 【category】 and the title (a link to the thread),
    then the reply or numbered candidates. `thread` has `category` and `title`, already
    masked and emoji-rendered (a `core.reply.ThreadPrompt` as shown).

    >>> from types import SimpleNamespace as Thread
    >>> plain_text(answer_spans(Thread(category="吹水台", title="標題"), ["正", ""], "https://lih.kg/1"))
    '【吹水台】標題\\n\\n1. 正\\n\\n2. （個 AI 諗唔到講咩，再試下啦）'
    """
    spans = [Span(f"【{thread.category}】", bold=True), Span(thread.title or UNTITLED, bold=True, url=url), Span("\n\n")]
    if len(replies) <= 1:
        text = replies[0] if replies else ""
        spans.append(Span(text or (WORKING if streaming else EMPTY_REPLY)))
    else:
        for number, text in enumerate(replies, start=1):
            spans += [Span(f"{number}. ", bold=True), Span(text or EMPTY_REPLY), Span("\n\n")]
        spans.pop()
    if note:
        spans.append(Span(f"\n\n{note}", italic=True))
    return spans


def _slice_spans(spans: Sequence[Span], start: int, end: int) -> list[Span]:
    out: list[Span] = []
    offset = 0
    for span in spans:
        low, high = max(start, offset), min(end, offset + len(span.text))
        if low < high:
            out.append(replace(span, text=span.text[low - offset : high - offset]))
        offset += len(span.text)
    return out

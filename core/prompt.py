"""The one prompt builder, shared by the dataset step and inference.

Training rows and live requests must see byte-identical prompts, so both call
`build_messages`; only inference leaves the assistant turn out.
"""

from __future__ import annotations

from collections.abc import Callable

SYSTEM_MESSAGE = "你係一個 LIHKG 討論區嘅用戶，睇完帖文嘅類別、標題同內容之後，用廣東話回覆一句。"
TRUNCATION_MARK = "……"

TokenCounter = Callable[[str], int]


def format_user_message(category: str, title: str, content: str) -> str:
    """The user turn: category, title and first-post content.

    >>> print(format_user_message("吹水台", "今日好熱", "熱到溶"))
    貼文類別：吹水台
    貼文標題：今日好熱
    貼文內容：
    熱到溶
    """
    return f"貼文類別：{category}\n貼文標題：{title}\n貼文內容：\n{content}"


def build_messages(
    category: str,
    title: str,
    content: str,
    *,
    count_tokens: TokenCounter,
    budget: int = 2048,
    reserve: int = 0,
    system: str | None = None,
    reply: str | None = None,
) -> list[dict[str, str]]:
    """Chat messages for one thread, the content cut by tokens so everything fits `budget`.

    `reserve` keeps room for the reply at inference time; at dataset time pass the reply
    instead and its tokens count against the budget. Raises ValueError when even an empty
    content does not fit (title and system message alone are too long).
    """
    system = system or SYSTEM_MESSAGE
    tail = [{"role": "assistant", "content": reply}] if reply is not None else []
    # Fixed per-message overhead of chat templates (role markers): a safe over-estimate.
    overhead = 8 * (2 + len(tail))
    fixed = count_tokens(system) + count_tokens(format_user_message(category, title, "")) + overhead + reserve
    if reply is not None:
        fixed += count_tokens(reply)
    room = budget - fixed
    if room < 0:
        raise ValueError(f"prompt needs {fixed} tokens before any content, budget is {budget}")
    content = truncate_to_tokens(content, room, count_tokens)
    return [
        {"role": "system", "content": system},
        {"role": "user", "content": format_user_message(category, title, content)},
        *tail,
    ]


def truncate_to_tokens(text: str, limit: int, count_tokens: TokenCounter) -> str:
    """The longest prefix of `text` (plus a mark when cut) that is at most `limit` tokens.

    Binary search over character positions: O(log n) tokenizer calls, not O(n).

    >>> truncate_to_tokens("一二三四五六", 4, len)
    '一二……'
    """
    if count_tokens(text) <= limit:
        return text
    mark_cost = count_tokens(TRUNCATION_MARK)
    if limit < mark_cost:
        return ""
    lo, hi = 0, len(text)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if count_tokens(text[:mid]) + mark_cost <= limit:
            lo = mid
        else:
            hi = mid - 1
    return text[:lo].rstrip() + TRUNCATION_MARK

"""Turn a LIHKG `/api_v2/thread/{id}/page/{p}` JSON payload into a typed `Thread`.

LIHKG's types drift (counts and ids are strings in some responses and ints in others), so
numbers are coerced. Missing optional keys fall back to defaults; a payload that is not a
thread page at all raises `LihkgBadResponse`, an error envelope `ThreadNotFound` or
`LihkgBadResponse`.
"""

from __future__ import annotations

from typing import Any

from core.errors import LihkgBadResponse, ThreadNotFound
from core.thread import Post, Thread

# Error codes LIHKG uses for "nothing here" (missing/removed thread, page past the end).
THREAD_MISSING_CODES = frozenset({100})
# Some deployments answered removed threads with other codes; the message still tells.
_MISSING_WORDS = ("不存在", "找不到", "刪除", "删除", "not found", "not exist")
# Nested quotes are a chain of earlier posts; real chains are short, this bounds bad data.
MAX_QUOTE_DEPTH = 32

# cat_id -> name (2022), used only when a payload lacks its `category` object.
CATEGORY_NAMES: dict[int, str] = {
    1: "吹水台", 2: "熱\u3000門", 3: "最\u3000新", 4: "手機台", 5: "時事台", 6: "體育台",
    7: "娛樂台", 8: "動漫台", 9: "Apps台", 10: "遊戲台", 11: "影視台", 12: "講故台",
    13: "潮流台", 14: "上班台", 15: "財經台", 16: "飲食台", 17: "旅遊台", 18: "學術台",
    19: "校園台", 20: "汽車台", 21: "音樂台", 22: "硬件台", 23: "攝影台", 24: "玩具台",
    25: "寵物台", 26: "軟件台", 27: "活動台", 28: "站務台", 29: "成人台", 30: "感情台",
    31: "創意台", 32: "黑\u3000洞", 33: "政事台", 34: "直播台", 35: "電訊台", 36: "健康台",
    37: "房屋台", 38: "World", 999: "自選台",
}


def coerce_int(value: Any, *, field: str, default: int | None = None) -> int:
    """An int from LIHKG's int-or-string numbers; `default` when missing or blank.

    >>> coerce_int("12", field="like_count"), coerce_int(12, field="like_count")
    (12, 12)
    >>> coerce_int(None, field="page", default=1)
    1
    """
    if isinstance(value, bool):
        value = int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("+-").isdigit():
        return int(value.strip())
    if (value is None or value == "") and default is not None:
        return default
    raise LihkgBadResponse(f"LIHKG field {field!r}: expected an integer, got {value!r:.60}")


def _optional_int(data: dict, key: str, default: int = 0) -> int:
    """Lenient count: a value of the wrong type is dropped rather than failing the thread."""
    try:
        return coerce_int(data.get(key), field=key, default=default)
    except LihkgBadResponse:
        return default


def _text(data: dict, key: str) -> str:
    value = data.get(key)
    if value is None:
        return ""
    if isinstance(value, (str, int)) and not isinstance(value, bool):
        return str(value)
    raise LihkgBadResponse(f"LIHKG field {key!r}: expected text, got {type(value).__name__}")


def _dict(data: dict, key: str) -> dict:
    value = data.get(key)
    return value if isinstance(value, dict) else {}


def raise_for_error_envelope(payload: dict) -> None:
    """Raise the project error for `{success: 0, error_code, error_message}`; else do nothing."""
    success = payload.get("success")
    if success in (1, "1", True):
        return
    if success not in (0, "0", False):
        raise LihkgBadResponse(f"LIHKG answer has no usable 'success' flag (got {success!r:.40})")
    code = payload.get("error_code")
    message = str(payload.get("error_message") or "")
    detail = f"LIHKG error {code!r}: {message[:200]}"
    try:
        numeric_code = coerce_int(code, field="error_code")
    except LihkgBadResponse:
        numeric_code = None
    if numeric_code in THREAD_MISSING_CODES or any(w in message.lower() for w in _MISSING_WORDS):
        raise ThreadNotFound(detail)
    raise LihkgBadResponse(detail)


def parse_thread_page(payload: dict) -> Thread:
    """A `Thread` holding the posts of one page, from the API's whole JSON answer."""
    if not isinstance(payload, dict):
        raise LihkgBadResponse(f"LIHKG answer: expected a JSON object, got {type(payload).__name__}")
    raise_for_error_envelope(payload)
    response = payload.get("response")
    if not isinstance(response, dict):
        raise LihkgBadResponse(f"LIHKG answer: expected a 'response' object, got {type(response).__name__}")
    if "thread_id" not in response or "title" not in response:
        raise LihkgBadResponse(f"LIHKG thread page lacks thread_id/title; keys: {sorted(response)[:12]}")
    items = response.get("item_data", [])
    if not isinstance(items, list):
        raise LihkgBadResponse(f"LIHKG 'item_data': expected a list, got {type(items).__name__}")

    cat_id = _optional_int(response, "cat_id")
    category = _dict(response, "category")
    category_name = _text(category, "name") or CATEGORY_NAMES.get(cat_id, "")
    if not cat_id:
        cat_id = _optional_int(category, "cat_id")
    user = _dict(response, "user")
    parent = _optional_int(response, "parent_thread_id")
    return Thread(
        thread_id=coerce_int(response["thread_id"], field="thread_id"),
        title=_text(response, "title"),
        cat_id=cat_id,
        category=category_name,
        user_id=_text(response, "user_id") or _text(user, "user_id"),
        user_nickname=_text(response, "user_nickname") or _text(user, "nickname"),
        no_of_reply=_optional_int(response, "no_of_reply"),
        like_count=_optional_int(response, "like_count"),
        dislike_count=_optional_int(response, "dislike_count"),
        total_page=max(1, _optional_int(response, "total_page", 1)),
        create_time=_optional_int(response, "create_time"),
        parent_thread_id=parent or None,
        posts=tuple(parse_post(item) for item in items),
        page=max(1, _optional_int(response, "page", 1)),
    )


def parse_post(item: Any, *, depth: int = 0) -> Post:
    """One `item_data` entry (or a nested `quote`) as a `Post`."""
    if not isinstance(item, dict):
        raise LihkgBadResponse(f"LIHKG post: expected an object, got {type(item).__name__}")
    if not item.get("post_id"):
        raise LihkgBadResponse(f"LIHKG post lacks post_id; keys: {sorted(item)[:12]}")
    user = _dict(item, "user")
    quoted = item.get("quote")
    quote = None
    if isinstance(quoted, dict) and quoted and depth < MAX_QUOTE_DEPTH:
        quote = parse_post(quoted, depth=depth + 1)
    return Post(
        post_id=_text(item, "post_id"),
        msg_num=coerce_int(item.get("msg_num"), field="msg_num"),
        msg=_text(item, "msg"),
        user_id=_text(user, "user_id") or _text(item, "user_id"),
        user_nickname=_text(item, "user_nickname") or _text(user, "nickname"),
        like_count=_optional_int(item, "like_count"),
        dislike_count=_optional_int(item, "dislike_count"),
        vote_score=_optional_int(item, "vote_score"),
        reply_time=_optional_int(item, "reply_time"),
        quote_post_id=_text(item, "quote_post_id"),
        status=_optional_int(item, "status", 1),
        quote=quote,
    )

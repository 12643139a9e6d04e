"""Fake LIHKG threads: simple Python descriptions turned into real-shaped API payloads.

`make_thread(...)` builds a `FakeThread` whose `page_payload(p)` is the exact JSON shape of a
real `/api_v2/thread/{id}/page/{p}` answer (25 posts a page), numbers mixed as strings and
ints like the captured responses (`int_counts=True` gives the newer all-int shape).
"""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from core.lihkg_parse import CATEGORY_NAMES

PAGE_SIZE = 25


@dataclass(frozen=True)
class FakePost:
    """A post described simply; `quote` is the msg_num of the post it quotes."""

    msg: str
    user_id: str | None = None
    nickname: str | None = None
    like_count: int = 0
    dislike_count: int = 0
    quote: int | None = None
    reply_time: int | None = None
    status: int = 1


@dataclass(frozen=True)
class FakeThread:
    """A thread the fake server can serve page by page (25 posts a page)."""

    thread_id: int
    title: str
    cat_id: int
    category_name: str
    posts: tuple[FakePost, ...]
    author_id: str = "10001"
    author_nickname: str = "樓主"
    create_time: int = 1_700_000_000
    like_count: int = 0
    dislike_count: int = 0
    parent_thread_id: int | None = None
    int_counts: bool = False  # newer LIHKG answers: ints where older ones had strings

    @property
    def total_page(self) -> int:
        return max(1, -(-len(self.posts) // PAGE_SIZE))

    @property
    def last_reply_time(self) -> int:
        return max((self.reply_time(n) for n in range(1, len(self.posts) + 1)), default=self.create_time)

    def reply_time(self, msg_num: int) -> int:
        return self.posts[msg_num - 1].reply_time or self.create_time + 60 * (msg_num - 1)

    def post_id(self, msg_num: int) -> str:
        return hashlib.sha1(f"{self.thread_id}:{msg_num}".encode()).hexdigest()

    def poster(self, msg_num: int) -> tuple[str, str]:
        """(user_id, nickname) of a post: as described, else the author for #1, else made up."""
        post = self.posts[msg_num - 1]
        user_id = post.user_id or (self.author_id if msg_num == 1 else str(20000 + msg_num))
        nickname = post.nickname or (self.author_nickname if msg_num == 1 else f"巴打{msg_num}")
        return user_id, nickname

    def post_payload(self, msg_num: int, *, depth: int = 0) -> dict[str, Any]:
        """One `item_data` entry; a quoting post carries the quoted one (which may quote again)."""
        post = self.posts[msg_num - 1]
        user_id, nickname = self.poster(msg_num)
        item: dict[str, Any] = {
            "post_id": self.post_id(msg_num),
            "quote_post_id": self.post_id(post.quote) if post.quote else "",
            "thread_id": self._num(self.thread_id),
            "user_nickname": nickname,
            "user_gender": "M",
            "like_count": self._num(post.like_count),
            "dislike_count": self._num(post.dislike_count),
            "vote_score": self._num(post.like_count - post.dislike_count),
            "no_of_quote": self._num(sum(1 for p in self.posts if p.quote == msg_num)),
            "remark": [],
            "status": self._num(post.status),
            "reply_time": self.reply_time(msg_num),
            "msg_num": self._num(msg_num),
            "msg": post.msg,
            "is_minimized_keywords": False,
            "page": (msg_num - 1) // PAGE_SIZE + 1,
            "user": _user_payload(user_id, nickname, self._num),
            "vote_status": "0",
            "display_vote": True,
            "low_quality": False,
        }
        if post.quote and depth < 20:
            item["quote"] = self.post_payload(post.quote, depth=depth + 1)
        return item

    def page_payload(self, page: int) -> dict[str, Any]:
        """The whole JSON answer of `/api_v2/thread/{id}/page/{page}`."""
        numbers = range((page - 1) * PAGE_SIZE + 1, min(page * PAGE_SIZE, len(self.posts)) + 1)
        response = self._summary()
        response.update(
            {
                "user": _user_payload(self.author_id, self.author_nickname, self._num),
                "page": self._num(page),
                "item_data": [self.post_payload(n) for n in numbers],
            }
        )
        if self.parent_thread_id:
            response["parent_thread_id"] = self._num(self.parent_thread_id)
        return {"success": 1, "server_time": int(time.time()), "response": response}

    def list_item_payload(self) -> dict[str, Any]:
        """This thread as one `items[]` entry of a `/thread/category` (latest, hot) answer."""
        item = self._summary()
        item["user"] = _user_payload(self.author_id, self.author_nickname, self._num)
        return item

    def _summary(self) -> dict[str, Any]:
        """The fields a thread page and a list item share, in the captured order."""
        return {
            "thread_id": self._num(self.thread_id),
            "cat_id": self._num(self.cat_id),
            "sub_cat_id": "0",
            "title": self.title,
            "user_id": self._num(self.author_id),
            "user_nickname": self.author_nickname,
            "user_gender": "M",
            "no_of_reply": self._num(len(self.posts)),
            "no_of_uni_user_reply": self._num(len({self.poster(n)[0] for n in range(1, len(self.posts) + 1)})),
            "like_count": self.like_count,
            "dislike_count": self.dislike_count,
            "reply_like_count": self._num(sum(p.like_count for p in self.posts[1:])),
            "reply_dislike_count": self._num(sum(p.dislike_count for p in self.posts[1:])),
            "max_reply_like_count": self._num(max((p.like_count for p in self.posts), default=0)),
            "max_reply_dislike_count": self._num(max((p.dislike_count for p in self.posts), default=0)),
            "create_time": self.create_time,
            "last_reply_time": self.last_reply_time,
            "status": "1",
            "is_adu": False,
            "remark": {"last_reply_count": 0},
            "last_reply_user_id": self._num(self.author_id),
            "max_reply": "1001",
            "total_page": self.total_page,
            "is_hot": False,
            "category": {"cat_id": self._num(self.cat_id), "name": self.category_name, "postable": True},
            "display_vote": True,
            "vote_status": "0",
            "is_bookmarked": False,
            "is_replied": False,
        }

    def _num(self, value: int | str) -> int | str:
        """Numbers as the real API mixes them: strings here (older shape) unless int_counts."""
        return int(value) if self.int_counts else str(value)


def _user_payload(user_id: str, nickname: str, num: Any) -> dict[str, Any]:
    return {
        "user_id": num(user_id),
        "nickname": nickname,
        "level": "10",
        "gender": "M",
        "status": "1",
        "create_time": 1_480_000_000,
        "level_name": "普通會員",
        "is_following": False,
        "is_blocked": False,
        "is_disappear": False,
        "is_newbie": False,
    }


def make_thread(
    thread_id: int,
    title: str,
    cat_id: int = 1,
    posts: Iterable[str | FakePost | dict[str, Any]] = ("一樓",),
    *,
    category_name: str | None = None,
    **thread_fields: Any,
) -> FakeThread:
    """A `FakeThread` from plain strings (the msg HTML), `FakePost`s or FakePost kwargs dicts.

    Extra keywords are `FakeThread` fields (author_id, create_time, int_counts, ...).
    """
    built = tuple(p if isinstance(p, FakePost) else FakePost(p) if isinstance(p, str) else FakePost(**p) for p in posts)
    if not built:
        raise ValueError("a thread needs at least its first post")
    name = category_name if category_name is not None else CATEGORY_NAMES.get(cat_id, f"台{cat_id}")
    return FakeThread(thread_id, title, cat_id, name, built, **thread_fields)


def make_corpus(count: int, *, first_id: int = 1000, cat_ids: tuple[int, ...] = (1, 5, 6), max_posts: int = 130,
                seed: int = 0) -> list[FakeThread]:
    """`count` varied threads (a third single-page, the rest up to `max_posts` posts) with a mix
    of replies: well liked, disliked, quoting, by the author, with links; reproducible per seed."""
    rng = random.Random(seed)
    threads = []
    for index in range(count):
        thread_id = first_id + index
        size = rng.randint(1, 25) if index % 3 == 0 else rng.randint(26, max(26, max_posts))
        posts = [FakePost(f"#{thread_id} 一樓<br />\n{_words(rng)}", user_id="10001", like_count=rng.randint(0, 50))]
        for msg_num in range(2, size + 1):
            likes, dislikes = rng.choice([(rng.randint(20, 90), rng.randint(0, 5)), (rng.randint(0, 8), rng.randint(0, 8)),
                                          (rng.randint(5, 20), rng.randint(10, 40))])
            kind = rng.random()
            msg = _words(rng)
            if kind < 0.05:
                msg += '<a href="https://example.com/x" target="_blank">https://example.com/x</a>'
            posts.append(FakePost(
                msg=f"{msg} ({thread_id}-{msg_num})",
                user_id="10001" if 0.05 <= kind < 0.1 else None,
                like_count=likes,
                dislike_count=dislikes,
                quote=rng.randint(1, msg_num - 1) if 0.1 <= kind < 0.2 else None,
            ))
        threads.append(make_thread(thread_id, f"帖 {thread_id} {_words(rng)[:12]}", rng.choice(cat_ids), posts,
                                   create_time=1_700_000_000 + 97 * index, like_count=rng.randint(0, 99)))
    return threads


_WORDS = ("真係", "好", "笑死", "冇得救", "食咗飯未", "今日", "天氣", "咁熱", "收工", "搞掂", "樓主", "有料", "巴打", "絲打", "頂")


def _words(rng: random.Random) -> str:
    return "".join(rng.choice(_WORDS) for _ in range(rng.randint(2, 12)))

"""Typed LIHKG threads and posts, as the rest of the project sees them."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Post:
    """One post of a thread. `msg` is LIHKG's raw HTML."""

    post_id: str
    msg_num: int
    msg: str
    user_id: str = ""
    user_nickname: str = ""
    like_count: int = 0
    dislike_count: int = 0
    vote_score: int = 0
    reply_time: int = 0
    quote_post_id: str = ""
    status: int = 1
    quote: Post | None = None


@dataclass(frozen=True)
class Thread:
    """A thread with the posts of the pages fetched so far (page 1 holds the first post)."""

    thread_id: int
    title: str
    cat_id: int
    category: str
    user_id: str = ""
    user_nickname: str = ""
    no_of_reply: int = 0
    like_count: int = 0
    dislike_count: int = 0
    total_page: int = 1
    create_time: int = 0
    parent_thread_id: int | None = None
    posts: tuple[Post, ...] = field(default_factory=tuple)
    page: int = 1  # the page `posts` came from (1 holds the first post)

    @property
    def first_post(self) -> Post | None:
        return next((p for p in self.posts if p.msg_num == 1), self.posts[0] if self.posts else None)

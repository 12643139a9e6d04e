"""Scrape databases for tests and benchmarks, written with the scrape contract's schema.

`create_scrape_db` makes an empty database with exactly the `threads`/`posts` tables that
`lilm scrape` writes and `lilm dataset` reads; `synthetic_scrape_db` fills one with a seeded,
LIHKG-like mix: threads of 1-40 pages, Cantonese HTML with emoji and line breaks, most
replies with few votes, some quoting, linking, by the author or carrying vulgar words.
"""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

# The scraper's own schema: the synthetic database is one `lilm scrape` could have written.
from pipeline.scrape_store import SCHEMA as SCRAPE_SCHEMA

THREAD_COLUMNS = "thread_id, cat_id, category, title, user_id, no_of_reply, total_page, fetched_at"
POST_COLUMNS = "post_id, thread_id, msg_num, user_id, like_count, dislike_count, quote_post_id, msg, status"

CATEGORIES = ((1, "吹水台"), (5, "時事台"), (14, "上班台"), (16, "飲食台"), (30, "感情台"), (15, "財經台"), (10, "遊戲台"))
PHRASES = (
    "今日啲天氣真係熱到溶", "巴打你講得啱", "我覺得呢個講法有啲問題", "樓主可唔可以講多啲細節？",
    "笑死我，真係有人咁諗", "呢間茶記個菠蘿油好好食", "佢哋下個禮拜先至會公佈結果", "返工返到好攰，想放假",
    "有冇人知道點樣申請？", "原來係咁，多謝晒", "份人工追唔上樓價", "搭地鐵返工又遲到", "我都係咁話，但係冇人信",
    "去咗日本旅行返嚟", "呢個post正", "good job 巴打", "iPhone 新出嗰部好貴", "ok 冇問題", "第7頭牛",
    "2024年嘅預算案", "咁都得？", "講真，你諗多咗", "我阿媽都係咁講", "唔該晒樓主分享", "留名等更新",
)
SHORT_REPLIES = ("正", "留名", "push", "笑死", "[hkg:normal/good]", "有料", "同意")
VULGAR = ("屌你老母", "仆街", "on9", "撚樣", "柒頭")
EMOJI = ("normal/clown", "normal/good", "normal/hoho", "pig/dying", "cow/sorry", "dog/agree", "lm2/bye", "normal/dead")


def create_scrape_db(path: str | Path) -> sqlite3.Connection:
    """A new database at `path` with the contract's tables (the file must not exist)."""
    connection = sqlite3.connect(path)
    connection.executescript(SCRAPE_SCHEMA)
    return connection


def synthetic_scrape_db(path: str | Path, *, posts: int, seed: int = 0) -> Path:
    """Write about `posts` posts of synthetic threads into a new database at `path`."""
    path = Path(path)
    partial = path.with_name(path.name + ".partial")
    partial.unlink(missing_ok=True)
    connection = create_scrape_db(partial)
    connection.execute("PRAGMA journal_mode = OFF")
    connection.execute("PRAGMA synchronous = OFF")
    rng = random.Random(seed)
    written, thread_id = 0, 1_000_000
    while written < posts:
        thread_id += rng.randint(1, 7)
        thread, thread_posts = _thread(rng, thread_id, limit=posts - written)
        connection.execute(f"INSERT INTO threads ({THREAD_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", thread)
        connection.executemany(f"INSERT INTO posts ({POST_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", thread_posts)
        written += len(thread_posts)
    connection.commit()
    connection.close()
    partial.replace(path)
    return path


def _thread(rng: random.Random, thread_id: int, *, limit: int) -> tuple[tuple, list[tuple]]:
    pages = rng.choices((1, rng.randint(2, 5), rng.randint(6, 20), rng.randint(21, 40)), weights=(40, 30, 20, 10))[0]
    count = min(limit, (pages - 1) * 25 + rng.randint(2, 25))
    author = f"u{rng.randint(1, 20000)}"
    cat_id, category = rng.choice(CATEGORIES)
    title = rng.choice(PHRASES) + rng.choice(("", "？", "（討論）", f"（{thread_id % 97}）"))
    first_reply_by_author = rng.random() < 0.1
    post_ids = [f"{thread_id:012x}{n:028x}" for n in range(1, count + 1)]
    rows = [(post_ids[0], thread_id, 1, author, rng.randint(0, 50), rng.randint(0, 20), "", _first_post(rng), 1)]
    for msg_num in range(2, count + 1):
        by_author = (msg_num == 2 and first_reply_by_author) or rng.random() < 0.06
        user = author if by_author else f"u{rng.randint(1, 20000)}"
        likes, dislikes = _votes(rng)
        quote = post_ids[rng.randrange(msg_num - 1)] if rng.random() < 0.35 else ""
        status = 1 if rng.random() > 0.01 else 5
        rows.append((post_ids[msg_num - 1], thread_id, msg_num, user, likes, dislikes, quote, _reply(rng), status))
    thread = (thread_id, cat_id, category, title, author, count - 1, (count + 24) // 25, 1.7e9)
    return thread, rows


def _votes(rng: random.Random) -> tuple[int, int]:
    """Most replies get a handful of votes; one in ten draws a crowd, mostly approving."""
    roll = rng.random()
    if roll < 0.75:
        return rng.randint(0, 4), rng.randint(0, 1)
    if roll < 0.9:
        return rng.randint(3, 15), rng.randint(0, 4)
    dislikes = rng.randint(0, 30)
    likes = rng.randint(20, 300) if rng.random() < 0.7 else rng.randint(0, 2 * dislikes + 1)
    return likes, dislikes


def _emoji(rng: random.Random) -> str:
    return f'<img src="/assets/faces/{rng.choice(EMOJI)}.gif" class="hkgmoji" />'


def _line(rng: random.Random) -> str:
    parts = [rng.choice(PHRASES) for _ in range(rng.randint(1, 3))]
    if rng.random() < 0.3:
        parts.append(_emoji(rng) * rng.randint(1, 3))
    if rng.random() < 0.05:
        parts.insert(0, f'<span class="red">{rng.choice(PHRASES)}</span>')
    if rng.random() < 0.03:
        parts.append("Q&amp;A")
    return " ".join(parts)


def _reply(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.08:
        return rng.choice(SHORT_REPLIES).replace("[hkg:normal/good]", _emoji(rng))
    lines = [_line(rng) for _ in range(rng.choice((1, 1, 1, 2, 3, 5)))]
    if roll < 0.13:
        lines.append('<a href="https://www.youtube.com/watch?v=abc" target="_blank">https://www.youtube.com/watch?v=abc</a>')
    elif roll < 0.15:
        lines.append('<img src="https://i.imgur.com/x.jpg" data-thumbnail-src="https://i.lih.kg/thumbnail?u=x" />')
    elif roll < 0.18:
        lines.insert(rng.randrange(len(lines) + 1), rng.choice(VULGAR))
    return "<br />\n".join(lines)


def _first_post(rng: random.Random) -> str:
    """Mostly a few lines; 3% run to thousands of characters (cut to the token budget)."""
    count = rng.randint(150, 400) if rng.random() < 0.03 else rng.randint(1, 12)
    lines = [_line(rng) for _ in range(count)]
    if rng.random() < 0.1:
        lines.append('<a href="https://news.example.com/a" target="_blank">https://news.example.com/a</a>')
    if rng.random() < 0.05:
        lines.insert(0, '<blockquote>上一個post講到<br />\n呢度</blockquote>')
    return "<br />\n".join(lines)


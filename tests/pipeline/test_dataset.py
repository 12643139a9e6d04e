"""`lilm dataset` end to end on real SQLite databases: every criterion, duplicates, stats, CLI."""

from __future__ import annotations

import argparse
import json
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.errors import ConfigError
from core.masking import Masker
from core.prompt import SYSTEM_MESSAGE, format_user_message
from core.settings import load_settings
from pipeline.dataset import DatasetOptions, build_dataset
from pipeline.dataset_cli import main as dataset_main
from pipeline.dataset_cli import register
from pipeline.dataset_filters import DROP_REASONS, DatasetCriteria, sensitive_flags
from pipeline.dataset_synthetic import create_scrape_db

pytestmark = pytest.mark.timeout(60)

GOOD = {"likes": 30, "dislikes": 0}
LINK = '睇呢個 <a href="https://www.youtube.com/watch?v=x" target="_blank">https://www.youtube.com/watch?v=x</a>'
IMAGE = '<img src="https://na.cx/i/x.png" data-thumbnail-src="https://i.lih.kg/thumbnail?u=x" />'
EMOJI = '<img src="/assets/faces/normal/good.gif" class="hkgmoji" />'


@dataclass
class Post:
    msg: str
    user: str = "u-other"
    likes: int = 30
    dislikes: int = 0
    quote: str = ""
    status: int = 1


@dataclass
class Thread:
    thread_id: int
    title: str
    first_post: str
    posts: list[Post] = field(default_factory=list)
    author: str = "op"
    category: str = "吹水台"


def write_db(path: Path, threads: list[Thread]) -> Path:
    """A scrape database with the contract's schema holding exactly these threads."""
    connection = create_scrape_db(path)
    with connection:
        for thread in threads:
            connection.execute(
                "INSERT INTO threads (thread_id, cat_id, category, title, user_id, no_of_reply, total_page, fetched_at)"
                " VALUES (?, 1, ?, ?, ?, ?, 1, 0)",
                (thread.thread_id, thread.category, thread.title, thread.author, len(thread.posts)),
            )
            rows = [(f"{thread.thread_id}-1", thread.thread_id, 1, thread.author, 0, 0, "", thread.first_post, 1)]
            for number, post in enumerate(thread.posts, start=2):
                rows.append((f"{thread.thread_id}-{number}", thread.thread_id, number, post.user, post.likes,
                             post.dislikes, post.quote, post.msg, post.status))
            connection.executemany(
                "INSERT INTO posts (post_id, thread_id, msg_num, user_id, like_count, dislike_count, quote_post_id, msg, status)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
    connection.close()
    return path


def read_rows(out_dir: Path) -> dict[str, list[dict]]:
    rows = {}
    for split in ("train", "valid", "test"):
        lines = (out_dir / f"{split}.jsonl").read_text(encoding="utf-8").splitlines()
        rows[split] = [json.loads(line) for line in lines]
        assert lines == [json.dumps(row, ensure_ascii=False) for row in rows[split]]  # plain json.dumps lines
    return rows


def replies_of(out_dir: Path) -> list[str]:
    return [row["messages"][-1]["content"] for rows in read_rows(out_dir).values() for row in rows]


def criteria_threads() -> list[Thread]:
    """One thread with a reply for each criterion, one whose first reply is by the author,
    and one re-post of the first thread (same prompt)."""
    main = Thread(1001, "今晚食乜好？", "諗唔到食乜<br />\n求推介" + EMOJI, [
        Post("好正呀"),                                               # kept (and the thread's first reply)
        Post("已刪除", status=5),                                     # deleted
        Post("樓主自己覆", user="op"),                                # by_author
        Post("quote 你", quote="1001-2"),                             # quotes_another_post
        Post("唔夠票", likes=15, dislikes=4),                         # too_few_votes (19 votes)
        Post("好多人唔like", likes=21, dislikes=10),                  # not_positive (21 < 2 x 11)
        Post("啱啱夠正面", likes=22, dislikes=10),                    # kept: 22 >= 22
        Post("啱啱夠票", likes=20, dislikes=0),                       # kept: 20 votes
        Post(LINK),                                                   # link_or_embed
        Post(IMAGE),                                                  # link_or_embed
        Post("去 www.openrice.com 搵下"),                             # link_or_embed (bare address)
        Post(EMOJI + EMOJI),                                          # kept: emoji are text
        Post("屌你老母咩"),                                           # sensitive_word
        Post(" <br />\n "),                                           # empty_text
        Post("好正呀 "),                                              # duplicate (normalized)
        Post("ＯＫ 冇問題<br />\n<span class=\"red\">真係</span>"),   # kept
    ])
    author_first = Thread(1002, "我先覆自己", "開post", [Post("補充", user="op"), Post("好正呀"), Post("正", status=5)])
    repost = Thread(1003, main.title, main.first_post, [Post("好正呀"), Post("正")])  # duplicate, kept
    return [main, author_first, repost]


EXPECTED_DROPS = {
    "deleted": 2, "first_reply_by_author": 2, "by_author": 1, "quotes_another_post": 1, "too_few_votes": 1,
    "not_positive": 1, "link_or_embed": 3, "empty_text": 1, "sensitive_word": 1, "duplicate": 2, "over_token_budget": 0,
}
EXPECTED_KEPT = ["好正呀", "啱啱夠正面", "啱啱夠票", "[hkg:normal/good][hkg:normal/good]", "ＯＫ 冇問題\n真係", "正"]


@pytest.fixture
def criteria_db(tmp_path: Path) -> Path:
    return write_db(tmp_path / "scrape.sqlite3", criteria_threads())


def test_each_criterion_drops_exactly_its_replies(criteria_db: Path, tmp_path: Path) -> None:
    result = build_dataset(criteria_db, tmp_path / "out")

    assert result.stats.dropped == EXPECTED_DROPS
    assert sorted(replies_of(tmp_path / "out")) == sorted(EXPECTED_KEPT)
    assert result.stats.replies == sum(EXPECTED_DROPS.values()) + len(EXPECTED_KEPT) == 21
    assert result.stats.threads == 3
    saved = json.loads((tmp_path / "out" / "stats.json").read_text(encoding="utf-8"))
    assert saved["dropped"] == EXPECTED_DROPS and saved["kept"] == len(EXPECTED_KEPT)
    assert list(saved["dropped"]) == list(DROP_REASONS)
    assert saved["config"]["criteria"]["min_votes"] == 20 and saved["config"]["seed"] == 0
    assert saved["config"]["ratios"] == {"train": 0.8, "valid": 0.1, "test": 0.1}


def test_rows_are_built_by_the_core_prompt_builder(criteria_db: Path, tmp_path: Path) -> None:
    build_dataset(criteria_db, tmp_path / "out")

    rows = [row for rows in read_rows(tmp_path / "out").values() for row in rows]
    first = next(row for row in rows if row["messages"][-1]["content"] == "好正呀")
    assert first["messages"] == [
        {"role": "system", "content": SYSTEM_MESSAGE},
        {"role": "user", "content": format_user_message("吹水台", "今晚食乜好？", "諗唔到食乜\n求推介[hkg:normal/good]")},
        {"role": "assistant", "content": "好正呀"},
    ]


@pytest.mark.parametrize(
    ("criteria", "now_kept"),
    [
        (DatasetCriteria(min_votes=19), ["唔夠票"]),
        (DatasetCriteria(positive_ratio=1.9), ["好多人唔like"]),
        (DatasetCriteria(drop_quotes=False), ["quote 你"]),
        (DatasetCriteria(drop_author_replies=False), ["樓主自己覆"]),
        (DatasetCriteria(drop_links=False), ["睇呢個 [連結]", "[圖片]", "去 www.openrice.com 搵下"]),
        (DatasetCriteria(drop_sensitive=False), ["屌你老母咩"]),
        (DatasetCriteria(first_reply_not_by_author=False), ["好正呀"]),  # thread 1002's (a new prompt)
    ],
)
def test_thresholds_and_switches_are_configurable(criteria_db: Path, tmp_path: Path, criteria, now_kept) -> None:
    build_dataset(criteria_db, tmp_path / "out", options=DatasetOptions(criteria=criteria))

    assert sorted(replies_of(tmp_path / "out")) == sorted(EXPECTED_KEPT + now_kept)


def test_an_empty_word_list_drops_nothing_as_sensitive(criteria_db: Path, tmp_path: Path) -> None:
    result = build_dataset(criteria_db, tmp_path / "out", masker=Masker([]))

    assert result.stats.dropped["sensitive_word"] == 0
    assert sorted(replies_of(tmp_path / "out")) == sorted([*EXPECTED_KEPT, "屌你老母咩"])


def test_extra_sensitive_words_drop_their_replies(criteria_db: Path, tmp_path: Path) -> None:
    result = build_dataset(criteria_db, tmp_path / "out", masker=Masker.default(extra_words=["菠蘿包", "正面"]))

    assert "啱啱夠正面" not in replies_of(tmp_path / "out")
    assert result.stats.dropped["sensitive_word"] == 2


def test_quotes_and_links_are_judged_on_the_reply_not_the_first_post(tmp_path: Path) -> None:
    thread = Thread(7, "新聞", "<blockquote>引用</blockquote>" + LINK, [Post("有冇人睇咗")], author="op")
    build_dataset(write_db(tmp_path / "db.sqlite3", [thread]), tmp_path / "out")

    (row,) = [row for rows in read_rows(tmp_path / "out").values() for row in rows]
    assert row["messages"][1]["content"].endswith("> 引用\n睇呢個 [連結]")


def test_completions_format(criteria_db: Path, tmp_path: Path) -> None:
    build_dataset(criteria_db, tmp_path / "out", options=DatasetOptions(output_format="completions"))

    rows = [row for rows in read_rows(tmp_path / "out").values() for row in rows]
    assert sorted(row["completion"] for row in rows) == sorted(EXPECTED_KEPT)
    assert all(set(row) == {"prompt", "completion"} and row["prompt"].startswith("貼文類別：") for row in rows)


def test_no_partial_files_are_left_and_output_is_rewritten(criteria_db: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    build_dataset(criteria_db, out)
    build_dataset(criteria_db, out)

    assert sorted(p.name for p in out.iterdir()) == ["stats.json", "test.jsonl", "train.jsonl", "valid.jsonl"]
    assert len(replies_of(out)) == len(EXPECTED_KEPT)


def test_cli_registers_and_runs(criteria_db: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    parser = argparse.ArgumentParser(prog="lilm")
    register(parser.add_subparsers(dest="command"))
    out = tmp_path / "cli-out"
    args = parser.parse_args(["dataset", "--db", str(criteria_db), "--out", str(out), "--min-votes", "19", "--seed", "3"])

    assert args.run(args, load_settings(env_file=None, environ={})) == 0
    printed = capsys.readouterr().out
    assert "too_few_votes" in printed and "rows kept" in printed
    assert sorted(replies_of(out)) == sorted([*EXPECTED_KEPT, "唔夠票"])


def test_cli_reports_a_missing_database(tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no .env from the working tree
    assert dataset_main(["--db", str(tmp_path / "nope.sqlite3"), "--out", str(tmp_path / "o")]) == 1
    assert "nope.sqlite3" in capsys.readouterr().err


def test_cli_rejects_bad_split(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        dataset_main(["--split", "0.5,0.1,0.1"])
    assert "adding up to 1" in capsys.readouterr().err


@pytest.fixture(scope="module")
def default_masker() -> Masker:
    return Masker.default(extra_words=["on9", "diu"])


@settings(max_examples=200)
@given(texts=st.lists(st.text(alphabet=st.sampled_from(list("屌你老母撚冇用好正 on9diuON9.，\n\ue000😂a1")), max_size=12), max_size=8))
def test_batched_sensitive_check_equals_one_find_per_text(default_masker: Masker, texts: list[str]) -> None:
    assert sensitive_flags(default_masker, texts) == [bool(default_masker.find(text)) for text in texts]


def test_a_file_that_is_not_a_scrape_database_is_refused(tmp_path: Path) -> None:
    not_sqlite = tmp_path / "notes.txt"
    not_sqlite.write_text("hello " * 100, encoding="utf-8")
    other = tmp_path / "other.sqlite3"
    sqlite3.connect(other).executescript("CREATE TABLE threads (thread_id INTEGER); CREATE TABLE posts (msg TEXT);")

    for path in (not_sqlite, other):
        with pytest.raises(ConfigError):
            build_dataset(path, tmp_path / "out")
    assert not any((tmp_path / "out").glob("*.partial"))


def test_a_model_directory_without_tokenizer_is_refused(criteria_db: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="tokenizer.json"):
        build_dataset(criteria_db, tmp_path / "out", model_dir=tmp_path)

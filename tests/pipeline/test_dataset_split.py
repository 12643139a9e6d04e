"""Train/valid/test split by thread: no leakage, reproducible, stable as the database grows."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from pipeline.dataset import DatasetOptions, build_dataset
from pipeline.dataset_split import DuplicateIndex, SplitRatios, split_of_thread
from tests.pipeline.test_dataset import Post, Thread, write_db

pytestmark = pytest.mark.timeout(60)


def many_threads(count: int, *, start: int = 5000) -> list[Thread]:
    """Threads with unique titles and three kept replies each."""
    return [
        Thread(thread_id, f"第{thread_id}個post", f"內容{thread_id}", [Post(f"回覆{thread_id}-{n}") for n in range(3)])
        for thread_id in range(start, start + count)
    ]


def split_of_titles(out_dir: Path) -> dict[str, set[str]]:
    """Split name -> titles of the threads whose rows landed there."""
    titles: dict[str, set[str]] = {}
    for split in ("train", "valid", "test"):
        for line in (out_dir / f"{split}.jsonl").read_text(encoding="utf-8").splitlines():
            user = json.loads(line)["messages"][1]["content"]
            titles.setdefault(split, set()).add(user.split("\n")[1])
    return titles


def test_threads_never_straddle_splits(tmp_path: Path) -> None:
    result = build_dataset(write_db(tmp_path / "db.sqlite3", many_threads(300)), tmp_path / "out")

    titles = split_of_titles(tmp_path / "out")
    assert not titles["train"] & titles["test"] and not titles["valid"] & titles["test"] and not titles["train"] & titles["valid"]
    assert sum(map(len, titles.values())) == 300
    assert result.stats.rows == {split: 3 * len(titles[split]) for split in ("train", "valid", "test")}
    assert result.stats.threads_used == {split: len(titles[split]) for split in ("train", "valid", "test")}
    # 80/10/10 of 300 threads, within a generous binomial margin.
    assert 210 <= len(titles["train"]) <= 270 and 12 <= len(titles["valid"]) <= 50 and 12 <= len(titles["test"]) <= 50


def test_same_seed_same_files_other_seed_other_split(tmp_path: Path) -> None:
    db = write_db(tmp_path / "db.sqlite3", many_threads(200))
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        build_dataset(db, tmp_path / name, options=DatasetOptions(seed=seed))

    for split in ("train", "valid", "test"):
        assert (tmp_path / "a" / f"{split}.jsonl").read_bytes() == (tmp_path / "b" / f"{split}.jsonl").read_bytes()
    assert split_of_titles(tmp_path / "a")["test"] != split_of_titles(tmp_path / "c")["test"]


def test_adding_threads_never_moves_old_ones(tmp_path: Path) -> None:
    threads = many_threads(300)
    build_dataset(write_db(tmp_path / "small.sqlite3", threads[:150]), tmp_path / "small")
    build_dataset(write_db(tmp_path / "big.sqlite3", threads), tmp_path / "big")

    small, big = split_of_titles(tmp_path / "small"), split_of_titles(tmp_path / "big")
    for split in ("train", "valid", "test"):
        assert small[split] <= big[split]


def test_split_function_is_deterministic_and_follows_ratios() -> None:
    shares = Counter(split_of_thread(thread_id, seed=7) for thread_id in range(20_000))
    assert [split_of_thread(i, seed=7) for i in range(50)] == [split_of_thread(i, seed=7) for i in range(50)]
    assert abs(shares["train"] / 20_000 - 0.8) < 0.02 and abs(shares["test"] / 20_000 - 0.1) < 0.015
    only_train = SplitRatios(train=1.0, valid=0.0, test=0.0)
    assert {split_of_thread(i, seed=7, ratios=only_train) for i in range(500)} == {"train"}
    with pytest.raises(ValueError):
        SplitRatios(0.5, 0.2, 0.2)


def test_duplicate_index_keys_on_prompt_and_reply() -> None:
    index = DuplicateIndex()
    prompt_a, prompt_b = DuplicateIndex.prompt_key("吹水台", "A", "x"), DuplicateIndex.prompt_key("吹水台", "B", "x")
    assert index.add(prompt_a, "正") and index.add(prompt_b, "正")
    assert not index.add(prompt_a, "正")
    assert len(index) == 2

"""The token budget is measured with the target model's real tokenizer and chat template,
and the written dataset loads and tokenizes in mlx-lm exactly as counted."""

from __future__ import annotations

import json
import types
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.prompt import TRUNCATION_MARK, build_messages
from core.settings import DEFAULT_MODEL_DIR
from pipeline.dataset import DatasetOptions, build_dataset
from pipeline.dataset_filters import DatasetCriteria
from pipeline.dataset_tokens import ChatTokenCounter
from tests.pipeline.test_dataset import Post, Thread, read_rows, write_db

pytestmark = pytest.mark.timeout(120)

LINES = st.lists(
    st.text(alphabet=st.sampled_from(list("好正呀，。！？ \t abcXYZ123[]:/_-😂\u3000")), max_size=30), min_size=1, max_size=8
)


@pytest.fixture(scope="module")
def counter() -> ChatTokenCounter:
    return ChatTokenCounter.from_model_dir(DEFAULT_MODEL_DIR)


@pytest.fixture(scope="module")
def mlx_tokenizer():
    from mlx_lm.utils import load_tokenizer

    return load_tokenizer(DEFAULT_MODEL_DIR)


def test_line_counts_are_exact_for_the_shipped_tokenizer(counter: ChatTokenCounter) -> None:
    assert counter.line_counts_exact


@given(lines=LINES, joiner=st.sampled_from(["\n", "\n\n", "\n \n", " \n"]))
def test_text_counts_equal_direct_encoding(counter: ChatTokenCounter, lines: list[str], joiner: str) -> None:
    text = joiner.join(lines)
    assert counter(text) == counter.encode_length(text)
    for cut in range(0, len(text), 7):
        assert counter(text[:cut]) == counter.encode_length(text[:cut])


@given(content=LINES.map("\n".join), reply=st.text(alphabet="好正呀，😂 ab\n", min_size=1, max_size=40))
def test_chat_lengths_equal_encoding_the_rendered_template(counter: ChatTokenCounter, content: str, reply: str) -> None:
    chats = [build_messages("吹水台", "標題", content, count_tokens=counter, reply=reply + suffix) for suffix in ("", "!", "??")]
    expected = [counter.encode_length(counter.render(chat)) for chat in chats]
    assert counter.chat_lengths(chats) == expected


def test_counts_match_mlx_lm_chat_tokenization(counter: ChatTokenCounter, mlx_tokenizer) -> None:
    chats = [
        build_messages("吹水台", "今晚食乜", f"第{n}行\n  縮排\n😂😂 {'長' * n}", count_tokens=counter, reply=f"好正{n}")
        for n in range(0, 60, 7)
    ]
    expected = [len(mlx_tokenizer.apply_chat_template(chat, return_dict=False)) for chat in chats]
    assert counter.chat_lengths(chats) == expected


def test_long_first_posts_are_cut_by_tokens_to_the_budget(tmp_path: Path, counter: ChatTokenCounter, mlx_tokenizer) -> None:
    long_post = "<br />\n".join(f"第{n}段：今日好熱，熱到溶，冷氣開到盡都冇用" for n in range(400))
    threads = [Thread(1, "長post", long_post, [Post("好正"), Post("真係好長" * 30)]), Thread(2, "短post", "短", [Post("短回覆")])]
    budget = 300
    result = build_dataset(write_db(tmp_path / "db.sqlite3", threads), tmp_path / "out",
                           options=DatasetOptions(criteria=DatasetCriteria(max_tokens=budget)))

    rows = [row for rows in read_rows(tmp_path / "out").values() for row in rows]
    assert result.stats.kept == 3 and result.stats.dropped["over_token_budget"] == 0
    lengths = [len(mlx_tokenizer.apply_chat_template(row["messages"], return_dict=False)) for row in rows]
    assert max(lengths) <= budget
    long_rows = [row for row in rows if row["messages"][1]["content"].startswith("貼文類別：吹水台\n貼文標題：長post")]
    assert all(row["messages"][1]["content"].endswith(TRUNCATION_MARK) for row in long_rows)
    # Cut by tokens, not characters, once per thread (for its longest reply): that chat uses
    # nearly all of the budget, and every reply of the thread gets the same first post.
    assert max(length for row, length in zip(rows, lengths) if row in long_rows) > budget - 30
    assert len({row["messages"][1]["content"] for row in long_rows}) == 1


def test_replies_that_cannot_fit_are_dropped(tmp_path: Path) -> None:
    threads = [Thread(1, "標題", "內容", [Post("好正"), Post("長" * 400)])]
    result = build_dataset(write_db(tmp_path / "db.sqlite3", threads), tmp_path / "out",
                           options=DatasetOptions(criteria=DatasetCriteria(max_tokens=200)))

    assert result.stats.dropped["over_token_budget"] == 1 and result.stats.kept == 1


def test_output_loads_with_mlx_lm_load_dataset(tmp_path: Path, mlx_tokenizer) -> None:
    from mlx_lm.tuner.datasets import load_dataset

    threads = [Thread(n, f"第{n}個post", f"內容{n}<br />\n第二行", [Post(f"回覆{n}-{k}") for k in range(3)]) for n in range(60)]
    build_dataset(write_db(tmp_path / "db.sqlite3", threads), tmp_path / "out")
    args = types.SimpleNamespace(data=str(tmp_path / "out"), train=True, test=True, hf_dataset=False, mask_prompt=True)

    train, valid, test = load_dataset(args, mlx_tokenizer)

    assert len(train) + len(valid) + len(test) == 180 and min(len(train), len(valid), len(test)) > 0
    tokens, offset = train.process(train[0])
    assert 0 < offset < len(tokens)
    counter = ChatTokenCounter.from_model_dir(DEFAULT_MODEL_DIR)
    assert len(tokens) == counter.chat_lengths([train[0]["messages"]])[0]


def test_completions_output_loads_with_mlx_lm(tmp_path: Path, mlx_tokenizer) -> None:
    from mlx_lm.tuner.datasets import load_dataset

    threads = [Thread(n, f"第{n}個post", "內容", [Post("好正")]) for n in range(40)]
    build_dataset(write_db(tmp_path / "db.sqlite3", threads), tmp_path / "out", options=DatasetOptions(output_format="completions"))
    args = types.SimpleNamespace(data=str(tmp_path / "out"), train=True, test=False, hf_dataset=False, mask_prompt=False)

    train, _valid, _test = load_dataset(args, mlx_tokenizer)

    first = json.loads((tmp_path / "out" / "train.jsonl").read_text(encoding="utf-8").splitlines()[0])
    tokens, _ = train.process(train[0])
    assert mlx_tokenizer.decode(tokens).count(first["completion"]) == 1


def test_reading_only_the_head_of_a_long_first_post_changes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline import dataset

    story = "<br />\n".join(f"第{n}段 <span class=\"red\">今日</span>好熱，熱到溶 abc def" for n in range(300))
    threads = [Thread(1, "長故事", story, [Post("好正"), Post("追"), Post("長回覆" * 20)])]
    db = write_db(tmp_path / "db.sqlite3", threads)
    options = DatasetOptions(criteria=DatasetCriteria(max_tokens=400))
    build_dataset(db, tmp_path / "head", options=options)
    monkeypatch.setattr(dataset, "FIRST_POST_HTML_CHARS_PER_TOKEN", 10**9)  # read every post whole
    build_dataset(db, tmp_path / "whole", options=options)

    for split in ("train", "valid", "test"):
        assert (tmp_path / "head" / f"{split}.jsonl").read_bytes() == (tmp_path / "whole" / f"{split}.jsonl").read_bytes()
    assert sum(len(rows) for rows in read_rows(tmp_path / "head").values()) == 3

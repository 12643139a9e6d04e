import pytest

from core.prompt import (
    SYSTEM_MESSAGE,
    TRUNCATION_MARK,
    build_messages,
    format_user_message,
)


def test_inference_prompt_is_system_plus_user():
    messages = build_messages("時事台", "標題", "內容", count_tokens=len)
    assert [m["role"] for m in messages] == ["system", "user"]
    assert messages[0]["content"] == SYSTEM_MESSAGE
    assert messages[1]["content"] == format_user_message("時事台", "標題", "內容")


def test_training_row_shares_the_prefix_with_inference():
    inference = build_messages("吹水台", "t", "c", count_tokens=len)
    training = build_messages("吹水台", "t", "c", count_tokens=len, reply="好嘢")
    assert training[:2] == inference
    assert training[2] == {"role": "assistant", "content": "好嘢"}


def test_long_content_is_cut_by_tokens_to_fit_the_budget():
    content = "長" * 5000
    messages = build_messages("吹水台", "t", content, count_tokens=len, budget=600, reserve=100)
    total = sum(len(m["content"]) for m in messages) + 8 * 2 + 100
    assert total <= 600
    assert messages[1]["content"].endswith(TRUNCATION_MARK)
    # as much content as fits: within a few tokens of the limit
    assert total > 600 - 5


def test_token_counter_not_characters_decides_the_cut():
    # A tokenizer where every character costs 3 tokens keeps a third as many characters.
    by_chars = build_messages("c", "t", "字" * 900, count_tokens=len, budget=400)
    by_tokens = build_messages("c", "t", "字" * 900, count_tokens=lambda s: 3 * len(s), budget=400)
    assert len(by_tokens[1]["content"]) < len(by_chars[1]["content"])


def test_custom_system_message():
    messages = build_messages("c", "t", "x", count_tokens=len, system="你係連登仔")
    assert messages[0]["content"] == "你係連登仔"


def test_budget_too_small_for_title_is_a_clear_error():
    with pytest.raises(ValueError, match="budget"):
        build_messages("c", "好長標題" * 100, "x", count_tokens=len, budget=50)

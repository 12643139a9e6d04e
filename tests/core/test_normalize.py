"""Clean-up of generated replies: reasoning, special tokens, blank lines, HK characters."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.normalize import (
    clean_reply,
    strip_reasoning,
    strip_special_tokens,
    to_hk_traditional,
)


@pytest.mark.parametrize(
    ("simplified", "traditional"),
    [
        ("这个东西几多钱", "這個東西幾多錢"),
        ("头发好长，干净", "頭髮好長，乾淨"),
        ("后生仔去台湾食饭", "後生仔去台灣食飯"),
        ("里面有着数", "裏面有着數"),  # Hong Kong forms, not Taiwan ones (裡, 著)
        ("佢哋喺度睇嘢，冇乜嘢啲咁嚟噉", "佢哋喺度睇嘢，冇乜嘢啲咁嚟噉"),  # Cantonese kept
        ("巴打你講得啱", "巴打你講得啱"),
        ("LIHKG 好正 😂", "LIHKG 好正 😂"),
        ("", ""),
    ],
)
def test_to_hk_traditional(simplified: str, traditional: str) -> None:
    assert to_hk_traditional(simplified) == traditional


@pytest.mark.parametrize(
    ("raw", "kept"),
    [
        ("<think>佢問咩？</think>好正", "好正"),
        ("<think>\n一\n二\n</think>\n\n好正", "\n\n好正"),
        ("前面<think>諗</think>中間<think>再諗</think>後面", "前面中間後面"),
        ("<think>諗到一半冇收尾", ""),
        ("好正<think>諗到一半", "好正"),
        ("模板開咗個頭，我喺度諗…</think>好正", "好正"),
        ("a</think>b</think>c", "c"),
        ("<think>a<think>b</think>c</think>d", "d"),
        ("冇思考", "冇思考"),
        ("<THINK>大楷唔係標籤</THINK>", "<THINK>大楷唔係標籤</THINK>"),
        ("", ""),
    ],
)
def test_strip_reasoning(raw: str, kept: str) -> None:
    assert strip_reasoning(raw) == kept


@pytest.mark.parametrize(
    ("raw", "tokens", "kept"),
    [
        ("好正<|im_end|>", (), "好正"),
        ("<|im_start|>assistant\n好正<|eot_id|>", (), "assistant\n好正"),
        ("好正<｜end▁of▁sentence｜>", (), "好正"),
        ("好正</s>[EOS]", ("</s>", "[EOS]"), "好正"),
        ("好正", ("", ""), "好正"),  # an empty token must not do anything
        ("a <| not a token |> b", (), "a <| not a token |> b"),
        ("x < y | z > w", (), "x < y | z > w"),
    ],
)
def test_strip_special_tokens(raw: str, tokens: tuple[str, ...], kept: str) -> None:
    assert strip_special_tokens(raw, tokens) == kept


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("<think>嗯</think>\n\n这个post正<|im_end|>", "這個post正"),
        ("好\ufffd正\ufffd", "好正"),
        ("好正<|im_\ufffdend|>", "好正"),
        ("一\n\n\n\n\n二", "一\n\n二"),
        ("一\n \n\t\n二", "一\n\n二"),
        ("一\n\n二", "一\n\n二"),
        ("一\r\n\r\n\r\n二", "一\n\n二"),
        ("   \n 好正 \n\n", "好正"),
        ("<think>淨係諗</think>", ""),
    ],
)
def test_clean_reply(raw: str, clean: str) -> None:
    assert clean_reply(raw) == clean


def test_clean_reply_removes_given_special_tokens() -> None:
    assert clean_reply("好正[EOS][PAD]", special_tokens=["[EOS]", "[PAD]"]) == "好正"


@pytest.mark.parametrize(
    "junk",
    ["<think>" * 100_000, "</think>" * 100_000, "<|" * 200_000, "<|" + "a" * 500_000, "\n \n" * 200_000],
    ids=["opens", "closes", "token-starts", "unclosed-token", "blank-lines"],
)
@pytest.mark.timeout(60)
def test_linear_time(junk: str) -> None:
    # Backtracking would make this hours long; the timeout fails it, no clock is asserted.
    clean_reply(junk)


PIECES = ["<think>", "</think>", "<|im_end|>", "好", "a", "\n", " ", "\r\n", "\ufffd", "<", "|", ">"]


@given(st.lists(st.sampled_from(PIECES)).map("".join) | st.text())
def test_clean_reply_leaves_no_markup(raw: str) -> None:
    clean = clean_reply(raw)
    assert "<think>" not in clean and "</think>" not in clean
    assert "<|im_end|>" not in clean and "\ufffd" not in clean
    assert clean == clean.strip()
    assert "\n\n\n" not in clean

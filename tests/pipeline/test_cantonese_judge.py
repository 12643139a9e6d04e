"""The Cantonese judge on real text: HKCanCor, LIHKG replies, written Chinese, simplified script."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.cantonese_judge import (
    LABELS,
    judge,
    new_detector,
    simplified_characters,
    summarise,
    summarise_judgements,
)

LIHKG_SAMPLES = Path("/work/shared/lihkg-samples")
WRITTEN_CHINESE = [
    "香港特別行政區政府今日宣布了明年的公共交通票價。",
    "他說這件事情他們已經討論了很久，但是還沒有結論。",
    "我們應該把時間用在有意義的事情上。",
]
CANTONESE = [
    "佢哋今日唔嚟喇，你食咗飯未呀？",
    "咁都得？真係冇眼睇，睇完成個人都攰晒。",
    "我哋聽日去邊度食嘢好？",
]


def test_clear_cantonese_and_clear_written_chinese():
    assert {judge(t).label for t in CANTONESE} == {"cantonese"}
    assert {judge(t).label for t in WRITTEN_CHINESE} == {"written_chinese"}


def test_a_text_with_both_is_mixed():
    assert judge("他們已經走了，佢哋話聽日先返嚟。").label == "mixed"


def test_simplified_cantonese_is_still_cantonese_and_its_script_is_measured():
    result = judge("佢哋话呢个系咪真嘅？")
    assert result.label == "cantonese"
    # 系 is also a traditional character (系統): not counted.
    assert simplified_characters("佢哋话呢个系咪真嘅？") == ["话", "个"]
    assert result.simplified_share == pytest.approx(2 / 9)
    assert result.han_characters == 9


def test_traditional_variants_are_not_counted_as_simplified():
    # 爲/為, 裏/裡, 着/著, 峰/峯, 群/羣 are variant traditional forms; 台 and 干 exist in both
    # scripts; 晒 and 吓 are everyday Cantonese characters.
    text = "爲咗佢，為咗你，喺屋裏，屋裡，着緊，著緊，山峰，一群人，台灣，干擾，唔該晒，試吓"
    assert simplified_characters(text) == []


def test_every_cantonesedetect_label_has_a_name_of_ours():
    from cantonesedetect.JudgementTypes import JudgementType

    assert set(LABELS) == {str(t) for t in JudgementType}


def test_summary_shares_add_up_and_share_one_detector(monkeypatch):
    import pipeline.cantonese_judge as module

    built = []
    real = module.new_detector
    monkeypatch.setattr(module, "new_detector", lambda: built.append(1) or real())
    texts = CANTONESE + WRITTEN_CHINESE + ["他們已經走了，佢哋話聽日先返嚟。", "OK", "呢个系咪真嘅？"]
    summary = summarise(texts)
    assert len(built) == 1
    assert summary.count == 9
    assert summary.labels == {"cantonese": 4, "written_chinese": 3, "mixed": 1, "neutral": 1}
    shares = summary.share_cantonese + summary.share_written + summary.share_mixed + summary.share_neutral
    assert shares == pytest.approx(1.0)
    assert summary.share_with_simplified == pytest.approx(1 / 9)
    assert summary.mean_simplified_share == pytest.approx((1 / 6) / 9)


def test_empty_summary():
    summary = summarise_judgements([])
    assert summary.count == 0 and summary.share_cantonese == 0.0


def test_real_hkcancor_utterances_are_mostly_cantonese():
    from pipeline.hkcancor import load_hkcancor

    conversation = load_hkcancor()[0]
    summary = summarise([u.text for u in conversation.utterances])
    assert summary.share_cantonese > summary.share_written
    assert summary.share_cantonese + summary.share_neutral > 0.6
    assert summary.mean_simplified_share < 0.01


def test_real_lihkg_replies_are_judged_cantonese_far_more_than_written_chinese():
    from core.html_text import post_to_text

    page = LIHKG_SAMPLES / "thread_page.json"
    if not page.is_file():
        pytest.skip("LIHKG samples not present on this machine")
    posts = json.loads(page.read_text(encoding="utf-8"))["response"]["item_data"]
    detector = new_detector()
    labels = [judge(post_to_text(post["msg"]), detector=detector).label for post in posts]
    assert len(labels) >= 20
    # Short replies (emoji codes, "留名") carry no features: neutral is expected for many.
    assert labels.count("cantonese") >= 5 * max(1, labels.count("written_chinese"))

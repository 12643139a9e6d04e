"""Probe files and the probe scorer, on scripted log-likelihoods and scripted answers."""

from __future__ import annotations

import json

import pytest

from core.errors import ConfigError
from pipeline.bases_probes import (
    DEFAULT_PROBES_FILE,
    Probe,
    judge_generated,
    load_probes,
    parse_choice,
    parse_number,
    parse_probes,
    pick_option,
    probe_outcome,
    score_probes,
)

CURRENCY = Probe("currency", "香港嘅法定貨幣係咩？", ("人民幣", "港元", "新台幣", "美元"), 1, topic="hong-kong")
EQUATION = Probe("eq", "如果 2x + 3 = 11，x 等於幾多？", ("3", "4", "5", "7"), 1, topic="algebra", numeric_answer=4)


def test_the_shipped_probes_file_is_valid_and_balanced():
    probes = load_probes()
    assert probes.source == str(DEFAULT_PROBES_FILE)
    assert len(probes.continuations) >= 5 and len(probes.probes) >= 8
    assert len({p.id for p in probes.probes}) == len(probes.probes)
    assert {p.topic for p in probes.probes} == {"hong-kong", "algebra"}
    # Right answers spread over positions: "always A" must not score well.
    positions = [p.answer for p in probes.probes]
    assert max(positions.count(i) for i in set(positions)) <= len(positions) // 2
    for p in probes.probes:
        if p.numeric_answer is not None:
            assert float(p.options[p.answer]) == p.numeric_answer


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("B", 1), ("b.", 1), ("(B) 港元", 1), ("答案：B", 1), ("Ｂ", 1), ("答案係 D 美元", 3),
        ("港元", 1), ("應該係港元，唔係人民幣", 1), ("人民幣定港元？", 0),
        ("我唔知", None), ("", None), ("Bus 好多人搭", None), ("E", None),
    ],
)
def test_parse_choice(text, expected):
    assert parse_choice(text, CURRENCY.options) == expected


def test_a_letter_only_counts_at_the_start():
    assert parse_choice("我覺得個答案應該係美元先啱，唔係 A", CURRENCY.options) == 3


@pytest.mark.parametrize(
    ("text", "choice", "correct"),
    [("B", 1, True), ("4", 1, True), ("x = 4", 1, True), ("x 係 4.0", 1, True), ("A", 0, False),
     ("x = 6", None, False), ("唔識", None, False)],
)
def test_numeric_answers_are_accepted_as_numbers(text, choice, correct):
    assert judge_generated(EQUATION, text) == (choice, correct)


def test_parse_number():
    assert parse_number("要俾 1,600 蚊") == 1600.0
    assert parse_number("x = -2.5") == -2.5
    assert parse_number("冇數字") is None


def test_pick_option_normalises_by_option_length():
    # Total NLL favours the short 港元 (2.4); per character 人民幣 is more likely (1.1 vs 1.2).
    assert pick_option([3.3, 2.4, 6.0, 3.0], CURRENCY.options) == 0
    assert pick_option([2.0, 2.0], ["甲", "乙"]) == 0  # ties: the first
    with pytest.raises(ValueError):
        pick_option([1.0], ["甲", "乙"])


def test_scores_from_scripted_outcomes():
    third = Probe("q3", "?", ("甲", "乙"), 0, topic="hong-kong")
    outcomes = [
        probe_outcome(CURRENCY, [9.0, 3.0, 9.0, 9.0], "B"),  # both right
        probe_outcome(EQUATION, [1.0, 5.0, 5.0, 5.0], "x = 4"),  # loglik wrong, generated right
        probe_outcome(third, [2.0, 1.0], "乙"),  # both wrong
    ]
    assert [(o.loglik_correct, o.generated_correct) for o in outcomes] == [(True, True), (False, True), (False, False)]
    assert outcomes[0].option_nll_per_char == (3.0, 1.5, 3.0, 4.5)
    score = score_probes([CURRENCY, EQUATION, third], outcomes)
    assert score.count == 3
    assert score.loglik_accuracy == pytest.approx(1 / 3)
    assert score.generated_accuracy == pytest.approx(2 / 3)
    assert score.chance == pytest.approx((0.25 + 0.25 + 0.5) / 3)
    assert score.by_topic["algebra"] == {"count": 1, "loglik_accuracy": 0.0, "generated_accuracy": 1.0}
    assert score.by_topic["hong-kong"]["loglik_accuracy"] == pytest.approx(0.5)


def test_score_probes_needs_the_probe_of_each_outcome():
    with pytest.raises(KeyError):
        score_probes([], [probe_outcome(CURRENCY, [1.0, 2.0, 3.0, 4.0], "A")])


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "JSON object"),
        ({"probes": [{"id": "x", "options": ["a", "b"], "answer": 0}]}, "question"),
        ({"probes": [{"id": "x", "question": "?", "options": ["a"], "answer": 0}]}, "options"),
        ({"probes": [{"id": "x", "question": "?", "options": ["a", "b"], "answer": 2}]}, "answer"),
        ({"probes": [{"id": "x", "question": "?", "options": ["a", "b"], "answer": 0, "numeric_answer": "4"}]},
         "numeric_answer"),
        ({"continuations": [{"id": "c", "text": " "}]}, "text"),
    ],
)
def test_bad_probe_files_are_refused_with_the_entry_named(data, message):
    with pytest.raises(ConfigError, match=message):
        parse_probes(data, source="mine.json")


def test_user_files_load_and_unreadable_ones_raise_config_error(tmp_path):
    path = tmp_path / "probes.json"
    path.write_text(json.dumps({"continuations": [{"id": "c", "text": "今日"}], "probes": []}), encoding="utf-8")
    loaded = load_probes(path)
    assert loaded.continuations[0].text == "今日" and loaded.probes == () and loaded.source == str(path)
    (tmp_path / "broken.json").write_text("{", encoding="utf-8")
    with pytest.raises(ConfigError, match="broken.json"):
        load_probes(tmp_path / "broken.json")
    with pytest.raises(ConfigError, match="missing.json"):
        load_probes(tmp_path / "missing.json")

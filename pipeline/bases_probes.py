"""Probe questions and continuation prompts of `lilm bases`, and how answers are scored.

Every probe is multiple choice and is scored two ways:
- log-likelihood (the headline score, robust even for tiny models): the option whose tokens the
  model finds most likely after the question, per character of the option (so long options
  are not punished for having more tokens);
- generated: the model answers the question with the options lettered, greedily; the answer
  is parsed as a letter, an option's text, or (for numeric questions) a number.

    >>> pick_option([9.0, 3.0, 6.0], ["港元", "人民幣", "美元"])
    1
    >>> parse_choice("答案係 C。", ["3", "4", "5"])
    2
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from core.errors import ConfigError

DEFAULT_PROBES_FILE = Path(__file__).parent / "data" / "base_probes.json"
LETTERS = "ABCDEFGH"
# An answer letter standing alone: "B", "(B)", "B.", "答案：B", full-width "Ｂ".
_LETTER_RE = re.compile(r"(?<![A-Za-z])([A-Ha-hＡ-Ｈ])(?![A-Za-z])")
_NUMBER_RE = re.compile(r"-?\d+(?:\.\d+)?")


@dataclass(frozen=True)
class Continuation:
    """A sentence start for the model to continue."""

    id: str
    text: str


@dataclass(frozen=True)
class Probe:
    """A multiple-choice question; `answer` indexes `options`."""

    id: str
    question: str
    options: tuple[str, ...]
    answer: int
    topic: str = ""
    numeric_answer: float | None = None


@dataclass(frozen=True)
class ProbeSet:
    """Everything read from a probes file."""

    continuation_instruction: str
    continuations: tuple[Continuation, ...]
    probes: tuple[Probe, ...]
    source: str = ""


@dataclass(frozen=True)
class ProbeOutcome:
    """How one model did on one probe."""

    probe_id: str
    topic: str
    option_nll_per_char: tuple[float, ...]
    loglik_choice: int
    loglik_correct: bool
    generated: str
    generated_choice: int | None
    generated_correct: bool


@dataclass(frozen=True)
class ProbeScore:
    """Accuracy over probes, overall and per topic, against the chance level."""

    count: int
    loglik_accuracy: float
    generated_accuracy: float
    chance: float
    by_topic: dict[str, dict[str, float]] = field(default_factory=dict)


def load_probes(path: str | Path | None = None) -> ProbeSet:
    """Read and check a probes file (default: pipeline/data/base_probes.json)."""
    path = Path(path) if path else DEFAULT_PROBES_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ConfigError(f"cannot read probes file {path}: {error}") from error
    return parse_probes(data, source=str(path))


def parse_probes(data: dict, *, source: str = "") -> ProbeSet:
    """A ProbeSet from the JSON structure; raises ConfigError naming the bad entry.

    >>> parse_probes({"probes": [{"id": "q", "question": "1+1?", "options": ["2", "3"], "answer": 0}]}).probes[0].options
    ('2', '3')
    """
    def fail(message: str):
        raise ConfigError(f"probes file {source or '(data)'}: {message}")

    if not isinstance(data, dict):
        fail("expected a JSON object")
    continuations, probes = [], []
    for i, item in enumerate(data.get("continuations", [])):
        if not isinstance(item, dict) or not isinstance(item.get("text"), str) or not item["text"].strip():
            fail(f"continuation {i} needs a non-empty 'text'")
        continuations.append(Continuation(id=str(item.get("id", i)), text=item["text"]))
    for i, item in enumerate(data.get("probes", [])):
        name = item.get("id", i) if isinstance(item, dict) else i
        if not isinstance(item, dict) or not isinstance(item.get("question"), str):
            fail(f"probe {name} needs a 'question'")
        options = item.get("options")
        if not isinstance(options, list) or not 2 <= len(options) <= len(LETTERS) or not all(
            isinstance(o, str) and o.strip() for o in options
        ):
            fail(f"probe {name}: 'options' must be 2-{len(LETTERS)} non-empty strings")
        answer = item.get("answer")
        if not isinstance(answer, int) or not 0 <= answer < len(options):
            fail(f"probe {name}: 'answer' must be an option index 0-{len(options) - 1}")
        numeric = item.get("numeric_answer")
        if numeric is not None and not isinstance(numeric, (int, float)):
            fail(f"probe {name}: 'numeric_answer' must be a number")
        probes.append(Probe(id=str(name), question=item["question"], options=tuple(options), answer=answer,
                            topic=str(item.get("topic", "")), numeric_answer=numeric))
    return ProbeSet(
        continuation_instruction=str(data.get("continuation_instruction", "")),
        continuations=tuple(continuations),
        probes=tuple(probes),
        source=source,
    )


def cloze_prompt(probe: Probe) -> str:
    """The question an option is appended to for log-likelihood scoring.

    >>> cloze_prompt(Probe("x", "香港用咩錢？", ("港元", "美元"), 0))
    '問題：香港用咩錢？\\n答案：'
    """
    return f"問題：{probe.question}\n答案："


def lettered_prompt(probe: Probe) -> str:
    """The question with lettered options, for the generated answer.

    >>> print(lettered_prompt(Probe("x", "1+1=?", ("2", "3"), 0)))
    1+1=?
    A. 2
    B. 3
    只需答選項字母。
    """
    lines = [probe.question] + [f"{LETTERS[i]}. {option}" for i, option in enumerate(probe.options)]
    return "\n".join(lines + ["只需答選項字母。"])


def pick_option(option_nlls: Sequence[float], options: Sequence[str]) -> int:
    """The option with the lowest NLL per character (ties: the first).

    >>> pick_option([4.0, 5.0], ["港元", "新台幣"])  # 2.0 vs 1.67 per character
    1
    """
    per_char = per_character(option_nlls, options)
    return min(range(len(per_char)), key=lambda i: per_char[i])


def per_character(option_nlls: Sequence[float], options: Sequence[str]) -> list[float]:
    """Each option's NLL divided by its length in characters."""
    if len(option_nlls) != len(options):
        raise ValueError(f"expected one NLL per option ({len(options)}), got {len(option_nlls)}")
    return [nll / max(1, len(option)) for nll, option in zip(option_nlls, options)]


def parse_choice(text: str, options: Sequence[str]) -> int | None:
    """Which option a generated answer names: a letter first, else the one option text it
    contains (the earliest if several). None when it names none.

    >>> parse_choice("(b) 港元", ["人民幣", "港元"])
    1
    >>> parse_choice("我諗係港元啦", ["人民幣", "港元"])
    1
    >>> parse_choice("唔知", ["人民幣", "港元"]) is None
    True
    """
    text = text.strip()
    match = _LETTER_RE.search(text[:12])  # a letter counts only at the start of the answer
    if match:
        letter = match.group(1)
        index = LETTERS.index(chr(ord(letter) - 0xFEE0).upper() if ord(letter) > 0xFF else letter.upper())
        if index < len(options):
            return index
    found = [(text.find(option), i) for i, option in enumerate(options) if option in text]
    return min(found)[1] if found else None


def parse_number(text: str) -> float | None:
    """The first number in a generated answer.

    >>> parse_number("x = 4。"), parse_number("一百六十") is None
    (4.0, True)
    """
    match = _NUMBER_RE.search(text.replace(",", ""))
    return float(match.group()) if match else None


def judge_generated(probe: Probe, text: str) -> tuple[int | None, bool]:
    """(choice parsed, correct) for a generated answer; numeric probes also accept the number.

    >>> probe = Probe("eq", "2x + 3 = 11, x?", ("3", "4"), 1, numeric_answer=4)
    >>> judge_generated(probe, "B"), judge_generated(probe, "x 係 4"), judge_generated(probe, "唔識")
    ((1, True), (1, True), (None, False))
    """
    choice = parse_choice(text, probe.options)
    if choice is None and probe.numeric_answer is not None:
        number = parse_number(text)
        if number is not None and abs(number - probe.numeric_answer) < 1e-9:
            return probe.answer, True
    return choice, choice == probe.answer


def probe_outcome(probe: Probe, option_nlls: Sequence[float], generated: str) -> ProbeOutcome:
    """Score one probe from the options' NLLs and the generated answer."""
    choice = pick_option(option_nlls, probe.options)
    generated_choice, generated_correct = judge_generated(probe, generated)
    return ProbeOutcome(
        probe_id=probe.id,
        topic=probe.topic,
        option_nll_per_char=tuple(per_character(option_nlls, probe.options)),
        loglik_choice=choice,
        loglik_correct=choice == probe.answer,
        generated=generated,
        generated_choice=generated_choice,
        generated_correct=generated_correct,
    )


def score_probes(probes: Sequence[Probe], outcomes: Sequence[ProbeOutcome]) -> ProbeScore:
    """Accuracies overall and per topic; `chance` is the expected accuracy of random picks.

    >>> p = [Probe("a", "?", ("x", "y"), 0, topic="t"), Probe("b", "?", ("x", "y", "z", "w"), 0, topic="t")]
    >>> o = [probe_outcome(p[0], [1.0, 2.0], "A"), probe_outcome(p[1], [3.0, 1.0, 2.0, 2.0], "D")]
    >>> s = score_probes(p, o)
    >>> s.loglik_accuracy, s.generated_accuracy, s.chance
    (0.5, 0.5, 0.375)
    """
    n = len(outcomes)
    if n == 0:
        return ProbeScore(count=0, loglik_accuracy=0.0, generated_accuracy=0.0, chance=0.0)
    by_id = {p.id: p for p in probes}
    by_topic: dict[str, dict[str, float]] = {}
    for topic in sorted({o.topic for o in outcomes}):
        subset = [o for o in outcomes if o.topic == topic]
        by_topic[topic or "other"] = {
            "count": len(subset),
            "loglik_accuracy": sum(o.loglik_correct for o in subset) / len(subset),
            "generated_accuracy": sum(o.generated_correct for o in subset) / len(subset),
        }
    return ProbeScore(
        count=n,
        loglik_accuracy=sum(o.loglik_correct for o in outcomes) / n,
        generated_accuracy=sum(o.generated_correct for o in outcomes) / n,
        chance=sum(1 / len(by_id[o.probe_id].options) for o in outcomes) / n,
        by_topic=by_topic,
    )


__all__ = [
    "DEFAULT_PROBES_FILE",
    "Continuation",
    "Probe",
    "ProbeOutcome",
    "ProbeScore",
    "ProbeSet",
    "cloze_prompt",
    "judge_generated",
    "lettered_prompt",
    "load_probes",
    "parse_choice",
    "parse_number",
    "parse_probes",
    "pick_option",
    "probe_outcome",
    "score_probes",
]

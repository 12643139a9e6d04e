"""Is a text Cantonese, standard written Chinese or a mix, and how much of it is simplified?

The language call is `cantonesedetect`'s (feature words such as 嘅/咗/佢 against 的/了/他),
made on the text converted to Hong Kong traditional characters so that simplified Cantonese
(`这个系咩`) is still recognised; the share of simplified characters is measured separately
with OpenCC. cantonesedetect labels map onto ours:

    cantonese               -> "cantonese"
    swc                     -> "written_chinese"   (standard written Chinese)
    mixed                   -> "mixed"
    neutral                 -> "neutral"           (no telling features, or no Han text)
    cantonese_quotes_in_swc -> "cantonese_quotes_in_written"
    mixed_quotes_in_swc     -> "mixed_quotes_in_written"

    >>> judge("佢哋今日唔嚟喇，你食咗飯未呀？").label
    'cantonese'
    >>> judge("他們今天不來了，你吃飯了沒有？").label
    'written_chinese'
    >>> judge("这个係咩？").simplified_share
    0.5
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

LABELS = {
    "cantonese": "cantonese",
    "swc": "written_chinese",
    "mixed": "mixed",
    "neutral": "neutral",
    "cantonese_quotes_in_swc": "cantonese_quotes_in_written",
    "mixed_quotes_in_swc": "mixed_quotes_in_written",
}
# CJK unified ideographs and extension A (where simplified/traditional pairs live).
HAN_RE = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]")
# Simplified forms that are also everyday characters in Hong Kong writing (Cantonese 晒/吓/郁,
# place names like 涌, words like 干擾/咸魚/里程): never counted as simplified.
TRADITIONAL_TOO = frozenset("晒吓郁游咸里伙准仆干余斗佣杰咤厘占岩云划征冲吁朴丑谷松板范糍棱涌")


@dataclass(frozen=True)
class TextJudgement:
    """Our label for one text and the share of its Han characters that are simplified-only."""

    label: str
    simplified_share: float
    han_characters: int = 0


@dataclass(frozen=True)
class JudgementSummary:
    """Shares of each label over several texts, and their mean simplified share."""

    count: int
    share_cantonese: float
    share_written: float
    share_mixed: float
    share_neutral: float
    mean_simplified_share: float
    share_with_simplified: float  # texts holding at least one simplified-only character
    labels: dict[str, int] = field(default_factory=dict)


@functools.cache
def _converter(config: str):
    """An OpenCC converter, built on first use (loading its dictionaries takes a moment)."""
    import opencc

    return opencc.OpenCC(config)


def new_detector():
    """A cantonesedetect detector with its default thresholds (slow to build: share it)."""
    try:
        from cantonesedetect import CantoneseDetector
    except ImportError as error:
        from core.errors import ConfigError

        raise ConfigError("cantonesedetect is not installed: pip install 'lilm-bots[train]'") from error

    return CantoneseDetector()


def simplified_characters(text: str) -> list[str]:
    """Han characters of `text` that exist only in simplified Chinese: OpenCC changes them
    both to Hong Kong (s2hk) and Taiwan (s2tw) script, t2s leaves them alone, and they are
    not in TRADITIONAL_TOO. Variants such as 爲/為 or 峰/峯 therefore do not count.

    >>> simplified_characters("这个系咩？佢話係，晒冷。")
    ['这', '个']
    """
    unique = sorted(set(HAN_RE.findall(text)) - TRADITIONAL_TOO)
    if not unique:
        return []
    # One call per converter; newlines between characters keep phrase rules from applying.
    converted = {}
    for config in ("s2hk", "s2tw", "t2s"):
        out = _converter(config).convert("\n".join(unique)).split("\n")
        if len(out) != len(unique):
            out = [_converter(config).convert(ch) for ch in unique]
        converted[config] = out
    simplified = {
        ch for ch, hk, tw, s in zip(unique, converted["s2hk"], converted["s2tw"], converted["t2s"])
        if hk != ch and tw != ch and s == ch
    }
    return [ch for ch in HAN_RE.findall(text) if ch in simplified]


def judge(text: str, *, detector=None) -> TextJudgement:
    """Label `text` (see the module docstring) and measure its simplified share.

    Pass `detector` (from `new_detector`) when judging many texts.

    >>> judge("").label, judge("OK 123").label
    ('neutral', 'neutral')
    """
    han = HAN_RE.findall(text)
    simplified = simplified_characters(text)
    share = len(simplified) / len(han) if han else 0.0
    if not han:
        return TextJudgement(label="neutral", simplified_share=0.0, han_characters=0)
    detector = detector or new_detector()
    raw = str(detector.judge(_converter("s2hk").convert(text)))
    return TextJudgement(label=LABELS.get(raw, raw), simplified_share=share, han_characters=len(han))


def summarise(texts: Iterable[str]) -> JudgementSummary:
    """Judge every text with one shared detector and sum up.

    >>> s = summarise(["佢食咗飯。", "他吃了飯。", "你好"])
    >>> s.count, round(s.share_cantonese, 3), round(s.share_written, 3), s.labels["neutral"]
    (3, 0.333, 0.333, 1)
    """
    detector = new_detector()
    judgements = [judge(text, detector=detector) for text in texts]
    return summarise_judgements(judgements)


def summarise_judgements(judgements: Iterable[TextJudgement]) -> JudgementSummary:
    """Sum up judgements already made (e.g. kept for a per-text table)."""
    judgements = list(judgements)
    labels = Counter(j.label for j in judgements)
    n = len(judgements)

    def share(*names: str) -> float:
        return sum(labels[name] for name in names) / n if n else 0.0

    return JudgementSummary(
        count=n,
        share_cantonese=share("cantonese"),
        share_written=share("written_chinese"),
        share_mixed=share("mixed", "cantonese_quotes_in_written", "mixed_quotes_in_written"),
        share_neutral=share("neutral"),
        mean_simplified_share=sum(j.simplified_share for j in judgements) / n if n else 0.0,
        share_with_simplified=sum(j.simplified_share > 0 for j in judgements) / n if n else 0.0,
        labels=dict(labels),
    )


__all__ = [
    "LABELS",
    "JudgementSummary",
    "TextJudgement",
    "judge",
    "new_detector",
    "simplified_characters",
    "summarise",
    "summarise_judgements",
]

"""Sensitive-word masking that sees through the usual disguises.

Masking rule: every character of a matched entry becomes `X`; separators inside the match
keep their place. The word list names whole vulgar units, so `屌你老母` (listed) becomes
`XXXX` and `冇撚用` (only 撚 listed) becomes `冇X用`.

Matching folds the entries and the text the same way, one character for one character:
NFKC (full-width letters and digits), lower case, accents dropped from Latin letters, a few
Cyrillic/Greek look-alikes, simplified Chinese to traditional. Separators (spaces,
punctuation, symbols, emoji, control and zero-width characters) are skipped, so `屌 你.老\u200b母`
still matches. Entries that begin or end with an ASCII letter or digit match only where the
original text has no ASCII letter or digit right before / after (`diu` is not in `diuretic`).

How: one lookup table (numpy) turns the text into a same-length copy in a small alphabet
(entry characters, a space for separators, `!` for everything else); one Aho-Corasick
automaton (pyahocorasick, skipping spaces) finds every entry in it. Because the copy has
the text's length, its indexes are the text's indexes. Python work is per hit only.
"""

from __future__ import annotations

import functools
import unicodedata
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import NamedTuple

import ahocorasick
import numpy as np
import opencc

from core.errors import ConfigError

DEFAULT_WORDS_FILE = Path(__file__).resolve().parent / "data" / "sensitive_words.txt"
MASK_CHAR = "X"
EXCEPTION_PREFIX = "!"  # word-file lines `!phrase`: everyday phrases that stay unmasked

UNICODE_SIZE = 0x110000
SPACE = " "  # a separator, in folded text; the automaton skips it (ignore_white_space)
OTHER = "!"  # a character that is in no entry, in the small alphabet
_FIRST_CODE = 0x4E00  # entry characters are renumbered from here: all letters, no surrogates
_MAX_CODES = 0xD800 - _FIRST_CODE

_SEPARATOR_CATEGORIES = {"Cc", "Cf", "Mn", "Me"}
# The BMP is scanned character by character; beyond it (a full scan takes seconds) only
# these blocks: emoji/symbols, tags and variation selectors are separators; mathematical
# letters, enclosed letters and compatibility ideographs fold to plain ones.
_SEPARATOR_BLOCKS = ((0x1F000, 0x1FAFF), (0xE0000, 0xE007F), (0xE0100, 0xE01EF))
_EXTRA_FOLD_BLOCKS = ((0x1D400, 0x1D7FF), (0x1F100, 0x1F1FF), (0x2F800, 0x2FA1F))
_LOOK_ALIKES = dict(zip("аеорсухіјԁһӏкмтѕԛԝνοαειυκρτ", "aeopcyxijdhlkmtsqwvoaeiukpt"))

Match = tuple[int, int, str]  # start, end (original text indexes), the word as listed


class WordList(NamedTuple):
    """Entries of a word file: words to mask and everyday phrases to leave alone."""

    blocked: list[str]
    allowed: list[str]


def read_word_list(path: str | Path) -> WordList:
    """Parse a word file: one entry a line, `#` comments, `!phrase` exceptions, blanks ignored."""
    try:
        lines = Path(path).read_text(encoding="utf-8-sig").splitlines()
    except OSError as error:
        reason = error.strerror or error
        raise ConfigError(f"cannot read sensitive words file {str(path)!r}: {reason}") from None
    words = WordList([], [])
    for line in lines:
        entry = line.split("#", 1)[0].strip()
        if entry.startswith(EXCEPTION_PREFIX):
            words.allowed.append(entry[1:].strip())
        elif entry:
            words.blocked.append(entry)
    return words


class _Entry(NamedTuple):
    word: str  # as listed
    length: int  # folded length
    ascii_start: bool  # needs an ASCII word boundary before it
    ascii_end: bool  # ... and after it
    allowed: bool  # an exception, not something to mask


class Masker:
    """Finds and masks listed words in text. Build once, reuse: building folds every entry.

    >>> masker = Masker(["撚", "屌你老母", "on9"])
    >>> masker.mask("冇撚用，屌 你 老 母！Ｏ-Ｎ-９ 同 person9 冇關")
    '冇X用，X X X X！X-X-X 同 person9 冇關'
    >>> masker.find("你個ON9")
    [(2, 5, 'on9')]
    """

    def __init__(self, words: Iterable[str], *, allowed: Iterable[str] = ()) -> None:
        folding = _folding()
        entries: dict[str, _Entry] = {}
        for is_allowed, group in ((False, words), (True, allowed)):
            for word in group:
                folded = folding.fold(word)
                if folded and folded not in entries:  # a blank entry must never match everything
                    edges = [c.isascii() and c.isalnum() for c in (folded[0], folded[-1])]
                    entries[folded] = _Entry(word, len(folded), *edges, is_allowed)
        chars = sorted({c for folded in entries for c in folded})
        if len(chars) > _MAX_CODES:
            raise ValueError(f"at most {_MAX_CODES} distinct characters in entries, got {len(chars)}")
        codes = {c: chr(_FIRST_CODE + i) for i, c in enumerate(chars)}
        self._table = folding.small_alphabet_table(codes)
        self._automaton = _build_automaton({"".join(map(codes.get, f)): e for f, e in entries.items()})
        self._size = len(entries)

    def __len__(self) -> int:
        """Number of distinct folded entries (exceptions included)."""
        return self._size

    @classmethod
    def default(cls, extra_words: Iterable[str] = (), extra_file: str | Path | None = None) -> Masker:
        """The bundled word list plus `extra_words` and the entries of `extra_file`."""
        words = read_word_list(DEFAULT_WORDS_FILE)
        if extra_file is not None and str(extra_file).strip():
            extra = read_word_list(extra_file)
            words.blocked.extend(extra.blocked)
            words.allowed.extend(extra.allowed)
        words.blocked.extend(word for word in extra_words if word.strip())
        return cls(words.blocked, allowed=words.allowed)

    def find(self, text: str) -> list[Match]:
        """Every match as (start, end, listed word), sorted; start/end index the original text."""
        return sorted(self._scan(text)[0])

    def mask(self, text: str) -> str:
        """`text` with every matched character replaced by `X`."""
        matches, folded = self._scan(text)
        if not matches:
            return text
        pieces, done = [], 0
        for start, end in _merge(sorted((start, end) for start, end, _ in matches)):
            pieces.append(text[done:start])
            if folded[start:end].isalnum():  # no separator inside: the common case
                pieces.append(MASK_CHAR * (end - start))
            else:
                pairs = zip(text[start:end], folded[start:end])
                pieces.append("".join(c if f == SPACE else MASK_CHAR for c, f in pairs))
            done = end
        pieces.append(text[done:])
        return "".join(pieces)

    def _scan(self, text: str) -> tuple[list[Match], str]:
        """Matches (start, end, word), unsorted, and the folded copy of `text`."""
        if self._size == 0 or not text:
            return [], text
        points = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
        folded = self._table[points].tobytes().decode("utf-16-le")
        is_ascii_alnum, size = _folding().is_ascii_alnum, len(text)
        matches, allowed = [], []
        for last, (word, length, ascii_start, ascii_end, is_allowed) in self._automaton.iter(
            folded, ignore_white_space=True
        ):
            end = last + 1
            start = end - length
            if not folded[start:end].isalnum():  # separators inside: count back over them
                start = _start_before_spaces(folded, end, length)
            if is_allowed:
                allowed.append((start, end))
            elif not (
                (ascii_start and start > 0 and is_ascii_alnum(text[start - 1]))
                or (ascii_end and end < size and is_ascii_alnum(text[end]))
            ):
                matches.append((start, end, word))
        if allowed and matches:
            matches = _outside(matches, allowed)
        return matches, folded


def _build_automaton(entries: dict[str, _Entry]) -> ahocorasick.Automaton:
    automaton = ahocorasick.Automaton()
    # pyahocorasick searches a node's children linearly, in insertion order. Most characters
    # of a text are OTHER, so OTHER goes first at the root. The key holds a space, which the
    # search skips, so it never matches.
    automaton.add_word(OTHER + SPACE, None)
    for key, entry in entries.items():
        automaton.add_word(key, entry)
    automaton.make_automaton()
    return automaton


def _start_before_spaces(folded: str, end: int, length: int) -> int:
    """Start of the `length` non-space characters that end at `end`.

    >>> _start_before_spaces("ab c  d", 7, 3)
    1
    """
    start = end
    while length:
        start -= 1
        if folded[start] != SPACE:
            length -= 1
    return start


def _outside(matches: list[Match], allowed: list[tuple[int, int]]) -> list[Match]:
    """The matches that do not lie inside an allowed phrase.

    >>> _outside([(0, 1, "a"), (5, 6, "b")], [(0, 4)])
    [(5, 6, 'b')]
    """
    allowed.sort()
    kept, reach, next_allowed = [], -1, 0
    for match in sorted(matches):
        while next_allowed < len(allowed) and allowed[next_allowed][0] <= match[0]:
            reach = max(reach, allowed[next_allowed][1])
            next_allowed += 1
        if match[1] > reach:
            kept.append(match)
    return kept


def _merge(spans: Iterable[tuple[int, int]]) -> Iterator[tuple[int, int]]:
    """Union of sorted, possibly overlapping spans.

    >>> list(_merge([(0, 2), (1, 4), (6, 7)]))
    [(0, 4), (6, 7)]
    """
    current = None
    for start, end in spans:
        if current and start <= current[1]:
            current = (current[0], max(current[1], end))
            continue
        if current:
            yield current
        current = (start, end)
    if current:
        yield current


class _Folding:
    """The character folding shared by entries and texts: a table over all code points."""

    def __init__(self) -> None:
        self.table = np.arange(UNICODE_SIZE, dtype=np.uint32)
        separators, canonical = _scan_characters()
        self.table[[ord(c) for c in canonical]] = [ord(f) for f in canonical.values()]
        self.table[separators] = ord(SPACE)
        self._separators = self.table == ord(SPACE)

    def fold(self, text: str) -> str:
        """Separators dropped, every character folded.

        >>> _folding().fold("Ｏ n ９ 戆鸠 İ")
        'on9戇鳩i'
        """
        folded = (chr(self.table[ord(c)]) for c in text)
        return "".join(c for c in folded if c != SPACE)

    def small_alphabet_table(self, codes: dict[str, str]) -> np.ndarray:
        """Code point -> character of the small alphabet (`codes`, SPACE or OTHER), as UTF-16."""
        by_folded = np.full(UNICODE_SIZE, ord(OTHER), dtype=np.uint16)
        by_folded[[ord(c) for c in codes]] = [ord(code) for code in codes.values()]
        table = by_folded[self.table]
        table[self._separators] = ord(SPACE)
        return table

    def is_ascii_alnum(self, char: str) -> bool:
        folded = chr(self.table[ord(char)])
        return folded.isascii() and folded.isalnum()


@functools.cache
def _folding() -> _Folding:
    return _Folding()


def _scan_characters() -> tuple[list[int], dict[str, str]]:
    """Separator code points, and the canonical form of every character that has another one."""
    separators: list[int] = []
    canonical: dict[str, str] = {}
    for cp in range(0x10000):
        char = chr(cp)
        category = unicodedata.category(char)
        if category[0] in "PZS" or category in _SEPARATOR_CATEGORIES:
            separators.append(cp)
        elif category not in ("Co", "Cn", "Cs"):
            canonical[char] = _canonical_char(char)
    for first, last in _SEPARATOR_BLOCKS:
        separators.extend(range(first, last + 1))
    for first, last in _EXTRA_FOLD_BLOCKS:
        canonical.update((chr(cp), _canonical_char(chr(cp))) for cp in range(first, last + 1))
    _simplified_to_traditional(canonical)
    return separators, {c: f for c, f in canonical.items() if f != c}


def _canonical_char(char: str) -> str:
    """One character folded by NFKC, accent removal, look-alike table and lower case.

    >>> "".join(_canonical_char(c) for c in "Ｄé\\u0456⑨𝐋")
    'dei9l'
    """
    folded = unicodedata.normalize("NFKC", char)
    if len(folded) != 1:
        folded = char  # ligatures, fractions...: one character in must stay one out
    base = unicodedata.normalize("NFKD", folded)
    if base[0].isascii() and base[0].isalpha() and all(unicodedata.combining(c) for c in base[1:]):
        folded = base[0]
    folded = _LOOK_ALIKES.get(folded.lower(), folded)
    lower = folded.lower()
    return lower if len(lower) == 1 else folded


def _simplified_to_traditional(canonical: dict[str, str]) -> None:
    """Fold simplified CJK characters to traditional, in place, with one OpenCC call."""
    ideographs = [(c, f) for c, f in canonical.items() if "\u3400" <= f <= "\u9fff"]
    converted = opencc.OpenCC("s2t").convert("\n".join(f for _, f in ideographs)).split("\n")
    if len(converted) != len(ideographs):
        return  # OpenCC changed the line structure: keep NFKC-only folding
    for (char, _), traditional in zip(ideographs, converted):
        if len(traditional) == 1:
            canonical[char] = traditional

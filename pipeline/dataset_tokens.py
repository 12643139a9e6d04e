"""Exact token counts of training chats, as mlx-lm will tokenize them, at dataset speed.

The target model's `tokenizer.json` is loaded with the fast `tokenizers` library and its chat
template rendered with Jinja, as transformers does. Counting stays exact but cheap:

- A rendered chat is split at the tokenizer's special tokens (`<|im_start|>`...), which
  `tokenizers` also splits out before anything else, so the pieces count independently:
  the system piece is counted once for the whole run, the user piece once per thread.
- Pieces are encoded in batches (`encode_batch`), and counts are memoised.
- Texts are counted line by line, split where a line break is followed by a non-space: a
  boundary the pre-tokenizers of GPT-style byte-level BPE never merge across, so the sum is
  exact. The line counts are memoised: the first post is counted once per thread, and the
  binary search of `core.prompt.build_messages` over prefixes of a long first post costs one
  short encode per step. Checked against direct encoding on start-up (and switched off if a
  tokenizer disagrees).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from core.errors import ConfigError

ENCODE_BATCH = 1024  # Encoding objects are heavy: never hold more than this many at once
CACHE_LIMIT = 100_000  # memoised texts before the cache is cleared (memory stays flat)
# A line break followed by a visible character (Python's \\S minus a few format characters
# that some regex engines count as spaces): the pre-tokenizer never merges across it.
_LINE_BOUNDARY_RE = re.compile(r"\n(?=[^\s\u180e\u200b-\u200d\u2060\ufeff])")
LINES_PER_STEP = 64  # lines counted between checks against the limit
PREFETCH_CHARS_PER_TOKEN = 4  # prefetch lines of a text up to this many characters per token of the limit
_MARKER = "\x00lilm-reply\x00"
_SELF_CHECK_TEXT = "好正\n真係，\n\n  有空格 abc  def\n。\n[hkg:normal/good]OK!\n\t\n完\n\n\n最後 😂\n1,000.5%\n"

Messages = Sequence[dict[str, str]]


@dataclass(frozen=True)
class ChatTemplate:
    """A model's chat template and the special-token strings it may refer to."""

    source: str
    special_tokens: dict[str, str]

    def compile(self):  # -> jinja2.Template
        from jinja2.ext import loopcontrols
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        def raise_exception(message: str) -> None:
            raise ValueError(f"chat template error: {message}")

        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
        env.filters["tojson"] = lambda value, **kw: json.dumps(value, ensure_ascii=False, **kw)
        env.globals["raise_exception"] = raise_exception
        return env.from_string(self.source)


def read_chat_template(model_dir: Path) -> ChatTemplate:
    """The chat template of a model directory (tokenizer_config.json or chat_template.jinja)."""
    config_path = model_dir / "tokenizer_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8")) if config_path.is_file() else {}
    source = config.get("chat_template")
    if isinstance(source, list):  # named templates: take the default one
        by_name = {item.get("name"): item.get("template") for item in source}
        source = by_name.get("default") or next(iter(by_name.values()), None)
    jinja_file = model_dir / "chat_template.jinja"
    if not source and jinja_file.is_file():
        source = jinja_file.read_text(encoding="utf-8")
    if not source:
        raise ConfigError(f"{model_dir} has no chat template (tokenizer_config.json chat_template or chat_template.jinja)")
    special = {}
    for key in ("bos_token", "eos_token", "pad_token", "unk_token"):
        value = config.get(key)
        if isinstance(value, dict):
            value = value.get("content")
        special[key] = value or ""
    return ChatTemplate(source=source, special_tokens=special)


class ChatTokenCounter:
    """Token counts of texts and of whole chats for one model's tokenizer and template.

    `counter(text)` is the `count_tokens` callable `core.prompt.build_messages` wants;
    `counter.chat_lengths(chats)` counts whole rendered chats.
    """

    def __init__(self, tokenizer, template: ChatTemplate, *, limit: int | None = None) -> None:
        self._tokenizer = tokenizer
        self.limit = limit
        self._template_source = template
        self._template = template.compile()
        self._cache: dict[str, int] = {}
        splitters = [
            token.content
            for token in tokenizer.get_added_tokens_decoder().values()
            if not (token.normalized or token.lstrip or token.rstrip or token.single_word)
        ]
        self._special_re = (
            re.compile("|".join(re.escape(s) for s in sorted(splitters, key=len, reverse=True))) if splitters else None
        )
        self.line_counts_exact = self._check_line_counts()

    @classmethod
    def from_model_dir(cls, model_dir: str | Path, *, limit: int | None = None) -> ChatTokenCounter:
        """Load `tokenizer.json` and the chat template of a model directory."""
        from tokenizers import Tokenizer

        model_dir = Path(model_dir)
        path = model_dir / "tokenizer.json"
        if not path.is_file():
            raise ConfigError(f"{model_dir} has no tokenizer.json (expected a local model directory)")
        return cls(Tokenizer.from_file(str(path)), read_chat_template(model_dir), limit=limit)

    def render(self, messages: Messages) -> str:
        """The chat as text, exactly as the template writes it (no generation prompt)."""
        return self._template.render(
            messages=list(messages), add_generation_prompt=False, tools=None, **self._template_source.special_tokens
        )

    def __call__(self, text: str) -> int:
        """Token count of one text: the sum of its memoised line counts.

        With a `limit`, counting stops once the sum exceeds it: any count above the limit
        may then be short of the exact one (a 20-page first post is not counted to the end).
        """
        total = self._cache.get(text)
        if total is not None:
            return total
        pieces = self._pieces(text)
        total = 0
        for start in range(0, len(pieces), LINES_PER_STEP):
            total += sum(self._counts(pieces[start : start + LINES_PER_STEP]))
            if self.limit is not None and total > self.limit:
                break
        # A text of several lines is never a line itself, so its total can share the cache.
        self._cache[text] = total
        return total

    def prefetch(self, texts: Iterable[str]) -> None:
        """Count many texts, their lines in batches (of a long text, its first lines only)."""
        wanted: dict[str, None] = {}
        whole: list[tuple[str, list[str]]] = []
        for text in dict.fromkeys(texts):
            if text in self._cache:
                continue
            pieces, chars = self._pieces(text), 0
            for piece in pieces:
                if piece not in self._cache:
                    wanted[piece] = None
                chars += len(piece)
                if self.limit is not None and chars > PREFETCH_CHARS_PER_TOKEN * self.limit:
                    break
            else:
                whole.append((text, pieces))
        self._counts(list(wanted))
        for text, pieces in whole:
            if len(pieces) > 1 and all(piece in self._cache for piece in pieces):
                self._cache[text] = sum(self._cache[piece] for piece in pieces)

    def chat_lengths(self, chats: Sequence[Messages]) -> list[int]:
        """Token count of each whole chat as the template renders it."""
        rendered = [self._split_specials(text) for text in self._render_all(chats)]
        self.prefetch(segment for _, segments in rendered for segment in segments)
        return [specials + sum(map(self, segments)) for specials, segments in rendered]

    def _render_all(self, chats: Sequence[Messages]) -> list[str]:
        """Rendered chats. Chats that differ only in the last message's content (one thread's
        replies) are rendered once around a marker, checked against one real rendering."""
        if len(chats) < 3 or any(list(chat[:-1]) != list(chats[0][:-1]) for chat in chats):
            return [self.render(chat) for chat in chats]
        marked = [*chats[0][:-1], {**chats[0][-1], "content": _MARKER}]
        before, found, after = self.render(marked).partition(_MARKER)
        first = self.render(chats[0])
        if not found or _MARKER in after or before + chats[0][-1]["content"] + after != first:
            return [first, *(self.render(chat) for chat in chats[1:])]
        return [first, *(before + chat[-1]["content"] + after for chat in chats[1:])]

    def _counts(self, pieces: Sequence[str]) -> list[int]:
        """Counts of pieces, encoding the unknown ones in batches."""
        missing = list(dict.fromkeys(piece for piece in pieces if piece not in self._cache))
        if len(self._cache) + len(missing) > CACHE_LIMIT:
            self._cache.clear()
            missing = list(dict.fromkeys(pieces))
        for start in range(0, len(missing), ENCODE_BATCH):
            chunk = missing[start : start + ENCODE_BATCH]
            for piece, encoding in zip(chunk, self._tokenizer.encode_batch(chunk, add_special_tokens=False)):
                self._cache[piece] = len(encoding.ids)
        return [self._cache[piece] for piece in pieces]

    def encode_length(self, text: str) -> int:
        """Plain, uncached `tokenizer.encode` length (for checks and tests)."""
        return len(self._tokenizer.encode(text, add_special_tokens=False).ids)

    def _pieces(self, text: str) -> list[str]:
        if not text:
            return []
        if not self.line_counts_exact or "\n" not in text:
            return [text]
        ends = [match.end() for match in _LINE_BOUNDARY_RE.finditer(text)]
        return [text[start:end] for start, end in zip([0, *ends], [*ends, len(text)]) if start < end]

    def _split_specials(self, rendered: str) -> tuple[int, list[str]]:
        """Number of special tokens and the non-empty segments between them."""
        if self._special_re is None:
            return 0, [rendered]
        segments = self._special_re.split(rendered)
        return len(segments) - 1, [segment for segment in segments if segment]

    def _check_line_counts(self) -> bool:
        """Do summed line counts equal direct encoding for this tokenizer? (start-up check)"""
        self.line_counts_exact, limit, self.limit = True, self.limit, None
        exact = all(
            self(_SELF_CHECK_TEXT[start:end]) == self.encode_length(_SELF_CHECK_TEXT[start:end])
            for start in range(0, len(_SELF_CHECK_TEXT), 3)
            for end in range(start + 1, len(_SELF_CHECK_TEXT) + 1)
        )
        self._cache.clear()
        self.limit = limit
        return exact

"""A small byte-level BPE tokenizer that loads back identically as a Qwen2 tokenizer.

transformers 5 rebuilds every `model_type: qwen2` tokenizer as `Qwen2Tokenizer`: it keeps
vocab and merges from tokenizer.json but installs its own normalizer (NFC), pre-tokenizer
(Qwen's split regex, then ByteLevel without prefix space or regex) and ByteLevel decoder.
We train with exactly that pipeline, so the ids seen in training are the ids seen at runtime.
Two tweaks for a tiny model: every character of the corpus gets its own token, and merges
that straddle two characters are dropped, so the model never learns to emit broken bytes.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tokenizers import (
    Regex,
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    trainers,
)

# Qwen2's pre-tokenization pattern (contractions, letter runs with one leading symbol,
# single digits, punctuation runs, newlines, spaces). Must match transformers' constant.
QWEN_SPLIT_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
ENDOFTEXT = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
# Order fixes the ids: <|endoftext|> is 0 because mlx-lm 0.32.2's default loss trains one
# padding position (id 0) per sample; with id 0 a stop token that bug only teaches "stop".
SPECIAL_TOKENS = (ENDOFTEXT, IM_START, IM_END)

# ChatML as Qwen writes it; the generation prompt opens the assistant turn.
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

DEFAULT_VOCAB_SIZE = 6000


@dataclass(frozen=True)
class TokenizerBuild:
    """What `build_tokenizer` wrote."""

    out_dir: Path
    vocab_size: int
    endoftext_id: int
    im_start_id: int
    im_end_id: int


def character_coverage_texts(texts: Sequence[str], *, min_count: int = 1, repeats: int = 10) -> list[str]:
    """Extra training text that makes every non-ASCII character seen `min_count` times one token.

    Byte-level BPE otherwise spends merges on multi-character words and leaves rarer
    characters as 2-3 byte tokens, which a small model learns to emit as broken bytes (U+FFFD).
    Each character stands alone on a line (newlines split pre-tokens), `repeats` times.

    >>> character_coverage_texts(["好好", "好a", "嘩"], min_count=2, repeats=2)
    ['好\\n好']
    """
    counts = Counter(ch for text in texts for ch in text if not ch.isascii() and not ch.isspace())
    return ["\n".join([ch] * repeats) for ch, n in sorted(counts.items()) if n >= min_count]


def qwen2_pipeline_tokenizer(*, vocab: dict[str, int] | None = None, merges: list | None = None) -> Tokenizer:
    """A BPE tokenizer (empty unless given vocab and merges) with Qwen2Tokenizer's pipeline."""
    tokenizer = Tokenizer(
        models.BPE(
            vocab=vocab,
            merges=merges,
            unk_token=None,
            continuing_subword_prefix="",
            end_of_word_suffix="",
            fuse_unk=False,
            byte_fallback=False,
        )
    )
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN_SPLIT_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    return tokenizer


def byte_alphabet() -> dict[str, int]:
    """ByteLevel's printable stand-in character for each byte -> the byte.

    Printable Latin-1 bytes stand for themselves; the other 68 map to chr(256), chr(257)...
    in byte order.
    """
    printable = {*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)}
    alphabet, extra = {}, 0
    for byte in range(256):
        if byte in printable:
            alphabet[chr(byte)] = byte
        else:
            alphabet[chr(256 + extra)] = byte
            extra += 1
    return alphabet


def stays_within_characters(raw: bytes) -> bool:
    """True unless `raw` straddles a UTF-8 character boundary.

    Allowed: whole characters, or a piece of a single character (what BPE needs to build it).

    >>> [stays_within_characters(s.encode()) for s in ("好", "你好", "a好")]
    [True, True, True]
    >>> stays_within_characters("好".encode()[1:]), stays_within_characters("好".encode()[2:] + "你".encode()[:1])
    (True, False)
    """
    lead = len(raw) - len(raw.lstrip(bytes(range(0x80, 0xC0))))  # continuation bytes up front
    if lead:
        return lead == len(raw)
    try:
        raw.decode("utf-8")
        return True
    except UnicodeDecodeError as error:
        # Only a lone, unfinished first character is a piece of one character.
        return error.start == 0 and error.reason == "unexpected end of data"


def align_to_characters(tokenizer: Tokenizer, *, vocab_size: int) -> Tokenizer:
    """Drop merges whose token straddles two characters, keeping at most `vocab_size` tokens.

    Byte-level BPE on CJK happily merges the tail of one character with the head of the
    next. A model trained on such tokens can emit a mismatched pair, which decodes to U+FFFD.
    Merges that depend on a dropped token go too; ids are renumbered in the same order.
    """
    model = json.loads(tokenizer.to_str())["model"]
    to_byte = byte_alphabet()
    by_id = sorted(model["vocab"].items(), key=lambda item: item[1])
    keep = [token for token, _ in by_id if token in SPECIAL_TOKENS or token in to_byte]
    known = set(keep)
    merges = []
    for left, right in (m if isinstance(m, (list, tuple)) else m.split(" ") for m in model["merges"]):
        token = left + right
        if len(keep) >= vocab_size:
            break
        usable = left in known and right in known and token not in known
        if usable and stays_within_characters(bytes(to_byte[ch] for ch in token)):
            merges.append((left, right))
            keep.append(token)
            known.add(token)
    aligned = qwen2_pipeline_tokenizer(vocab={token: i for i, token in enumerate(keep)}, merges=merges)
    aligned.add_special_tokens(list(SPECIAL_TOKENS))
    return aligned


def train_tokenizer(texts: Iterable[str], *, vocab_size: int = DEFAULT_VOCAB_SIZE, min_frequency: int = 2) -> Tokenizer:
    """Train byte-level BPE on `texts`; ids 0, 1, 2 are the special tokens, then the 256 bytes.

    Every byte has a token, so any text (emoji, unseen characters) still encodes. BPE is
    trained for more tokens than asked, then cut back to `vocab_size` character-aligned ones.
    """
    tokenizer = qwen2_pipeline_tokenizer()
    trainer = trainers.BpeTrainer(
        vocab_size=int(vocab_size * 1.3),  # room for the straddling merges dropped below
        min_frequency=min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    tokenizer = align_to_characters(tokenizer, vocab_size=vocab_size)
    for expected_id, token in enumerate(SPECIAL_TOKENS):
        found = tokenizer.token_to_id(token)
        if found != expected_id:
            raise RuntimeError(f"expected {token} to have id {expected_id}, got {found}")
    return tokenizer


def tokenizer_config(*, model_max_length: int = 2048) -> dict:
    """tokenizer_config.json for transformers: Qwen2Tokenizer, ChatML, stop at <|im_end|>."""
    return {
        "tokenizer_class": "Qwen2Tokenizer",
        "add_prefix_space": False,
        "bos_token": None,
        "eos_token": IM_END,
        "pad_token": ENDOFTEXT,
        "unk_token": None,
        "clean_up_tokenization_spaces": False,
        "errors": "replace",
        "split_special_tokens": False,
        "model_max_length": model_max_length,
        "chat_template": CHAT_TEMPLATE,
        "added_tokens_decoder": {
            str(i): {
                "content": token,
                "lstrip": False,
                "normalized": False,
                "rstrip": False,
                "single_word": False,
                "special": True,
            }
            for i, token in enumerate(SPECIAL_TOKENS)
        },
    }


def save_tokenizer(tokenizer: Tokenizer, out_dir: str | Path, *, model_max_length: int = 2048) -> TokenizerBuild:
    """Write tokenizer.json and tokenizer_config.json into `out_dir`."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(out_dir / "tokenizer.json"))
    config = tokenizer_config(model_max_length=model_max_length)
    (out_dir / "tokenizer_config.json").write_text(json.dumps(config, ensure_ascii=False, indent=2), encoding="utf-8")
    return TokenizerBuild(
        out_dir=out_dir,
        vocab_size=tokenizer.get_vocab_size(),
        endoftext_id=tokenizer.token_to_id(ENDOFTEXT),
        im_start_id=tokenizer.token_to_id(IM_START),
        im_end_id=tokenizer.token_to_id(IM_END),
    )


def build_tokenizer(
    texts: Iterable[str], out_dir: str | Path, *, vocab_size: int = DEFAULT_VOCAB_SIZE, model_max_length: int = 2048
) -> tuple[Tokenizer, TokenizerBuild]:
    """Train on `texts` and save into `out_dir`; returns the trained object and what was written."""
    tokenizer = train_tokenizer(texts, vocab_size=vocab_size)
    return tokenizer, save_tokenizer(tokenizer, out_dir, model_max_length=model_max_length)

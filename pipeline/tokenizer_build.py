"""A small byte-level BPE tokenizer that loads back identically as a Qwen2 tokenizer.

transformers 5 rebuilds every `model_type: qwen2` tokenizer as `Qwen2Tokenizer`: it keeps
vocab and merges from tokenizer.json but installs its own normalizer (NFC), pre-tokenizer
(Qwen's split regex, then ByteLevel without prefix space or regex) and ByteLevel decoder.
We train with exactly that pipeline, so the ids seen in training are the ids seen at runtime.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

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
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")


@dataclass(frozen=True)
class TokenizerBuild:
    """What `build_tokenizer` wrote."""

    out_dir: Path
    vocab_size: int
    endoftext_id: int
    im_start_id: int
    im_end_id: int


def qwen2_pipeline_tokenizer() -> Tokenizer:
    """An empty BPE tokenizer with the normalizer/pre-tokenizer/decoder Qwen2Tokenizer uses."""
    tokenizer = Tokenizer(
        models.BPE(
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


def train_tokenizer(texts: Iterable[str], *, vocab_size: int = DEFAULT_VOCAB_SIZE, min_frequency: int = 2) -> Tokenizer:
    """Train byte-level BPE on `texts`; ids 0, 1, 2 are the special tokens, then the 256 bytes.

    Every byte has a token, so any text (emoji, unseen characters) still encodes.
    """
    tokenizer = qwen2_pipeline_tokenizer()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
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

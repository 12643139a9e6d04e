"""The trained BPE must come back from mlx-lm (via transformers' Qwen2Tokenizer) unchanged."""

from __future__ import annotations

import json

import pytest

from core.blas import preload_openblas
from pipeline.hkcancor import load_hkcancor
from pipeline.tokenizer_build import (
    CHAT_TEMPLATE,
    QWEN_SPLIT_REGEX,
    SPECIAL_TOKENS,
    build_tokenizer,
    train_tokenizer,
)

SAMPLES = [
    "今日好熱呀🥵，我哋去 Starbucks 飲 coffee 啦！",
    "佢話「AI 寫嘅 post 好似連登仔」😂😂 you're so right lol",
    "巴打絲打：𡃉㗎嘅 caf\u00e9 定 cafe\u0301？（NFC）\n\n  two  spaces  \t tab",
    "1234567 蚊，$HK 99.5% off!!! <|im_end|> 之後仲有嘢",
    "",
]


def slice_texts() -> list[str]:
    """A small slice of HKCanCor plus a line that uses every sample's characters once."""
    conversations = load_hkcancor()[:4]
    return [c.text for c in conversations] + ["Starbucks coffee post lol right"]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("tok")
    tokenizer, info = build_tokenizer(slice_texts(), out, vocab_size=1200)
    # mlx-lm decides the tokenizer class from the model config, as for the real model dir.
    (out / "config.json").write_text(json.dumps({"model_type": "qwen2"}))
    preload_openblas()  # must precede the first mlx import of the session to matter
    from mlx_lm.utils import load_tokenizer

    wrapper = load_tokenizer(out, eos_token_ids=[info.im_end_id, info.endoftext_id])
    return tokenizer, info, wrapper


def test_special_token_ids_and_size(built):
    tokenizer, info, _ = built
    assert [tokenizer.token_to_id(t) for t in SPECIAL_TOKENS] == [0, 1, 2]
    assert (info.endoftext_id, info.im_start_id, info.im_end_id) == (0, 1, 2)
    assert info.vocab_size == tokenizer.get_vocab_size() == 1200


def test_split_regex_is_the_one_transformers_installs():
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    assert QWEN_SPLIT_REGEX == PRETOKENIZE_REGEX


def test_runtime_tokenizer_is_qwen2(built):
    _, _, wrapper = built
    assert type(wrapper._tokenizer).__name__ == "Qwen2Tokenizer"


@pytest.mark.parametrize("text", SAMPLES)
def test_mlx_lm_encodes_like_the_trained_tokenizer(built, text):
    tokenizer, _, wrapper = built
    trained_ids = tokenizer.encode(text).ids
    assert wrapper.encode(text, add_special_tokens=False) == trained_ids
    assert wrapper.decode(trained_ids) == tokenizer.decode(trained_ids, skip_special_tokens=False)


@pytest.mark.parametrize("text", [s for s in SAMPLES if "<|" not in s])
def test_decode_round_trips(built, text):
    import unicodedata

    tokenizer, _, wrapper = built
    ids = wrapper.encode(text, add_special_tokens=False)
    assert wrapper.decode(ids) == unicodedata.normalize("NFC", text)
    assert tokenizer.decode(ids) == unicodedata.normalize("NFC", text)


def test_special_tokens_in_text_stay_whole(built):
    _, info, wrapper = built
    ids = wrapper.encode("好<|im_end|>", add_special_tokens=False)
    assert ids[-1] == info.im_end_id
    assert info.im_end_id not in wrapper.encode("好<|im_end", add_special_tokens=False)


def test_chat_template_renders_chatml_with_generation_prompt(built):
    _, info, wrapper = built
    messages = [{"role": "system", "content": "系統"}, {"role": "user", "content": "你好"}]
    text = wrapper.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert text == "<|im_start|>system\n系統<|im_end|>\n<|im_start|>user\n你好<|im_end|>\n<|im_start|>assistant\n"
    without = wrapper.apply_chat_template(messages, add_generation_prompt=False, tokenize=False)
    assert not without.endswith("assistant\n")
    ids = list(wrapper.apply_chat_template(messages, add_generation_prompt=True))
    assert ids[0] == info.im_start_id and ids.count(info.im_end_id) == 2


def test_stop_and_pad_tokens(built):
    _, info, wrapper = built
    assert wrapper.eos_token == "<|im_end|>"
    assert set(wrapper.eos_token_ids) == {info.im_end_id, info.endoftext_id}
    assert wrapper.pad_token_id == info.endoftext_id


def test_saved_config_carries_template(built):
    _, info, _ = built
    config = json.loads((info.out_dir / "tokenizer_config.json").read_text())
    assert config["chat_template"] == CHAT_TEMPLATE
    assert config["tokenizer_class"] == "Qwen2Tokenizer"


def test_training_is_deterministic():
    texts = slice_texts()
    first = train_tokenizer(texts, vocab_size=800).to_str()
    assert train_tokenizer(texts, vocab_size=800).to_str() == first


def test_character_coverage_makes_every_seen_character_one_token():
    from pipeline.tokenizer_build import character_coverage_texts

    texts = slice_texts()
    chars = {ch for text in texts for ch in text if not ch.isascii() and not ch.isspace()}
    plain = train_tokenizer(texts, vocab_size=1500)
    covered = train_tokenizer(texts + character_coverage_texts(texts), vocab_size=1500)
    split_plain = [ch for ch in chars if len(plain.encode(ch).ids) > 1]
    split_covered = [ch for ch in chars if len(covered.encode(ch).ids) > 1]
    assert split_plain and not split_covered
    # So the text itself encodes without a single partial-character token.
    ids = covered.encode("\n".join(texts)).ids
    assert all("\ufffd" not in covered.decode([i]) for i in ids)


def test_no_token_straddles_a_character_boundary(built):
    from pipeline.tokenizer_build import byte_alphabet, stays_within_characters

    tokenizer, _, _ = built
    to_byte = byte_alphabet()
    # Single bytes (the base alphabet) stay, including ones UTF-8 never uses.
    tokens = [t for t in tokenizer.get_vocab() if t not in SPECIAL_TOKENS and len(t) > 1]
    assert len(tokens) > 600
    assert all(stays_within_characters(bytes(to_byte[ch] for ch in t)) for t in tokens)

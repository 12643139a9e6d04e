"""Small chat datasets in `lilm dataset`'s format, for the train/fuse/quantize tests and the benchmark.

`write_chat_dataset` is imported by the other test_train*/test_fuse*/test_quantize* modules.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from core.prompt import SYSTEM_MESSAGE, format_user_message
from tests.fakes.tiny_mlx_model import tiny_model_path  # noqa: F401 (fixture)

CATEGORIES = ("吹水台", "時事台", "財經台", "創意台", "體育台")
TITLES = ("今日好熱", "巴士又遲到", "樓價跌咗", "有冇人食咗飯", "聽日落雨", "返工好攰", "部電話壞咗", "放假去邊")
CONTENTS = ("如題，大家點睇", "熱到溶，冷氣都唔夠", "等咗成個鐘都未到", "仲有冇得救", "求推介", "唔知點算好")
REPLIES = ("正呀", "唔好咁講啦", "巴士係咁㗎喇", "屌，真係好攰", "食咗啦，你呢", "聽日唔使返工就好", "幫你推", "我都係咁諗")


def chat_row(rng: random.Random) -> dict:
    """One `{"messages": [system, user, assistant]}` row built with core.prompt, as `lilm dataset` does."""
    user = format_user_message(rng.choice(CATEGORIES), rng.choice(TITLES), rng.choice(CONTENTS))
    return {"messages": [
        {"role": "system", "content": SYSTEM_MESSAGE},
        {"role": "user", "content": user},
        {"role": "assistant", "content": rng.choice(REPLIES)},
    ]}


def write_chat_dataset(out_dir: str | Path, *, train: int = 16, valid: int = 8, test: int = 4, seed: int = 0) -> Path:
    """Write train/valid/test.jsonl (and a stats.json) of random rows; returns the directory."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    for split, count in (("train", train), ("valid", valid), ("test", test)):
        lines = [json.dumps(chat_row(rng), ensure_ascii=False) for _ in range(count)]
        (out_dir / f"{split}.jsonl").write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    (out_dir / "stats.json").write_text(json.dumps({"train": train, "valid": valid, "test": test}), encoding="utf-8")
    return out_dir


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_dataset_is_readable_by_mlx_lm_loader(tmp_path, tiny_model_path):  # noqa: F811
    import types

    from mlx_lm.tuner.datasets import load_dataset
    from mlx_lm.utils import load

    _, tokenizer = load(tiny_model_path)
    data = write_chat_dataset(tmp_path / "data", train=6, valid=3, test=2)
    train, valid, test = load_dataset(types.SimpleNamespace(data=str(data), train=True, test=True, mask_prompt=False), tokenizer)
    assert (len(train), len(valid), len(test)) == (6, 3, 2)
    tokens, offset = train.process(train[0])
    assert offset == 0
    first = json.loads((data / "train.jsonl").read_text(encoding="utf-8").splitlines()[0])
    text = tokenizer.decode(tokens)
    assert first["messages"][2]["content"] in text and "貼文標題" in text

"""`lilm eval` end to end on real tiny models: model/lilm-tiny (read-only) as the fine-tuned
model against a randomly initialised model of the same shape and tokenizer as the base."""

from __future__ import annotations

import argparse
import html
import json
import shutil
import struct

import pytest

from core.prompt import build_messages
from core.settings import DEFAULT_MODEL_DIR, load_settings

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (DEFAULT_MODEL_DIR / "config.json").is_file(), reason="model/lilm-tiny is not built"),
]

TEST_ROWS = 10
THREADS = 3
MAX_TOKENS = 12
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JSON_FIELDS = {"dataset", "test_rows", "perplexity_rows", "threads", "seed", "sampling", "models", "real", "samples",
               "train_log", "seconds", "report", "plots"}
MODEL_FIELDS = {"model", "adapter", "label", "perplexity", "judgement", "unconverted_judgement", "lengths", "replies", "seconds"}
TOKENIZER_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json")


@pytest.fixture(scope="module")
def random_base(tmp_path_factory):
    """lilm-tiny's config and tokenizer with freshly initialised (untrained) weights."""
    import mlx.core as mx
    from mlx_lm.models.qwen2 import Model, ModelArgs
    from mlx_lm.utils import save_model

    out = tmp_path_factory.mktemp("random-base")
    for name in TOKENIZER_FILES:
        shutil.copy(DEFAULT_MODEL_DIR / name, out / name)
    mx.random.seed(0)
    model = Model(ModelArgs.from_dict(json.loads((out / "config.json").read_text())))
    mx.eval(model.parameters())
    save_model(out, model)
    return out


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """A test split of held-out synthetic threads (conversations lilm-tiny never trained on)."""
    from mlx_lm.utils import load_tokenizer

    from pipeline.hkcancor import load_hkcancor
    from pipeline.synthetic_threads import build_thread_split

    tokenizer = load_tokenizer(DEFAULT_MODEL_DIR)
    count = lambda text: len(tokenizer.encode(text, add_special_tokens=False))
    threads = build_thread_split(load_hkcancor(), seed=0).held_out[:TEST_ROWS]
    out = tmp_path_factory.mktemp("dataset")
    with (out / "test.jsonl").open("w", encoding="utf-8") as file:
        for t in threads:
            messages = build_messages(t.category, t.title, t.content, count_tokens=count, budget=192, reply=t.reply)
            file.write(json.dumps({"messages": messages}, ensure_ascii=False) + "\n")
    return out, threads


def _train_log(path, steps=(10, 20, 30, 40)):
    with path.open("w") as file:
        for step in steps:
            file.write(json.dumps({"step": step, "train_loss": 9.0 - step / 10, "val_loss": 9.2 - step / 10 if step % 20 == 0 else None,
                                   "learning_rate": 1e-3, "tokens_per_second": 900.0, "peak_memory_gb": 0.1,
                                   "elapsed_seconds": step / 5}) + "\n")
    return path


def _run_cli(argv, capsys):
    from pipeline.eval_cli import register

    parser = argparse.ArgumentParser(prog="lilm")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["eval", *argv])
    code = args.run(args, load_settings(None, environ={}))
    return code, capsys.readouterr().out


def _assert_png(path):
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    width, height = struct.unpack(">II", data[16:24])  # IHDR
    assert width > 200 and height > 100
    from PIL import Image

    with Image.open(path) as image:
        image.verify()


@pytest.mark.timeout(180)
def test_fused_model_beats_random_base_and_report_has_real_rows(random_base, dataset, tmp_path, capsys):
    data, threads = dataset
    out = tmp_path / "report"
    code, stdout = _run_cli(
        ["--data", str(data), "--base", str(random_base), "--model", str(DEFAULT_MODEL_DIR), "--limit", str(THREADS),
         "--max-tokens", str(MAX_TOKENS), "--train-log", str(_train_log(tmp_path / "train_log.jsonl")), "--out", str(out),
         "--json"],
        capsys,
    )
    assert code == 0
    result = json.loads(stdout)
    assert JSON_FIELDS <= set(result)
    assert result == json.loads((out / "results.json").read_text(encoding="utf-8"))
    base, tuned = result["models"]["base"], result["models"]["finetuned"]
    assert MODEL_FIELDS <= set(base) and MODEL_FIELDS <= set(tuned)
    assert result["test_rows"] == result["perplexity_rows"] == TEST_ROWS and result["threads"] == THREADS
    # Trained on Cantonese vs untrained: far lower perplexity on the same scored reply tokens.
    assert base["perplexity"]["tokens"] == tuned["perplexity"]["tokens"] > 0
    assert tuned["perplexity"]["perplexity"] < base["perplexity"]["perplexity"] / 2
    assert len(tuned["replies"]) == len(base["replies"]) == THREADS
    assert tuned["lengths"]["count"] == THREADS and result["real"]["lengths"]["count"] == THREADS

    report = (out / "report.md").read_text(encoding="utf-8")
    table_rows = [line for line in report.splitlines() if line.startswith(("| 1 |", "| 2 |", "| 3 |"))]
    assert len(table_rows) == THREADS
    for line, thread, sample in zip(table_rows, threads, result["samples"]):
        assert thread.title in line and thread.reply in line
        assert sample["finetuned"].replace("\n", "<br>") in line or not sample["finetuned"]
    assert "![loss curve](loss_curve.png)" in report and "![reply length histogram](lengths.png)" in report
    _assert_png(out / "loss_curve.png")
    _assert_png(out / "lengths.png")


@pytest.mark.timeout(180)
def test_adapter_dir_is_applied_and_its_train_log_drawn(random_base, dataset, tmp_path, capsys):
    """random base + a full-weight adapter holding lilm-tiny's weights == lilm-tiny."""
    import mlx.core as mx
    from mlx_lm import load

    from pipeline.perplexity import chat_perplexity

    data, threads = dataset
    adapter = tmp_path / "adapters" / "run"
    adapter.mkdir(parents=True)
    mx.save_safetensors(str(adapter / "adapters.safetensors"), mx.load(str(DEFAULT_MODEL_DIR / "model.safetensors")))
    (adapter / "adapter_config.json").write_text(json.dumps({"fine_tune_type": "full", "num_layers": -1}))
    _train_log(adapter / "train_log.jsonl")
    out = tmp_path / "html"
    code, _ = _run_cli(
        ["--data", str(data), "--base", str(random_base), "--adapter", str(adapter), "--limit", "2", "--max-tokens", "8",
         "--out", str(out), "--format", "html", "--json"],
        capsys,
    )
    assert code == 0
    result = json.loads((out / "results.json").read_text(encoding="utf-8"))
    tuned = result["models"]["finetuned"]
    assert tuned["model"] == str(random_base) and tuned["adapter"] == str(adapter)
    assert result["train_log"] == str(adapter / "train_log.jsonl")

    model, tokenizer = load(str(DEFAULT_MODEL_DIR))
    fused = chat_perplexity(model, tokenizer, [json.loads(line) for line in (data / "test.jsonl").read_text(encoding="utf-8").splitlines()])
    assert tuned["perplexity"]["perplexity"] == pytest.approx(fused.perplexity, rel=1e-3)
    assert tuned["perplexity"]["perplexity"] < result["models"]["base"]["perplexity"]["perplexity"] / 2

    report = (out / "report.html").read_text(encoding="utf-8")
    assert report.startswith("<!DOCTYPE html>") and '<img src="loss_curve.png"' in report
    assert "<tr><td>1</td>" in report and "<tr><td>2</td>" in report and "<tr><td>3</td>" not in report
    for thread in threads[:2]:
        assert html.escape(thread.title) in report and html.escape(thread.reply) in report
    _assert_png(out / "loss_curve.png")


@pytest.mark.timeout(120)
def test_each_reply_is_seeded_by_its_thread_not_by_its_batch(dataset):
    import asyncio

    from core.generation import SamplingParams
    from pipeline.eval_generate import generate_replies
    from pipeline.evaluate import ModelSpec, load_model

    _, threads = dataset
    model, tokenizer = load_model(ModelSpec(str(DEFAULT_MODEL_DIR)))
    prompts = [t.prompt for t in _threads_as_test_rows(threads[:4])]
    settings, params = load_settings(None, environ={}), SamplingParams(max_tokens=10)
    together = asyncio.run(generate_replies(model, tokenizer, prompts, settings=settings, params=params, seed=7, name="t"))
    # Thread 2 of a batch seeded 7 uses seed 9: alone, with seed 9, it writes the same reply.
    alone = asyncio.run(generate_replies(model, tokenizer, prompts[2:3], settings=settings, params=params, seed=9, name="t"))
    assert alone == together[2:3]
    assert len({r.shown for r in together}) == len(together)


def _threads_as_test_rows(threads):
    from pipeline.eval_data import TestThread

    return [TestThread(category=t.category, title=t.title, content=t.content, reply=t.reply, messages=()) for t in threads]

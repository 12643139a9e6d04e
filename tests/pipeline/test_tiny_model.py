"""The tiny-model build: training rows, the split, and a real quick build loaded by mlx-lm."""

from __future__ import annotations

import argparse
import json

import pytest

from core.blas import preload_openblas
from pipeline.hkcancor import load_hkcancor
from pipeline.synthetic_threads import SyntheticThread, build_thread_split
from pipeline.tokenizer_build import IM_END, build_tokenizer

THREAD = SyntheticThread(
    id="t-1", conversation="c", category="吹水台", title="今晚食咩好", content="放工好攰。\n唔想煮飯。", reply="食麥當勞囉，平又快。"
)


@pytest.fixture(scope="module")
def conversations():
    return load_hkcancor()


@pytest.fixture(scope="module")
def runtime_tokenizer(tmp_path_factory, conversations):
    """A small tokenizer loaded back the way runtime loads it."""
    preload_openblas()
    from mlx_lm.utils import load_tokenizer

    out = tmp_path_factory.mktemp("tok")
    build_tokenizer([c.text for c in conversations[:6]], out, vocab_size=1500)
    (out / "config.json").write_text(json.dumps({"model_type": "qwen2"}))
    return load_tokenizer(out)


def test_chat_row_scores_only_the_reply_and_im_end(runtime_tokenizer):
    from core.prompt import build_messages
    from pipeline.tiny_model import chat_row

    tok = runtime_tokenizer
    row = chat_row(THREAD, tok, max_len=256)
    count = lambda s: len(tok.encode(s, add_special_tokens=False))
    messages = build_messages(THREAD.category, THREAD.title, THREAD.content, count_tokens=count, budget=2048)
    prompt = list(tok.apply_chat_template(messages, add_generation_prompt=True))
    # Targets are tokens[1:]; index loss_from is the first scored target.
    assert row.tokens[: row.loss_from + 1] == prompt
    assert tok.decode(row.tokens[row.loss_from + 1 :]) == THREAD.reply + IM_END


def test_make_batch_scores_exactly_the_reply_positions():
    from pipeline.tiny_model import Row, make_batch

    rows = [Row(tokens=[5, 6, 7, 8, 9], loss_from=2), Row(tokens=[5, 6, 7], loss_from=0)]
    batch = make_batch(rows, pad_id=0, multiple=8)
    weights = batch.weights.tolist()
    scored = [(p, t) for p, t, w in zip(batch.positions.tolist(), batch.targets.tolist(), weights) if w]
    width = batch.inputs.shape[1]
    # Row 0 scores targets 8 and 9 (indices 2, 3); row 1 scores 6 and 7; no padding id 0.
    assert scored == [(2, 8), (3, 9), (width + 0, 6), (width + 1, 7)]
    assert batch.inputs.tolist()[1][:4] == [5, 6, 7, 0]


def test_split_never_shares_a_conversation(conversations):
    split = build_thread_split(conversations, seed=3)
    train = {t.conversation for t in split.train}
    held = {t.conversation for t in split.held_out}
    assert train and held and not train & held
    assert held == {c.name for c in split.held_out_conversations}
    assert len(split.held_out) > 100 and len(split.train) > 8 * len(split.held_out)


def test_threads_are_seeded(conversations):
    first = build_thread_split(conversations, seed=1)
    assert build_thread_split(conversations, seed=1) == first
    assert build_thread_split(conversations, seed=2).train != first.train


def test_cli_registers_pipeline_and_prints_summary(monkeypatch, capsys, tmp_path):
    from pipeline import cli, tiny_model

    calls = []

    def fake_build(out_dir, **options):
        calls.append((out_dir, options))
        return tiny_model.TinyBuildResult(
            out_dir=tmp_path, config=tiny_model.PRESETS["quick"], parameters=1_000_000, vocab_size=2000,
            train_threads=10, held_out_threads=2, lm_rows=3, trained_tokens=100,
            random_init_held_out_loss=7.6, final_train_loss=4.0, final_held_out_loss=4.5, seconds=1.0, disk_bytes=2_000_000,
        )

    monkeypatch.setattr(tiny_model, "build_tiny_model", fake_build)
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers())
    args = parser.parse_args(["pipeline", "--preset", "quick", "--out", str(tmp_path), "--seed", "4", "--steps", "7"])
    assert args.run(args, None) == 0
    assert calls == [(str(tmp_path), {"preset": "quick", "seed": 4, "steps": 7})]
    assert "held-out loss 4.500 (random init 7.600)" in capsys.readouterr().out
    defaults = parser.parse_args(["pipeline"])
    assert (defaults.preset, defaults.seed, defaults.steps) == ("tiny", 0, None)
    assert defaults.out.endswith("model/lilm-tiny")


def test_lilm_cli_dispatches_pipeline_to_run():
    from lilm.cli import build_parser
    from pipeline import cli

    args = build_parser().parse_args(["pipeline", "--steps", "5"])
    assert args.run is cli.run and args.steps == 5


@pytest.fixture(scope="module")
def quick_build(tmp_path_factory, conversations):
    preload_openblas()
    from pipeline.tiny_model import build_tiny_model

    out = tmp_path_factory.mktemp("build") / "lilm-tiny"
    lines: list[str] = []
    result = build_tiny_model(out, preset="quick", seed=0, conversations=conversations, log=lines.append)
    return result, lines


@pytest.mark.slow
def test_quick_build_writes_a_loadable_model_dir(quick_build):
    result, lines = quick_build
    names = {p.name for p in result.out_dir.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "lilm_build.json"} <= names
    assert not result.out_dir.with_name("lilm-tiny.building").exists()
    info = json.loads((result.out_dir / "lilm_build.json").read_text())
    assert info["config"]["seed"] == 0 and info["config"]["steps"] == result.config.steps
    assert info["train_threads"] == result.train_threads > 0
    assert info["final_held_out_loss"] == pytest.approx(result.final_held_out_loss)
    config = json.loads((result.out_dir / "config.json").read_text())
    assert config["model_type"] == "qwen2" and config["eos_token_id"] == [2, 0]
    assert any(line.startswith("step ") and "tok/s" in line for line in lines)
    assert result.history[-1].step == result.config.steps


@pytest.mark.slow
def test_quick_build_learns_clearly_beyond_random_init(quick_build, conversations):
    import mlx.core as mx
    from mlx_lm import load
    from mlx_lm.models.qwen2 import Model, ModelArgs

    from pipeline.tiny_model import chat_row, evaluate

    result, _ = quick_build
    assert result.final_held_out_loss < result.random_init_held_out_loss - 0.5
    # Re-measure from the saved (fp16) weights against a fresh random model of the same shape.
    model, tok, config = load(str(result.out_dir), return_config=True)
    held = build_thread_split(conversations, seed=0).held_out[:120]
    rows = [chat_row(t, tok, max_len=result.config.max_seq_len) for t in held]
    mx.random.seed(123)
    random_model = Model(ModelArgs.from_dict(config))
    assert evaluate(model, rows, pad_id=0) < evaluate(random_model, rows, pad_id=0) - 0.5


@pytest.mark.slow
def test_quick_build_generates_and_stops_at_im_end(quick_build):
    import mlx.core as mx
    from mlx_lm import load, stream_generate

    result, _ = quick_build
    model, tok = load(str(result.out_dir))
    im_end = tok.convert_tokens_to_ids(IM_END)
    prompt = tok.apply_chat_template([{"role": "user", "content": "今晚食咩好？"}], add_generation_prompt=True)

    calls = []

    def end_after_three(tokens, logits):
        # Force the end-of-turn token from the fourth step on: generation must stop there
        # (or earlier, if the model ends the turn by itself).
        calls.append(1)
        if len(calls) <= 3:
            return logits
        return mx.where(mx.arange(logits.shape[-1]) == im_end, 100.0, -100.0)[None]

    responses = list(stream_generate(model, tok, prompt, max_tokens=20, logits_processors=[end_after_three]))
    assert responses[-1].finish_reason == "stop"
    assert responses[-1].token == im_end
    assert 1 < len(responses) <= 4
    text = "".join(r.text for r in responses)
    assert IM_END not in text and text.strip()

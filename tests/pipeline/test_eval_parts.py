"""`lilm eval`'s parts without a model: reading the test split, lengths, plots, the report."""

from __future__ import annotations

import json
import struct

import pytest

from core.errors import ConfigError
from core.prompt import format_user_message
from pipeline.eval_data import LengthStats, parse_user_message, read_test_split
from pipeline.eval_plots import (
    LossPoint,
    plot_length_histogram,
    plot_loss_curve,
    read_train_log,
)
from pipeline.eval_report import (
    Heading,
    Image,
    Paragraph,
    Table,
    render_html,
    render_markdown,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _row(category, title, content, reply):
    return {"messages": [
        {"role": "system", "content": "你係 LIHKG 用戶。"},
        {"role": "user", "content": format_user_message(category, title, content)},
        {"role": "assistant", "content": reply},
    ]}


def _png_size(path):
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    return struct.unpack(">II", data[16:24])


@pytest.mark.parametrize("content", ["", "一行", "第一行\n貼文標題：第二行\n\n第四行"])
def test_user_message_round_trips_through_the_prompt_builder(content):
    assert parse_user_message(format_user_message("吹水台", "今日好熱", content)) == ("吹水台", "今日好熱", content)


def test_read_test_split_from_a_directory_or_a_file(tmp_path):
    rows = [_row("吹水台", "今日好熱", "熱到溶\n真係", "開冷氣啦"), _row("飲食台", "邊度好食", "", "去茶記")]
    (tmp_path / "test.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows) + "\n", encoding="utf-8")
    threads = read_test_split(tmp_path)
    assert [(t.category, t.title, t.content, t.reply) for t in threads] == [
        ("吹水台", "今日好熱", "熱到溶\n真係", "開冷氣啦"), ("飲食台", "邊度好食", "", "去茶記")]
    assert threads[0].messages == tuple(rows[0]["messages"])
    assert read_test_split(tmp_path / "test.jsonl") == threads


@pytest.mark.parametrize(
    ("line", "error"),
    [
        ('{"messages": [{"role": "user", "content": "冇格式"}, {"role": "assistant", "content": "x"}]}', "test.jsonl:2"),
        ('{"text": "plain"}', "test.jsonl:2"),
        ('{"messages": [{"role": "user", "content": "貼文類別：a\\n貼文標題：b\\n貼文內容：\\nc"}]}', "test.jsonl:2"),
        ("not json", "test.jsonl:2"),
    ],
)
def test_bad_rows_are_named_by_line(tmp_path, line, error):
    good = json.dumps(_row("吹水台", "t", "c", "r"), ensure_ascii=False)
    (tmp_path / "test.jsonl").write_text(good + "\n" + line + "\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=error):
        read_test_split(tmp_path)


def test_missing_or_empty_split_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="no test split"):
        read_test_split(tmp_path)
    (tmp_path / "test.jsonl").write_text("\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="no rows"):
        read_test_split(tmp_path)


def test_length_stats_count_characters_not_bytes():
    stats = LengthStats.of(["好正", "ok", "屌你老母", "", "係咪真㗎？"])
    assert (stats.count, stats.min, stats.max, stats.median, stats.mean) == (5, 0, 5, 2.0, 2.6)
    assert LengthStats.of([]).count == 0


def test_train_log_reads_nulls_and_skips_blank_lines(tmp_path):
    log = tmp_path / "train_log.jsonl"
    log.write_text(
        '{"step": 10, "train_loss": 5.0, "val_loss": null, "elapsed_seconds": 1.0}\n\n'
        '{"step": 20, "train_loss": null, "val_loss": 4.5, "elapsed_seconds": 2.0}\n',
        encoding="utf-8",
    )
    assert read_train_log(tmp_path) == [LossPoint(10, 5.0, None), LossPoint(20, None, 4.5)]
    log.write_text('{"train_loss": 1.0}\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="train_log.jsonl:1"):
        read_train_log(log)


def test_plots_are_valid_pngs(tmp_path):
    from PIL import Image as PilImage

    points = [LossPoint(step, 6.0 - step / 100, 6.2 - step / 100 if step % 50 == 0 else None) for step in range(10, 210, 10)]
    loss = plot_loss_curve(points, tmp_path / "loss.png")
    lengths = plot_length_histogram({"real": [3, 8, 12, 40], "base": [0, 120], "fine-tuned": [10, 11, 15]}, tmp_path / "len.png")
    for path in (loss, lengths):
        width, height = _png_size(path)
        assert width > 300 and height > 200
        with PilImage.open(path) as image:
            image.verify()
    assert plot_loss_curve([LossPoint(10, None, None)], tmp_path / "none.png") is None
    assert not (tmp_path / "none.png").exists()


NASTY = "a|b *粗體* <script>x</script>\n第二行 [link](http://x) `code` #1"
BLOCKS = [Heading(1, "LiLM eval"), Paragraph("說明 <b>"), Table(["#", "真實回覆"], [["1", NASTY]]), Image("plot", "lengths.png")]


def test_markdown_table_cells_stay_one_escaped_line():
    markdown = render_markdown(BLOCKS)
    lines = markdown.splitlines()
    row = next(line for line in lines if line.startswith("| 1 |"))
    # Exactly the 3 column separators of a 2-column row: the `|` in the text is escaped.
    assert row.replace("\\|", "").count("|") == 3
    assert "&lt;script&gt;" in row and "<script>" not in markdown and "\\*粗體\\*" in row and "<br>第二行" in row
    assert lines[0] == "# LiLM eval" and "![plot](lengths.png)" in lines


def test_html_escapes_every_text():
    page = render_html(BLOCKS, title="t <i>")
    assert page.startswith("<!DOCTYPE html>") and "<title>t &lt;i&gt;</title>" in page
    assert "<script>" not in page and "&lt;script&gt;x&lt;/script&gt;" in page
    assert '<img src="lengths.png" alt="plot">' in page and "<th>真實回覆</th>" in page


def _parse(argv):
    import argparse

    from pipeline.eval_cli import register

    parser = argparse.ArgumentParser(prog="lilm")
    register(parser.add_subparsers(dest="command"))
    return parser.parse_args(["eval", *argv])


def test_cli_refuses_to_compare_a_model_with_itself(tmp_path):
    from core.settings import load_settings

    model = tmp_path / "m"
    model.mkdir()
    settings = load_settings(None, environ={"LILM_MODEL": str(model)})
    # The fine-tuned model defaults to LILM_MODEL; the same directory spelt differently is still the same.
    args = _parse(["--data", str(tmp_path), "--base", str(tmp_path / "." / "m")])
    with pytest.raises(ConfigError, match="fine-tuned model is the base model"):
        args.run(args, settings)


@pytest.mark.parametrize("argv", [["--limit", "0"], ["--max-tokens", "-1"], ["--format", "pdf"]])
def test_cli_rejects_bad_options(argv, capsys):
    with pytest.raises(SystemExit):
        _parse(["--data", "d", "--base", "b", *argv])
    assert "error" in capsys.readouterr().err


def _model_eval(role, label, perplexity, replies):
    from pipeline.cantonese_judge import summarise
    from pipeline.eval_generate import GeneratedReply
    from pipeline.evaluate import ModelEval, ModelSpec

    generated = [GeneratedReply(shown=r, unconverted=r) for r in replies]
    return ModelEval(role=role, spec=ModelSpec(label), perplexity=perplexity, replies=generated, judgement=summarise(replies),
                     unconverted_judgement=summarise(replies), lengths=LengthStats.of(replies), seconds={"load": 1.0})


def test_report_says_when_nothing_was_scored_and_json_has_no_nan(tmp_path):
    """A chat longer than the model's context scores no tokens: n/a in the report, null in JSON."""
    from core.generation import SamplingParams
    from core.masking import Masker
    from pipeline.cantonese_judge import summarise
    from pipeline.eval_data import TestThread
    from pipeline.eval_report import write_report
    from pipeline.evaluate import EvalOptions, EvalResult, sample_rows
    from pipeline.perplexity import PerplexityResult

    threads = [TestThread("吹水台", "今日好熱", "熱到溶", "開冷氣啦", ()), TestThread("飲食台", "邊度好食|", "", "屌你老母去茶記", ())]
    base = _model_eval("base", "base-model", PerplexityResult.from_total(nll_sum=0.0, tokens=0), ["我哋", "佢係"])
    tuned = _model_eval("finetuned", "tuned", PerplexityResult.from_total(nll_sum=30.0, tokens=10), ["熱到死", "好食"])
    result = EvalResult(
        dataset="d", test_rows=2, perplexity_rows=2, threads=threads, base=base, finetuned=tuned,
        real_judgement=summarise([t.reply for t in threads]), real_lengths=LengthStats.of([t.reply for t in threads]),
        samples=sample_rows(threads, base.replies, tuned.replies, masker=Masker.default()), options=EvalOptions(),
        sampling=SamplingParams(), train_log=None,
    )
    files = write_report(result, tmp_path, fmt="md")
    report = files.report.read_text(encoding="utf-8")
    assert "| perplexity (assistant tokens) | n/a | 20.09 | – |" in report
    assert "different numbers of tokens (0 vs 10)" in report and "No training log" in report
    # Real replies are masked like generated ones; `|` in a title does not break the row.
    assert "| 2 | 邊度好食\\| |  | XXXX去茶記 | 佢係 | 好食 |" in report and "屌" not in report
    assert files.loss_plot is None
    payload = json.loads(files.results.read_text(encoding="utf-8"), parse_constant=lambda name: pytest.fail(name))
    assert payload["models"]["base"]["perplexity"] == {"nll": None, "tokens": 0, "perplexity": None}
    assert payload["plots"] == {"loss_curve": None, "lengths": str(files.lengths_plot)}

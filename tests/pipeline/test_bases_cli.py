"""`lilm bases` through its own parser: JSON, report files, the random baseline, errors."""

from __future__ import annotations

import argparse
import json

import pytest

from core.errors import ConfigError
from pipeline.bases_cli import main, register
from tests.pipeline.test_bases_models import trained_and_random

FAST = ["--max-chars", "600", "--samples", "1", "--max-tokens", "6"]


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="lilm")
    register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["bases", *argv])


@pytest.fixture(scope="module")
def small_probes(tmp_path_factory):
    path = tmp_path_factory.mktemp("probes") / "probes.json"
    path.write_text(json.dumps({
        "continuation_instruction": "接住寫：",
        "continuations": [{"id": "mtr", "text": "尋日喺地鐵見到一個人"}],
        "probes": [{"id": "yum-cha", "topic": "hong-kong", "question": "去酒樓飲茶，通常會食咩？",
                    "options": ["壽司", "點心"], "answer": 1}],
    }, ensure_ascii=False), encoding="utf-8")
    return str(path)


def test_options_parse_with_defaults_and_adapter_form():
    args = parse(["model/lilm-tiny", "/m/qwen@adapters/run1"])
    assert args.models == ["model/lilm-tiny", "/m/qwen@adapters/run1"]
    assert (args.window, args.stride, args.corpus, args.samples) == (512, 256, "hkcancor-held-out", 2)
    assert args.run.__name__ == "run" and not args.json and args.report is None
    with pytest.raises(SystemExit):
        parse(["m", "--stride", "0"])
    args = parse(["m", "--window", "1", "--no-report"])
    with pytest.raises(ConfigError, match="window"):
        args.run(args, None)


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_json_run_with_random_baseline_writes_both_reports(tmp_path_factory, tmp_path, small_probes, capsys):
    trained_dir, _ = trained_and_random(tmp_path_factory)
    md, page = tmp_path / "r.md", tmp_path / "r.html"
    args = parse([str(trained_dir), "--random-baseline", "--json", "--probes", small_probes,
                  "--report", str(md), "--report", str(page), *FAST])
    assert args.run(args, None) == 0
    out, err = capsys.readouterr()
    data = json.loads(out)
    trained, baseline = data["candidates"]
    assert baseline["label"] == "trained (random init)"
    assert baseline["facts"]["parameters"] == trained["facts"]["parameters"]
    assert trained["perplexity"]["bits_per_char"] < baseline["perplexity"]["bits_per_char"]
    assert data["probes_source"] == small_probes and len(trained["probes"]) == 1
    assert data["seconds"] >= sum(c["seconds"] for c in data["candidates"])
    assert "100%" in err  # the progress bar finished, on stderr
    assert md.read_text(encoding="utf-8").startswith("# Base model comparison")
    assert "<table>" in page.read_text(encoding="utf-8")


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_table_output_and_default_report_names(tmp_path_factory, tmp_path, small_probes, capsys, monkeypatch):
    trained_dir, random_dir = trained_and_random(tmp_path_factory)
    monkeypatch.chdir(tmp_path)
    assert main([str(trained_dir), str(random_dir), "--probes", small_probes, "--no-progress", *FAST]) == 0
    out, err = capsys.readouterr()
    assert "ppl/token" in out and "peak mem" in out and "random" in out
    assert err.count("report written") == 2 and "%|" not in err
    assert (tmp_path / "bases-report.md").is_file() and (tmp_path / "bases-report.html").is_file()


def test_bad_report_name_is_refused_before_any_model_loads(tmp_path, small_probes):
    args = parse([str(tmp_path / "no-model"), "--probes", small_probes, "--report", str(tmp_path / "r.pdf")])
    with pytest.raises(ConfigError, match="r.pdf"):
        args.run(args, None)


def test_main_prints_a_cantonese_line_for_a_bad_probes_file(tmp_path, capsys):
    broken = tmp_path / "probes.json"
    broken.write_text("[", encoding="utf-8")
    assert main(["model/lilm-tiny", "--probes", str(broken), "--no-progress", "--no-report"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("lilm: 設定有問題") and "probes.json" in err

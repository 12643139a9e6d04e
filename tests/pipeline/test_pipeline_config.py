"""`lilm pipeline --config`: every step from one YAML file, through the steps' own commands."""

import json
import sqlite3
from pathlib import Path

import pytest
import yaml

from core.errors import ConfigError
from core.settings import DEFAULT_MODEL_DIR, load_settings
from lilm.cli import main
from pipeline.cli import step_registrars
from pipeline.run_config import load_config, parse_steps, run_pipeline, step_argv
from tests.fakes.lihkg_threads import make_corpus

EXAMPLE_CONFIG = Path(__file__).resolve().parents[2] / "pipeline" / "configs" / "lihkg-qwen.yaml"


def _write(path, config) -> str:
    path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    return str(path)


def test_unknown_steps_and_bad_sections_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="unknown step"):
        load_config(_write(tmp_path / "a.yaml", {"scrap": {}}))
    with pytest.raises(ConfigError, match="must map option names"):
        load_config(_write(tmp_path / "b.yaml", {"train": ["iters", 3]}))
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")


def test_sections_come_back_in_pipeline_order(tmp_path):
    config = load_config(_write(tmp_path / "c.yaml", {"eval": {"limit": 2}, "dataset": {"seed": 1}, "train": None}))
    assert list(config) == ["dataset", "train", "eval"]
    assert step_argv("eval", config["eval"]) == ["eval", "--limit", "2"]


def test_the_shipped_example_config_is_valid_for_every_step():
    steps = parse_steps(load_config(EXAMPLE_CONFIG), registrars=step_registrars())
    assert [step for step, _, _ in steps] == ["scrape", "dataset", "train", "fuse", "quantize", "eval"]
    quantize = next(args for step, _, args in steps if step == "quantize")
    assert quantize.bits == 4


def test_a_bad_option_stops_the_run_before_any_step_starts(tmp_path, capsys):
    config = {"dataset": {"out": str(tmp_path / "data")}, "train": {"no-such-option": 1}}
    with pytest.raises(ConfigError, match="train"):
        run_pipeline(config, load_settings(env_file=None, environ={}), registrars=step_registrars())
    assert not (tmp_path / "data").exists()


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_one_config_runs_scrape_to_eval_on_the_fake_lihkg(lihkg_server, tmp_path, monkeypatch, capsys):
    for thread in make_corpus(24, first_id=500, cat_ids=(5,), max_posts=60, seed=11):
        lihkg_server.add_thread(thread)
    monkeypatch.setenv("LIHKG_BASE_URL", lihkg_server.base_url)
    monkeypatch.setenv("LIHKG_REQUESTS_PER_MINUTE", "6000")
    monkeypatch.setenv("LILM_STATE_DIR", str(tmp_path / "state"))
    db, data, adapters = tmp_path / "lihkg.sqlite3", tmp_path / "data", tmp_path / "adapters"
    fused, report = tmp_path / "model" / "lihkg-tiny", tmp_path / "eval"
    config = {
        "scrape": {"category": "5", "db": str(db), "no-progress": True},
        "dataset": {"db": str(db), "out": str(data), "model": str(DEFAULT_MODEL_DIR), "max-tokens": 192},
        "train": {
            "model": str(DEFAULT_MODEL_DIR), "data": str(data), "name": "lihkg-tiny", "adapters-dir": str(adapters),
            "iters": 4, "batch-size": 2, "steps-per-report": 2, "steps-per-eval": 4, "save-every": 2,
            "val-batches": 1, "max-seq-length": 192, "num-layers": 2,
        },
        "fuse": {"name": "lihkg-tiny", "adapters-dir": str(adapters), "out": str(fused)},
        "quantize": {"args": [str(fused)], "bits": 8, "group-size": 64},
        "eval": {"data": str(data), "base": str(DEFAULT_MODEL_DIR), "model": str(fused), "limit": 2, "max-tokens": 12,
                 "out": str(report), "perplexity-rows": 8},
    }
    config_file = _write(tmp_path / "pipeline.yaml", config)

    assert main(["--env-file", str(tmp_path / "none.env"), "pipeline", "--config", config_file]) == 0

    out = capsys.readouterr().out
    for step in ("scrape", "dataset", "train", "fuse", "quantize", "eval"):
        assert f"== {step}: exit 0" in out
    with sqlite3.connect(db) as connection:
        assert connection.execute("SELECT COUNT(*) FROM threads").fetchone()[0] == 24
    train_rows = (data / "train.jsonl").read_text(encoding="utf-8").splitlines()
    assert train_rows and json.loads(train_rows[0])["messages"][2]["role"] == "assistant"
    log = [json.loads(line) for line in (adapters / "lihkg-tiny" / "train_log.jsonl").read_text().splitlines()]
    assert max(entry["step"] for entry in log) == 4
    assert json.loads((fused / "config.json").read_text())["model_type"] == "qwen2"
    quantized = next(p for p in fused.parent.iterdir() if p.name.startswith("lihkg-tiny") and p != fused)
    assert json.loads((quantized / "config.json").read_text())["quantization"]["bits"] == 8
    results = json.loads((report / "results.json").read_text(encoding="utf-8"))
    assert results["models"]["finetuned"]["perplexity"]["tokens"] > 0

"""`lilm` as a user runs it: real tiny model, real loopback LIHKG server, real exit codes."""

import json
import subprocess
import sys

import pytest

from lilm.cli import main
from tests.fakes.lihkg_server import Scenario
from tests.fakes.lihkg_threads import FakePost, make_thread


@pytest.fixture
def env(monkeypatch, tmp_path, lihkg_server):
    monkeypatch.setenv("LIHKG_BASE_URL", lihkg_server.base_url)
    monkeypatch.setenv("LILM_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("LIHKG_RETRIES", "0")
    monkeypatch.setenv("LILM_MAX_TOKENS", "40")
    lihkg_server.add_thread(
        make_thread(3699748, "仆街，今晚食咩好", cat_id=1, posts=[FakePost("好肚餓<br />\n冇撚用")])
    )
    return ["--env-file", str(tmp_path / "absent.env")]


@pytest.mark.slow
def test_reply_json_has_masked_thread_and_replies(env, capsys):
    assert main([*env, "reply", "睇下 https://lih.kg/3699748 ", "--json", "--n", "2", "--seed", "1"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["thread"] == {"id": 3699748, "category": "吹水台", "title": "XX，今晚食咩好", "content": "好肚餓\n冇X用"}
    assert len(out["replies"]) == 2 and all(isinstance(r, str) and r for r in out["replies"])
    assert out["model"] == "lilm-tiny"


@pytest.mark.slow
def test_reply_is_reproducible_with_a_seed(env, capsys):
    main([*env, "reply", "https://lihkg.com/thread/3699748/page/1", "--seed", "9"])
    first = capsys.readouterr().out
    main([*env, "reply", "https://lihkg.com/thread/3699748/page/1", "--seed", "9"])
    assert capsys.readouterr().out == first
    assert "【吹水台】XX，今晚食咩好" in first


@pytest.mark.slow
def test_demo_replies_to_every_bundled_thread(env, capsys):
    from core.demo import demo_threads

    assert main([*env, "demo", "--seed", "0"]) == 0
    out = capsys.readouterr().out
    for thread in demo_threads():
        assert thread.title in out


@pytest.mark.parametrize(
    "message, scenario, fragment",
    [
        ("冇連結喎", None, "LIHKG"),
        ("https://evil.com/thread/3699748/page/1", None, "LIHKG"),
        ("https://lih.kg/3699748", Scenario.not_found(), "唔存在"),
        ("https://lih.kg/3699748", Scenario.forbidden(), "封"),
        ("https://lih.kg/3699748", Scenario.challenge(), "驗證"),
    ],
)
def test_errors_are_one_line_on_stderr_with_exit_1(env, capsys, lihkg_server, message, scenario, fragment, monkeypatch):
    # Link and LIHKG errors come before the model is loaded: a missing model proves it.
    monkeypatch.setenv("LILM_MODEL", "/no/such/model")
    if scenario is not None:
        lihkg_server.set_scenario(scenario)
    assert main([*env, "reply", message]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lilm: ") and fragment in lines[0]
    assert "Traceback" not in captured.err


def test_bad_setting_is_one_line(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("LILM_MAX_TOKENS", "lots")
    assert main(["--env-file", str(tmp_path / "x"), "mask"]) == 1
    assert "LILM_MAX_TOKENS" in capsys.readouterr().err


def test_missing_model_is_one_line(env, monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("LILM_MODEL", str(tmp_path / "no-such-model"))
    assert main([*env, "reply", "https://lih.kg/3699748"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no-such-model" in err


def test_mask_filters_standard_input(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "lilm", "--env-file", str(tmp_path / "x"), "mask"],
        check=False,
        input="你個仆街\n冇撚用\n正常句子\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "你個XX\n冇X用\n正常句子\n"

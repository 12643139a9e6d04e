"""`lilm telegram` as an operator runs it."""

import asyncio
import os
import signal
import sys
from asyncio.subprocess import PIPE
from pathlib import Path

import pytest

from lilm.cli import main
from tests.bots.conftest import SHOWN_TITLE
from tests.bots.harness import SECRET_PART, TOKEN

ROOT = Path(__file__).resolve().parents[2]
MODEL_DIR = ROOT / "model" / "lilm-tiny"


def test_missing_token_is_one_line_before_any_model_loads(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("TELEGRAM_BOT_TOKEN", raising=False)
    monkeypatch.setenv("LILM_MODEL", str(tmp_path / "no-such-model"))  # never reached
    assert main(["--env-file", str(tmp_path / "none.env"), "telegram"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "TELEGRAM_BOT_TOKEN" in err and "BotFather" in err


@pytest.mark.slow
@pytest.mark.skipif(not (MODEL_DIR / "model.safetensors").is_file(), reason="model/lilm-tiny is not built")
async def test_lilm_telegram_answers_with_the_tiny_model_and_stops_on_sigterm(api, threads, tmp_path):
    env = {
        **os.environ,
        "TELEGRAM_BOT_TOKEN": TOKEN,
        "TELEGRAM_BASE_URL": api.base_url,
        "LIHKG_BASE_URL": threads.base_url,
        "LIHKG_RETRIES": "0",
        "LILM_STATE_DIR": str(tmp_path / "state"),
        "LILM_MAX_TOKENS": "60",
    }
    command = [sys.executable, "-m", "lilm", "-v", "--env-file", str(tmp_path / "none.env"), "telegram"]
    process = await asyncio.create_subprocess_exec(*command, cwd=ROOT, env=env, stdout=PIPE, stderr=PIPE)
    try:
        await api.wait_for(lambda: api.commands or process.returncode is not None, 120, "the bot to start")
        ann, bob = api.user(1, "Ann"), api.user(2, "Bob")
        first = api.send(api.private_chat(ann), ann, "https://lih.kg/3699748")
        second = api.send(api.group(-1001), bob, "/lihkg https://lih.kg/100")

        def both_final():
            replies = [api.replies_to(m["chat"]["id"], m["message_id"]) for m in (first, second)]
            return replies if all(r and not r[0].text.endswith(" …") for r in replies) else None

        replies = await api.wait_for(both_final, 120, "both replies")
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = (stream.decode() for stream in await asyncio.wait_for(process.communicate(), 60))
    assert process.returncode == 0, err
    assert replies[0][0].text.startswith(f"【時事台】{SHOWN_TITLE}\n\n")
    assert replies[1][0].text.startswith("【吹水台】今晚食咩好\n\n")
    assert all(r[0].text.split("\n\n", 1)[1].strip() for r in replies)
    assert "Telegram bot @lilm_test_bot ready" in err  # -v logs at INFO...
    assert SECRET_PART not in err + out  # ...and never the token

"""Webhook mode: the real PTB webhook server on loopback, updates POSTed the way Telegram does."""

import asyncio
import socket

import httpx
import pytest

from bots.telegram_bot import build_application, serve
from tests.bots.conftest import SHOWN_TITLE
from tests.bots.harness import SECRET_PART, telegram_settings

WEBHOOK_SECRET = "webhook-secret-0123456789"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.timeout(60)
async def test_updates_posted_to_the_webhook_are_answered(api, service, caplog):
    caplog.set_level("DEBUG")
    port = _free_port()
    settings = telegram_settings(
        api,
        TELEGRAM_WEBHOOK_URL="https://bot.example.com/lilm-hook",
        TELEGRAM_WEBHOOK_LISTEN="127.0.0.1",
        TELEGRAM_WEBHOOK_PORT=str(port),
        TELEGRAM_WEBHOOK_SECRET=WEBHOOK_SECRET,
    )
    application = build_application(settings, service)
    stop = asyncio.Event()
    task = asyncio.create_task(serve(application, stop))
    try:
        await api.wait_for(lambda: task.done() or api.webhook is not None, 20, "setWebhook")
        assert api.webhook["url"] == "https://bot.example.com/lilm-hook"
        assert api.webhook["secret_token"] == WEBHOOK_SECRET
        ann = api.user(1, "Ann")
        message = api.send(api.private_chat(ann), ann, "https://lih.kg/3699748")
        (update,) = api.take_updates()
        hook = f"http://127.0.0.1:{port}/lilm-hook"
        async with httpx.AsyncClient() as client:
            await api.wait_for(lambda: task.done() or application.updater.running, 20, "the webhook server")
            forged = await client.post(hook, json=update, headers={"X-Telegram-Bot-Api-Secret-Token": "wrong"})
            real = await client.post(hook, json=update, headers={"X-Telegram-Bot-Api-Secret-Token": WEBHOOK_SECRET})
        assert forged.status_code == 403
        assert real.status_code == 200
        replies = await api.wait_for(lambda: api.replies_to(message["chat"]["id"], message["message_id"]), 30, "a reply")
        await api.wait_for(lambda: SHOWN_TITLE in replies[-1].text and not api.calls_to("getUpdates"), 30, "the final text")
        assert not api.calls_to("getUpdates")  # webhook mode never polls
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
    assert WEBHOOK_SECRET not in caplog.text and SECRET_PART not in caplog.text

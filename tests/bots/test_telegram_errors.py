"""Failures through the real bot: each ends as one short Cantonese line in the chat, details
only in the log, and never the token anywhere."""

import asyncio
import logging

import pytest

from bots.chat_text import UNEXPECTED
from bots.telegram_bot import build_application, serve
from core.errors import (
    ConfigError,
    GenerationTimeout,
    LihkgBlocked,
    LihkgChallenge,
    LihkgRateLimited,
    ModelError,
    ThreadNotFound,
)
from tests.bots.conftest import SHOWN_REPLY, make_service
from tests.bots.harness import (
    SECRET_PART,
    TOKEN,
    GatedBackend,
    running_bot,
    telegram_settings,
)
from tests.fakes.lihkg_server import Scenario
from tests.fakes.scripted_backend import ScriptedBackend
from tests.fakes.telegram_api import FakeBotApi, Fault

LINK = "https://lih.kg/3699748"
INTERNALS = ("Traceback", "Error", "error", "Exception", "lihkg.com/api", "127.0.0.1", "scripted", TOKEN, SECRET_PART)


def _no_internals(text: str) -> bool:
    return not any(word in text for word in INTERNALS)


@pytest.mark.parametrize(
    "scenario, error",
    [
        (Scenario.not_found(), ThreadNotFound),
        (Scenario.forbidden(), LihkgBlocked),
        (Scenario.rate_limited(retry_after="600"), LihkgRateLimited),
        (Scenario.challenge(), LihkgChallenge),
    ],
)
async def test_lihkg_failures_become_one_cantonese_line(api, service, backend, threads, scenario, error):
    threads.set_scenario(scenario)
    ann = api.user(1, "Ann")
    async with running_bot(api, service) as bot:
        reply = await bot.answer(api.send(api.private_chat(ann), ann, LINK))
    assert reply.text == error.user_message
    assert reply.versions == [reply.text] and _no_internals(reply.text)
    assert backend.calls == []


async def test_malformed_lihkg_answer_and_a_missing_thread_id(api, service, threads):
    threads.set_scenario(Scenario.malformed_json(), thread_id=3699748)
    ann = api.user(1, "Ann")
    async with running_bot(api, service) as bot:
        bad = await bot.answer(api.send(api.private_chat(ann), ann, LINK))
        gone = await bot.answer(api.send(api.private_chat(ann), ann, "https://lih.kg/999999"))
    assert bad.text == "LIHKG 回咗啲怪嘢，睇唔明。"
    assert gone.text == ThreadNotFound.user_message


async def test_model_failure_mid_stream_replaces_the_partial_text(api, lihkg, masker):
    class Failing(ScriptedBackend):
        async def stream(self, messages, params):
            yield "講到一半"
            raise ModelError("out of memory in kernel foo")

    ann = api.user(1, "Ann")
    group = api.group(-1001)
    async with running_bot(api, make_service(Failing(["x"]), lihkg, masker)) as bot:
        reply = await bot.answer(api.send(group, ann, f"/lihkg {LINK}"))
    assert reply.text == ModelError.user_message and _no_internals(reply.text)


async def test_unexpected_exception_is_logged_not_shown(api, lihkg, masker, caplog):
    backend = ScriptedBackend(["x"], fail_with=RuntimeError("kernel panic at 0xdeadbeef"))
    ann = api.user(1, "Ann")
    async with running_bot(api, make_service(backend, lihkg, masker)) as bot:
        reply = await bot.answer(api.send(api.private_chat(ann), ann, LINK))
        after = await bot.answer(api.send(api.private_chat(ann), ann, "/help"))
    assert reply.text == UNEXPECTED and "deadbeef" not in reply.text
    assert "kernel panic at 0xdeadbeef" in caplog.text and "Traceback" in caplog.text
    assert "LiLM" in after.text  # the bot carries on


async def test_a_crashing_handler_reaches_the_error_handler(api, service, caplog, monkeypatch):
    ann = api.user(1, "Ann")
    async with running_bot(api, service) as bot:
        monkeypatch.setattr(bot.state, "admit", lambda user_id: 1 / 0)
        reply = await bot.answer(api.send(api.private_chat(ann), ann, LINK))
        monkeypatch.undo()
        again = await bot.answer(api.send(api.private_chat(ann), ann, LINK))
    assert reply.text == UNEXPECTED
    assert "ZeroDivisionError" in caplog.text
    assert again.text.endswith(SHOWN_REPLY)


async def test_html_refused_by_telegram_is_sent_again_as_plain_text(api, service, caplog):
    api.inject("sendMessage", Fault.cant_parse_entities(when=lambda p: p.get("parse_mode") == "HTML"))
    ann = api.user(1, "Ann")
    async with running_bot(api, service) as bot:
        reply = await bot.answer(api.send(api.private_chat(ann), ann, LINK))
    assert reply.text.endswith(SHOWN_REPLY)
    assert reply.params.get("parse_mode") is None and reply.entities == []
    assert "plain text" in caplog.text


async def test_edits_are_throttled_one_at_a_time_and_429s_are_waited_out(api, lihkg, masker):
    api.delay("editMessageText", 0.02)  # overlapping edits would show in api.max_in_flight
    api.inject("editMessageText", Fault.retry_after_seconds(7, times=2))
    gated = GatedBackend(["第一句。" * 30], chunk=1, delay=0.001)
    ann = api.user(1, "Ann")
    group = api.group(-1001)
    async with running_bot(api, make_service(gated, lihkg, masker)) as bot:
        message = api.send(group, ann, f"/lihkg {LINK}")
        await api.wait_for(lambda: gated.started)
        gated.gate.set()
        reply = await bot.answer(message)

    assert reply.text.endswith("第一句。" * 30)  # the final text always arrives
    assert api.max_in_flight == 1
    refused = [c for c in api.calls_to("editMessageText") if c.status == 429]
    assert len(refused) == 2
    assert bot.time.slept.count(7) >= 1 or any(s >= 6.9 for s in bot.time.slept)
    assert len(reply.versions) < len("第一句。" * 30)  # far fewer edits than tokens


async def test_429_on_the_final_send_is_waited_out(api, service):
    api.inject("sendMessage", Fault.retry_after_seconds(30))
    ann = api.user(1, "Ann")
    async with running_bot(api, service, env={"TELEGRAM_STREAM": "off"}) as bot:
        reply = await bot.answer(api.send(api.private_chat(ann), ann, LINK))
    assert reply.text.endswith(SHOWN_REPLY)
    assert 30 in bot.time.slept


async def test_blocked_by_the_user_is_logged_and_the_bot_carries_on(api, service, caplog):
    ann, bob = api.user(1, "Ann"), api.user(2, "Bob")
    api.inject("sendMessage", Fault.blocked(times=None, when=lambda params: params["chat_id"] == ann.id))
    caplog.set_level(logging.INFO)
    async with running_bot(api, service, env={"TELEGRAM_QUEUE_SIZE": "5"}) as bot:
        blocked = api.send(api.private_chat(ann), ann, LINK)
        reply = await bot.answer(api.send(api.private_chat(bob), bob, LINK))
        notice_refused = api.send(api.private_chat(ann), ann, LINK)  # waits behind nobody now
        await bot.settled()
    assert api.replies_to(ann.id, blocked["message_id"]) == []
    assert api.replies_to(ann.id, notice_refused["message_id"]) == []
    assert reply.text.endswith(SHOWN_REPLY)
    assert "blocked" in caplog.text


async def test_token_never_reaches_the_logs(api, lihkg, masker, caplog, threads):
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="httpx")  # even if an earlier test quietened it
    threads.set_scenario(Scenario.forbidden(times=1))
    api.inject("sendMessage", Fault.retry_after_seconds(3))
    api.inject("editMessageText", Fault.cant_parse_entities())
    backend = ScriptedBackend(["好", "x"], chunk=1)
    ann = api.user(1, "Ann")
    group = api.group(-1001)
    async with running_bot(api, make_service(backend, lihkg, masker)) as bot:
        await bot.answer(api.send(api.private_chat(ann), ann, LINK))  # LIHKG 403
        await bot.answer(api.send(group, ann, f"/lihkg {LINK}"))  # 429 then 400 on the way
        backend.fail_with = RuntimeError(f"something mentioning {TOKEN}")
        await bot.answer(api.send(api.private_chat(ann), ann, "https://lih.kg/100"))
    assert "HTTP Request: POST" in caplog.text  # httpx did log its requests...
    assert "/bot[redacted]/" in caplog.text  # ...with the token taken out
    assert TOKEN not in caplog.text and SECRET_PART not in caplog.text
    for record in caplog.records:
        assert SECRET_PART not in record.getMessage()
    chat_text = " ".join(m.text for chat in (ann.id, group.id) for m in api.messages(chat))
    assert SECRET_PART not in chat_text


async def test_a_rejected_token_is_a_config_error_without_the_token(service, caplog):
    caplog.set_level(logging.DEBUG)
    with FakeBotApi(token="999:the-real-one") as api:
        application = build_application(telegram_settings(api, TELEGRAM_BOT_TOKEN=TOKEN), service)
        with pytest.raises(ConfigError) as error:
            await serve(application, asyncio.Event())
    assert api.unauthorized_calls == 1
    assert "TELEGRAM_BOT_TOKEN" in str(error.value)
    assert SECRET_PART not in str(error.value) and SECRET_PART not in caplog.text


@pytest.mark.parametrize(
    "env, fragment",
    [
        ({"TELEGRAM_BOT_TOKEN": "nonsense"}, "TELEGRAM_BOT_TOKEN"),
        ({"TELEGRAM_STREAM": "sometimes"}, "TELEGRAM_STREAM"),
        ({"TELEGRAM_ALLOWED_USERS": "1,two"}, "TELEGRAM_ALLOWED_USERS"),
        ({"TELEGRAM_LINK_PREVIEW": "big"}, "TELEGRAM_LINK_PREVIEW"),
        ({"TELEGRAM_WEBHOOK_URL": "http://insecure.example"}, "TELEGRAM_WEBHOOK_URL"),
    ],
)
async def test_bad_settings_say_which_variable(api, service, env, fragment):
    with pytest.raises(ConfigError, match=fragment):
        build_application(telegram_settings(api, **env), service)


async def test_a_stuck_model_ends_in_a_line_not_endless_typing(api, lihkg, masker):
    gated = GatedBackend(["永遠唔會嚟"])  # the gate never opens: a hung engine
    ann = api.user(1, "Ann")
    async with running_bot(api, make_service(gated, lihkg, masker), env={"LILM_GENERATION_TIMEOUT": "0.2"}) as bot:
        reply = await bot.answer(api.send(api.private_chat(ann), ann, LINK))
        assert bot.state.queue.running == 0
    assert reply.text == GenerationTimeout.user_message and gated.finished == 1

"""Per-chat preferences and log redaction, without any platform."""

import logging

import pytest

from bots.log_redaction import RedactSecrets, redact_logs
from bots.preferences import (
    STYLES,
    ChatPreferences,
    PreferenceStore,
    SettingRejected,
    find_style,
)

SECRET = "123:very-secret"


def test_every_style_has_a_label_and_a_distinct_system_message():
    systems = [style.system for style in STYLES]
    assert systems[0] is None and len(set(systems)) == len(STYLES)
    assert all(find_style(style.label) is style for style in STYLES)


@pytest.mark.parametrize("key, value", [("candidates", "0"), ("candidates", "two"), ("temperature", "-1"), ("temperature", "inf"), ("style", "sad"), ("size", "1")])
def test_bad_values_are_refused_in_cantonese(key, value):
    store = PreferenceStore(ChatPreferences(), max_candidates=3)
    with pytest.raises(SettingRejected) as refused:
        store.change(1, key, value)
    assert refused.value.user_message and not refused.value.user_message.isascii()
    assert store.get(1) == ChatPreferences()


def test_store_keeps_only_changed_chats_and_at_most_max_chats():
    store = PreferenceStore(ChatPreferences(), max_candidates=3, max_chats=100)
    for chat in range(250):
        store.change(chat, "n", "2")
    assert len(store) == 100
    assert store.get(0).candidates == 1 and store.get(249).candidates == 2
    store.reset(249)
    assert store.get(249) == ChatPreferences()


def test_secrets_are_scrubbed_from_messages_arguments_and_tracebacks(caplog):
    logger = logging.getLogger("httpx")
    undo = redact_logs([SECRET], prefixes=("httpx",))
    try:
        caplog.set_level(logging.DEBUG)
        logger.info('HTTP Request: POST %s "HTTP/1.1 200 OK"', f"https://api.telegram.org/bot{SECRET}/getMe")
        try:
            raise RuntimeError(f"token {SECRET} rejected")
        except RuntimeError:
            logger.exception("failed")
    finally:
        undo()
    assert SECRET not in caplog.text and "bot[redacted]/getMe" in caplog.text and "RuntimeError" in caplog.text
    logger.warning("after %s", SECRET)
    assert caplog.records[-1].getMessage().endswith(SECRET)  # undo removed the filter


def test_the_longest_secret_goes_first():
    assert RedactSecrets(["abc", "abc:def"]).redact("x abc:def y abc") == "x [redacted] y [redacted]"

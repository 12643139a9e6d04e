"""Keep secrets (bot tokens) out of every log line, whoever writes it.

httpx logs each request URL at INFO and Telegram URLs carry the bot token; python-telegram-bot
logs its API URL at DEBUG. A filter on the logger that creates a record runs before any
handler (including ones added later, such as pytest's), so `redact_logs` puts one on every
existing logger under the given prefixes. Messages, arguments and tracebacks are scrubbed.

    undo = redact_logs([token], prefixes=("httpx", "telegram"))
    ...
    undo()
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable

REPLACEMENT = "[redacted]"
DEFAULT_PREFIXES = ("httpx", "httpcore", "telegram", "bots", "core", "lilm", "asyncio")


class RedactSecrets(logging.Filter):
    """Replaces each secret in a record's message and traceback text with `[redacted]`."""

    def __init__(self, secrets: Iterable[str], *, patterns: Iterable[re.Pattern[str]] = ()) -> None:
        super().__init__()
        # Longest first, so a secret that contains another is replaced whole.
        self.secrets = tuple(sorted({s for s in secrets if s}, key=len, reverse=True))
        # Secrets known only by shape (e.g. per-request tokens in URLs): group 1 is replaced.
        self.patterns = tuple(patterns)

    def redact(self, text: str) -> str:
        """`text` with every secret replaced.

        >>> RedactSecrets(["123:abc"]).redact("POST /bot123:abc/getMe")
        'POST /bot[redacted]/getMe'
        >>> RedactSecrets([], patterns=[re.compile(r"/hooks/\\d+/([\\w-]+)")]).redact("PATCH /hooks/1/aBc-9/x")
        'PATCH /hooks/1/[redacted]/x'
        """
        for secret in self.secrets:
            text = text.replace(secret, REPLACEMENT)
        for pattern in self.patterns:
            text = pattern.sub(_replace_group_1, text)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets and not self.patterns:
            return True
        try:
            message = record.getMessage()
        except (TypeError, ValueError, KeyError):  # a broken format: the handler will report it
            message = str(record.msg)
        clean = self.redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and record.exc_info[1] is not None and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        return True


def _replace_group_1(match: re.Match[str]) -> str:
    start, end = match.span(1)
    whole = match.group(0)
    return whole[: start - match.start()] + REPLACEMENT + whole[end - match.start() :]


def redact_logs(
    secrets: Iterable[str], *, prefixes: Iterable[str] = DEFAULT_PREFIXES, patterns: Iterable[re.Pattern[str]] = ()
) -> Callable[[], None]:
    """Install a `RedactSecrets` on the root logger and every existing logger named by
    `prefixes` (and their children); returns a function that removes them again."""
    redactor = RedactSecrets(secrets, patterns=patterns)
    wanted = tuple(prefixes)
    manager = logging.Logger.manager
    names = [n for n in list(manager.loggerDict) if any(n == p or n.startswith(p + ".") for p in wanted)]
    loggers = [logging.getLogger()] + [logging.getLogger(n) for n in sorted(set(names) | set(wanted))]
    for logger in loggers:
        logger.addFilter(redactor)

    def undo() -> None:
        for logger in loggers:
            logger.removeFilter(redactor)

    return undo

"""Plain records of the fake Bot API (tests/fakes/telegram_api.py): users and chats of the
fake world, faults to inject, the calls the bot made and the messages it sent."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.fakes.telegram_entities import Entity


@dataclass(frozen=True)
class User:
    id: int
    first_name: str
    username: str | None = None
    is_bot: bool = False

    def to_json(self) -> dict:
        data = {"id": self.id, "is_bot": self.is_bot, "first_name": self.first_name}
        if self.username:
            data["username"] = self.username
        return data


@dataclass(frozen=True)
class Chat:
    id: int
    type: str  # private, group, supergroup
    title: str | None = None
    is_forum: bool = False

    def to_json(self) -> dict:
        data: dict[str, Any] = {"id": self.id, "type": self.type}
        if self.title:
            data["title"] = self.title
        if self.is_forum:
            data["is_forum"] = True
        return data


@dataclass(frozen=True)
class Fault:
    """An error answer. `times=None`: every matching call; `when(params)` narrows the calls."""

    status: int
    description: str
    retry_after: int | None = None
    times: int | None = 1
    when: Callable[[dict], bool] | None = None

    @classmethod
    def retry_after_seconds(cls, seconds: int, **options: Any) -> Fault:
        return cls(429, f"Too Many Requests: retry after {seconds}", retry_after=seconds, **options)

    @classmethod
    def cant_parse_entities(cls, **options: Any) -> Fault:
        return cls(400, "Bad Request: can't parse entities: Unsupported start tag \"x\" at byte offset 0", **options)

    @classmethod
    def bad_request(cls, description: str, **options: Any) -> Fault:
        return cls(400, f"Bad Request: {description}", **options)

    @classmethod
    def blocked(cls, **options: Any) -> Fault:
        return cls(403, "Forbidden: bot was blocked by the user", **options)

    def answer(self) -> tuple[int, dict]:
        body: dict[str, Any] = {"ok": False, "error_code": self.status, "description": self.description}
        if self.retry_after is not None:
            body["parameters"] = {"retry_after": self.retry_after}
        return self.status, body


@dataclass
class ApiCall:
    """One request the bot made: method, decoded parameters, when (monotonic) and the status."""

    method: str
    params: dict
    at: float
    status: int = 0
    done: float = 0.0  # when the answer was ready (monotonic)


@dataclass
class SentMessage:
    """A message the bot sent; `versions` holds its visible text after each send/edit."""

    chat_id: int
    message_id: int
    text: str
    entities: list[Entity]
    thread_id: int | None
    reply_to: int | None
    params: dict
    versions: list[str] = field(default_factory=list)


class ApiError(Exception):
    def __init__(self, status: int, description: str) -> None:
        super().__init__(description)
        self.status, self.description = status, description

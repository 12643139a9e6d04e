"""A fake Discord REST API on a loopback port, for the real discord.py HTTP client.

discord.py builds every REST URL from `discord.http.Route.BASE` (webhooks and interaction
callbacks too); the harness points that at `FakeDiscord.base_url`. The fake answers what the
bot uses (login, application info, command sync, messages, edits, typing, interaction
callbacks, followups), records every call, tracks how many edits of one message are in flight
at once, and injects faults (a 429 with `retry_after`, 403, 404, 500) on matching calls.

Gateway events do not come from here: tests feed raw payloads (built by
`tests.fakes.discord_payloads`) to the bot's real `ConnectionState` parsers.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Self

from aiohttp import web

from tests.fakes.discord_payloads import APP_ID, BOT_USER, message_payload

API_PREFIX = "/api/v10"


@dataclass
class Call:
    """One REST call the bot made."""

    method: str
    path: str
    body: dict[str, Any]
    query: dict[str, str]
    started: float
    status: int = 0
    ended: float = 0.0

    @property
    def content(self) -> str | None:
        return self.body.get("content")


@dataclass
class Fault:
    """Answer `times` calls matching `method` and `path` (a regex) with `status` and `body`."""

    method: str
    path: str
    status: int
    body: dict[str, Any]
    times: int = 1
    headers: dict[str, str] = field(default_factory=dict)
    when: Callable[[dict[str, Any]], bool] | None = None

    @classmethod
    def rate_limited(cls, method: str, path: str, retry_after: float, *, times: int = 1) -> Fault:
        body = {"message": "You are being rate limited.", "retry_after": retry_after, "global": False}
        return cls(method, path, 429, body, times, {"Via": "1.1 google", "Retry-After": str(retry_after)})

    @classmethod
    def forbidden(cls, method: str, path: str, *, times: int = 1) -> Fault:
        return cls(method, path, 403, {"message": "Missing Permissions", "code": 50013}, times)

    @classmethod
    def not_found(cls, method: str, path: str, *, times: int = 1) -> Fault:
        return cls(method, path, 404, {"message": "Unknown Message", "code": 10008}, times)


@dataclass
class StoredMessage:
    """A message the bot sent, as the fake keeps it (edits change `content`)."""

    id: int
    channel_id: int
    content: str
    reply_to: int | None
    allowed_mentions: dict[str, Any] | None
    edits: int = 0
    source: str = "channel"  # channel | interaction | followup
    interaction_token: str | None = None
    versions: list[str] = field(default_factory=list)  # every content it showed, in order


class FakeDiscord:
    """The fake REST API; `async with FakeDiscord() as fake:` serves it on 127.0.0.1."""

    def __init__(self, *, token: str) -> None:
        self.token = token
        self.calls: list[Call] = []
        self.messages: dict[int, StoredMessage] = {}
        self.synced: list[dict[str, Any]] = []
        self.sync_paths: list[str] = []
        self.faults: list[Fault] = []
        self.max_edits_in_flight = 0
        self.bad_auth = 0
        self.edit_latency = 0.002  # seconds each edit takes to answer
        self.clock: Callable[[], float] = time.monotonic  # the bot's clock, for virtual-time tests
        self._in_flight: dict[int, int] = {}
        self._ids = itertools.count(900_000_000_000_000_000)
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def __aenter__(self) -> Self:
        app = web.Application(client_max_size=4 * 2**20)
        app.router.add_route("*", API_PREFIX + "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}{API_PREFIX}"

    def inject(self, fault: Fault) -> None:
        self.faults.append(fault)

    # --- what tests read ----------------------------------------------------------------

    def replies_to(self, message_id: int) -> list[StoredMessage]:
        """Messages the bot sent as replies to `message_id`, in order."""
        return [m for m in self.messages.values() if m.reply_to == message_id]

    def in_channel(self, channel_id: int) -> list[StoredMessage]:
        return [m for m in self.messages.values() if m.channel_id == channel_id]

    def for_interaction(self, token: str) -> list[StoredMessage]:
        """The response (first) and followups of one interaction."""
        return [m for m in self.messages.values() if m.interaction_token == token]

    def calls_to(self, method: str, pattern: str) -> list[Call]:
        return [c for c in self.calls if c.method == method and re.search(pattern, c.path)]

    async def wait_for(self, check: Callable[[], Any], timeout: float = 20.0, what: str = "a condition") -> Any:
        """Wait until `check()` is truthy (polled every 10 ms); its value."""
        try:
            async with asyncio.timeout(timeout):
                while not (result := check()):
                    await asyncio.sleep(0.01)
        except TimeoutError:
            raise TimeoutError(f"timed out waiting for {what}") from None
        return result

    # --- serving ------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = "/" + request.match_info["tail"]
        body: dict[str, Any] = {}
        if request.can_read_body:
            raw = await request.read()
            if raw:
                body = json.loads(raw) if request.content_type == "application/json" else {"raw": len(raw)}
        call = Call(request.method, path, body, dict(request.query), self.clock())
        self.calls.append(call)
        edit_of = self._edit_target(request.method, path)
        if edit_of is not None:
            self._in_flight[edit_of] = self._in_flight.get(edit_of, 0) + 1
            self.max_edits_in_flight = max(self.max_edits_in_flight, self._in_flight[edit_of])
        response = _json({"message": "the fake failed", "code": 0}, status=500)
        try:
            if edit_of is not None:
                await asyncio.sleep(self.edit_latency)  # a concurrent edit of the same message would overlap
            response = self._respond(request, path, body)
        finally:
            if edit_of is not None:
                self._in_flight[edit_of] -= 1
            call.status = response.status
            call.ended = self.clock()
        return response

    def _respond(self, request: web.Request, path: str, body: dict[str, Any]) -> web.Response:
        if not path.startswith(("/interactions/", "/webhooks/")) and request.headers.get("Authorization") != f"Bot {self.token}":
            self.bad_auth += 1
            return _json({"message": "401: Unauthorized", "code": 0}, status=401)
        fault = self._take_fault(request.method, path, body)
        if fault is not None:
            return _json(fault.body, status=fault.status, headers=fault.headers)
        method = request.method
        if method == "GET" and path == "/users/@me":
            return _json(BOT_USER)
        if method == "GET" and path == "/oauth2/applications/@me":
            return _json(_app_info())
        if method == "PUT" and re.fullmatch(r"/applications/\d+(/guilds/\d+)?/commands", path):
            self.sync_paths.append(path)
            self.synced = [{**c, "id": str(next(self._ids)), "application_id": APP_ID, "version": "1"} for c in body]
            return _json(self.synced)
        if method == "POST" and (m := re.fullmatch(r"/channels/(\d+)/typing", path)):
            return web.Response(status=204)
        if method == "POST" and (m := re.fullmatch(r"/channels/(\d+)/messages", path)):
            reference = (body.get("message_reference") or {}).get("message_id")
            stored = self._store(int(m[1]), body, reply_to=int(reference) if reference else None)
            return _json(message_payload(stored.id, stored.channel_id, BOT_USER, stored.content))
        if method == "PATCH" and (m := re.fullmatch(r"/channels/(\d+)/messages/(\d+)", path)):
            return self._edit(int(m[2]), body)
        if method == "POST" and (m := re.fullmatch(r"/interactions/(\d+)/([^/]+)/callback", path)):
            return self._interaction_callback(int(m[1]), m[2], body)
        if method == "PATCH" and (m := re.fullmatch(r"/webhooks/\d+/([^/]+)/messages/@original", path)):
            original = next((s for s in self.for_interaction(m[1]) if s.source == "interaction"), None)
            if original is None:
                return _json({"message": "Unknown Webhook", "code": 10015}, status=404)
            return self._edit(original.id, body)
        if method == "POST" and (m := re.fullmatch(r"/webhooks/\d+/([^/]+)", path)):
            channel = next((s.channel_id for s in self.for_interaction(m[1])), 0)
            stored = self._store(channel, body, source="followup", interaction_token=m[1])
            return _json(message_payload(stored.id, stored.channel_id, BOT_USER, stored.content))
        return _json({"message": f"fake has no {method} {path}", "code": 0}, status=404)

    def _store(self, channel_id: int, body: dict[str, Any], *, reply_to: int | None = None, **extra: Any) -> StoredMessage:
        stored = StoredMessage(next(self._ids), channel_id, body.get("content") or "", reply_to, body.get("allowed_mentions"), **extra)
        stored.versions.append(stored.content)
        self.messages[stored.id] = stored
        return stored

    def _edit(self, message_id: int, body: dict[str, Any]) -> web.Response:
        stored = self.messages.get(message_id)
        if stored is None:
            return _json({"message": "Unknown Message", "code": 10008}, status=404)
        if "content" in body:
            stored.content = body["content"] or ""
            stored.allowed_mentions = body.get("allowed_mentions", stored.allowed_mentions)
            stored.edits += 1
            stored.versions.append(stored.content)
        return _json(message_payload(stored.id, stored.channel_id, BOT_USER, stored.content))

    def _interaction_callback(self, interaction_id: int, token: str, body: dict[str, Any]) -> web.Response:
        kind = body.get("type")
        data = body.get("data") or {}
        channel = int(token.rsplit("-", 1)[-1]) if token.rsplit("-", 1)[-1].isdigit() else 0
        stored = self._store(channel, data, source="interaction", interaction_token=token)
        stored.ephemeral = bool(data.get("flags", 0) & 64)  # type: ignore[attr-defined]
        reply = {"interaction": {"id": str(interaction_id), "type": 2, "response_message_id": str(stored.id)}, "resource": {"type": kind}}
        if kind == 5:
            reply["interaction"]["response_message_loading"] = True
        return _json(reply)

    def _edit_target(self, method: str, path: str) -> int | None:
        if method != "PATCH":
            return None
        if m := re.fullmatch(r"/channels/\d+/messages/(\d+)", path):
            return int(m[1])
        if m := re.fullmatch(r"/webhooks/\d+/([^/]+)/messages/@original", path):
            return hash(m[1])
        return None

    def _take_fault(self, method: str, path: str, body: dict[str, Any]) -> Fault | None:
        for fault in self.faults:
            if fault.times > 0 and fault.method == method and re.search(fault.path, path) and (fault.when is None or fault.when(body)):
                fault.times -= 1
                return fault
        return None


def _json(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """JSON with exactly `application/json` (discord.py only parses that content type)."""
    body = json.dumps(payload).encode()
    return web.Response(body=body, status=status, headers={**(headers or {}), "Content-Type": "application/json"})


def _app_info() -> dict[str, Any]:
    return {
        "id": APP_ID,
        "name": "LiLM",
        "description": "",
        "icon": None,
        "bot_public": True,
        "bot_require_code_grant": False,
        "owner": {"id": "1", "username": "owner", "discriminator": "0", "avatar": None},
        "verify_key": "0" * 64,
        "flags": 0,
    }

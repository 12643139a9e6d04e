"""A fake Telegram Bot API: a real HTTP server on 127.0.0.1 that python-telegram-bot talks to
through `ApplicationBuilder().base_url(api.base_url)`, exactly as it talks to Telegram.

It keeps chats and the messages in them, serves long-polled `getUpdates` from updates the
test builds (`api.send(...)`), applies Telegram's rules where bots meet them (HTML parse mode,
4096 UTF-16 units, "message is not modified", unknown chats, topics, drafts only in private
chats), records every call, and misbehaves on request (`api.inject(method, Fault...)`):
429 with `retry_after`, 400 "can't parse entities", 403 blocked, slow answers.

    with FakeBotApi(token=TOKEN) as api:
        ann = api.user(1, "Ann")
        api.send(api.private_chat(ann), ann, "https://lih.kg/100")
        ... run the bot with base_url=api.base_url ...
        await api.wait_for(lambda: api.messages(ann.id))
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl

from tests.fakes.loopback import LoopbackServer
from tests.fakes.telegram_entities import (
    MAX_TEXT_UTF16,
    Entity,
    EntityParseError,
    detect_entities,
    parse_html,
    utf16_len,
)
from tests.fakes.telegram_types import ApiCall, ApiError, Chat, Fault, SentMessage, User

__all__ = ["ApiCall", "Chat", "FakeBotApi", "Fault", "SentMessage", "User"]

BOT_ID = 7_000_000_001
_RAW_STRING_PARAMS = frozenset({"text", "caption", "parse_mode", "action", "url", "secret_token", "language_code"})
_NOT_MODIFIED = "Bad Request: message is not modified: specified new message content and reply markup are exactly the same as a current content and reply markup of the message"


class FakeBotApi(LoopbackServer):
    """The fake server; a context manager. `base_url` goes to `ApplicationBuilder.base_url`."""

    def __init__(self, *, token: str, username: str = "lilm_test_bot", read_all_group_messages: bool = False) -> None:
        self.token = token
        self.bot = User(BOT_ID, "LiLM", username, is_bot=True)
        self.read_all_group_messages = read_all_group_messages
        self.calls: list[ApiCall] = []
        self.commands: list[dict] = []
        self.drafts: list[dict] = []
        self.max_in_flight = 0  # most concurrent edits/drafts seen on one message
        self.unauthorized_calls = 0
        self.webhook: dict | None = None  # setWebhook parameters while a webhook is set
        self._chats: dict[int, Chat] = {}
        self._topics: dict[int, set[int]] = {}
        self._admins: dict[int, set[int]] = {}
        self._user_messages: dict[tuple[int, int], dict] = {}
        self._sent: dict[tuple[int, int], SentMessage] = {}
        self._message_ids: dict[int, itertools.count] = {}
        self._update_ids = itertools.count(1)
        self._updates: list[dict] = []
        self._faults: dict[str, list[Fault]] = {}
        self._delays: dict[str, float] = {}
        self._missing: set[str] = set()
        self._in_flight: dict[tuple, int] = {}
        self._lock = threading.RLock()
        self._new_update = threading.Condition(self._lock)
        self._stopping = False

    # -- lifecycle (start, stop, `with`, port: LoopbackServer)

    def _make_server(self) -> ThreadingHTTPServer:
        httpd = _QuietHTTPServer((self.host, 0), _Handler)
        httpd.fake = self  # type: ignore[attr-defined]
        return httpd

    def _before_stop(self) -> None:
        with self._lock:
            self._stopping = True
            self._new_update.notify_all()  # ends long polls at once

    @property
    def base_url(self) -> str:
        """Bot API base; PTB appends the token (`.../bot<token>/<method>`)."""
        return f"http://{self.host}:{self.port}/bot"

    # -- the world: users, chats, incoming messages

    def user(self, user_id: int, first_name: str = "巴打", username: str | None = None) -> User:
        return User(user_id, first_name, username)

    def private_chat(self, user: User) -> Chat:
        return self._add_chat(Chat(user.id, "private"))

    def group(self, chat_id: int, title: str = "吹水群", *, forum: bool = False, admins: tuple[int, ...] = ()) -> Chat:
        chat = self._add_chat(Chat(chat_id, "supergroup", title, is_forum=forum))
        with self._lock:
            self._admins[chat_id] = set(admins)
        return chat

    def send(
        self,
        chat: Chat,
        user: User,
        text: str,
        *,
        reply_to: int | None = None,
        topic: int | None = None,
        caption: bool = False,
        entities: list[dict] | None = None,
    ) -> dict:
        """A user's message arrives: queued for getUpdates; returns the message as sent."""
        with self._lock:
            message_id = next(self._ids(chat.id))
            message: dict[str, Any] = {"message_id": message_id, "date": int(time.time()), "chat": chat.to_json(), "from": user.to_json()}
            found = [e.to_json() for e in detect_entities(text)] + list(entities or [])
            message["caption" if caption else "text"] = text
            if found:
                message["caption_entities" if caption else "entities"] = found
            if topic is not None:
                message.update(message_thread_id=topic, is_topic_message=True)
                self._topics.setdefault(chat.id, set()).add(topic)
            if reply_to is not None:
                message["reply_to_message"] = self._message_json(chat.id, reply_to)
            self._user_messages[(chat.id, message_id)] = message
            self._updates.append({"update_id": next(self._update_ids), "message": message})
            self._new_update.notify_all()
        return message

    # -- misbehaving

    def inject(self, method: str, fault: Fault) -> None:
        """Answer `method` with `fault` (in order of injection, each for its `times`)."""
        with self._lock:
            self._faults.setdefault(method, []).append(fault)

    def remove_method(self, method: str) -> None:
        """Answer `method` with 404 "Not Found", as an older Bot API server does."""
        with self._lock:
            self._missing.add(method)

    def delay(self, method: str, seconds: float) -> None:
        """Hold every `method` call this long before answering (makes overlaps visible)."""
        with self._lock:
            self._delays[method] = seconds

    # -- what the bot did

    def calls_to(self, method: str) -> list[ApiCall]:
        with self._lock:
            return [c for c in self.calls if c.method == method]

    def messages(self, chat_id: int) -> list[SentMessage]:
        """Messages the bot sent in a chat, in order, with their current text."""
        with self._lock:
            return sorted((m for (c, _), m in self._sent.items() if c == chat_id), key=lambda m: m.message_id)

    def replies_to(self, chat_id: int, message_id: int) -> list[SentMessage]:
        return [m for m in self.messages(chat_id) if m.reply_to == message_id]

    @property
    def pending_updates(self) -> int:
        with self._lock:
            return len(self._updates)

    async def wait_for(self, predicate: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
        """Poll `predicate` until it returns something truthy (a safety net, not a timing)."""
        deadline = time.monotonic() + timeout
        while True:
            result = predicate()
            if result:
                return result
            if time.monotonic() > deadline:
                raise TimeoutError(f"fake Bot API: timed out waiting for {what}")
            await asyncio.sleep(0.01)

    # -- serving (handler threads)

    def _handle(self, token: str, method: str, params: dict) -> tuple[int, Any]:
        if token != self.token:
            with self._lock:
                self.unauthorized_calls += 1
            return 401, {"ok": False, "error_code": 401, "description": "Unauthorized"}
        call = ApiCall(method, params, time.monotonic())
        with self._lock:
            self.calls.append(call)
            fault = self._take_fault(method, params)
            delay = self._delays.get(method, 0.0)
        key = self._flight_key(method, params)
        self._enter_flight(key)
        try:
            if delay:
                time.sleep(delay)
            if fault is not None:
                call.status, body = fault.answer()
                return call.status, body
            handler = None if method in self._missing else getattr(self, f"_api_{method}", None)
            if handler is None:
                call.status = 404
                return 404, {"ok": False, "error_code": 404, "description": "Not Found"}
            try:
                result = handler(params)
            except ApiError as error:
                call.status = error.status
                return error.status, {"ok": False, "error_code": error.status, "description": error.description}
            call.status = 200
            return 200, {"ok": True, "result": result}
        finally:
            call.done = time.monotonic()
            self._leave_flight(key)

    def _api_getMe(self, params: dict) -> dict:
        return {**self.bot.to_json(), "can_join_groups": True, "can_read_all_group_messages": self.read_all_group_messages, "supports_inline_queries": False}

    def _api_getUpdates(self, params: dict) -> list[dict]:
        offset, limit = int(params.get("offset") or 0), int(params.get("limit") or 100)
        deadline = time.monotonic() + float(params.get("timeout") or 0)
        with self._new_update:
            self._updates = [u for u in self._updates if u["update_id"] >= offset]
            while not self._updates and not self._stopping and time.monotonic() < deadline:
                self._new_update.wait(timeout=deadline - time.monotonic())
            return self._updates[:limit]

    def _api_deleteWebhook(self, params: dict) -> bool:
        with self._lock:
            self.webhook = None
        return True

    def _api_setWebhook(self, params: dict) -> bool:
        if not str(params.get("url", "")).startswith("https://"):
            raise ApiError(400, "Bad Request: bad webhook: HTTPS url must be provided for webhook")
        with self._lock:
            self.webhook = dict(params)
        return True

    def take_updates(self) -> list[dict]:
        """Remove and return the queued updates (a test delivers them to a webhook itself)."""
        with self._lock:
            taken, self._updates = self._updates, []
        return taken

    def _api_setMyCommands(self, params: dict) -> bool:
        commands = params.get("commands") or []
        for command in commands:
            name, description = command.get("command", ""), command.get("description", "")
            if not (1 <= len(name) <= 32 and name.replace("_", "").isalnum() and name.islower()) or not 1 <= len(description) <= 256:
                raise ApiError(400, "Bad Request: BOT_COMMAND_INVALID")
        with self._lock:
            self.commands = list(commands)
        return True

    def _api_getMyCommands(self, params: dict) -> list[dict]:
        return list(self.commands)

    def _api_sendChatAction(self, params: dict) -> bool:
        self._chat(params)
        self._check_topic(params)
        return True

    def _api_getChatMember(self, params: dict) -> dict:
        chat = self._chat(params)
        user_id = int(params["user_id"])
        status = "administrator" if user_id in self._admins.get(chat.id, set()) else "member"
        member = {"status": status, "user": User(user_id, "巴打").to_json()}
        if status == "administrator":
            member.update({k: True for k in ("can_be_edited", "is_anonymous", "can_manage_chat", "can_delete_messages", "can_manage_video_chats", "can_restrict_members", "can_promote_members", "can_change_info", "can_invite_users", "can_post_stories", "can_edit_stories", "can_delete_stories")})
            member["can_be_edited"] = member["is_anonymous"] = False
        return member

    def _api_sendMessageDraft(self, params: dict) -> bool:
        chat = self._chat(params)
        if chat.type != "private":
            raise ApiError(400, "Bad Request: drafts can be sent only to private chats")
        if not int(params.get("draft_id") or 0):
            raise ApiError(400, "Bad Request: draft_id must be non-zero")
        text, _ = self._visible(params, allow_empty=True)
        with self._lock:
            self.drafts.append({"chat_id": chat.id, "draft_id": int(params["draft_id"]), "text": text, "thread_id": params.get("message_thread_id")})
        return True

    def _api_sendMessage(self, params: dict) -> dict:
        chat = self._chat(params)
        self._check_topic(params)
        text, entities = self._visible(params)
        reply = params.get("reply_parameters") or {}
        reply_to = reply.get("message_id")
        with self._lock:
            known = (chat.id, reply_to) in self._user_messages or (chat.id, reply_to) in self._sent
            if reply_to is not None and not known:
                if not reply.get("allow_sending_without_reply"):
                    raise ApiError(400, "Bad Request: message to be replied not found")
                reply_to = None
            message = SentMessage(chat.id, next(self._ids(chat.id)), text, entities, params.get("message_thread_id"), reply_to, params, [text])
            self._sent[(chat.id, message.message_id)] = message
            return self._message_json(chat.id, message.message_id)

    def _api_editMessageText(self, params: dict) -> dict:
        chat = self._chat(params)
        text, entities = self._visible(params)
        with self._lock:
            message = self._sent.get((chat.id, int(params.get("message_id") or 0)))
            if message is None:
                raise ApiError(400, "Bad Request: message to edit not found")
            if message.text == text and [e.to_json() for e in message.entities] == [e.to_json() for e in entities]:
                raise ApiError(400, _NOT_MODIFIED)
            message.text, message.entities, message.params = text, entities, params
            message.versions.append(text)
            result = self._message_json(chat.id, message.message_id)
        result["edit_date"] = int(time.time())
        return result

    def _api_deleteMessage(self, params: dict) -> bool:
        chat = self._chat(params)
        with self._lock:
            if self._sent.pop((chat.id, int(params.get("message_id") or 0)), None) is None:
                raise ApiError(400, "Bad Request: message to delete not found")
        return True

    # -- helpers

    def _add_chat(self, chat: Chat) -> Chat:
        with self._lock:
            self._chats[chat.id] = chat
        return chat

    def _ids(self, chat_id: int) -> itertools.count:
        return self._message_ids.setdefault(chat_id, itertools.count(1))

    def _chat(self, params: dict) -> Chat:
        chat = self._chats.get(_int(params.get("chat_id")))
        if chat is None:
            raise ApiError(400, "Bad Request: chat not found")
        return chat

    def _check_topic(self, params: dict) -> None:
        topic = params.get("message_thread_id")
        if topic is not None and int(topic) not in self._topics.get(_int(params.get("chat_id")), set()):
            raise ApiError(400, "Bad Request: message thread not found")

    def _visible(self, params: dict, *, allow_empty: bool = False) -> tuple[str, list[Entity]]:
        raw = params.get("text") or ""
        if str(params.get("parse_mode") or "").upper() == "HTML":
            try:
                text, entities = parse_html(raw)
            except EntityParseError as error:
                raise ApiError(400, f"Bad Request: can't parse entities: {error}") from None
        elif params.get("parse_mode"):
            raise ApiError(400, f"Bad Request: unsupported parse_mode {params['parse_mode']!r} in this fake")
        else:
            text, entities = raw, [Entity(**e) for e in params.get("entities") or []]
        if not text.strip() and not allow_empty:
            raise ApiError(400, "Bad Request: message text is empty")
        if utf16_len(text) > MAX_TEXT_UTF16:
            raise ApiError(400, "Bad Request: message is too long")
        return text, entities

    def _message_json(self, chat_id: int, message_id: int) -> dict:
        if (chat_id, message_id) in self._user_messages:
            return dict(self._user_messages[(chat_id, message_id)])
        message = self._sent.get((chat_id, message_id))
        if message is None:
            raise ApiError(400, "Bad Request: message not found")
        data = {"message_id": message_id, "date": int(time.time()), "chat": self._chats[chat_id].to_json(), "from": self.bot.to_json(), "text": message.text}
        if message.entities:
            data["entities"] = [e.to_json() for e in message.entities]
        if message.thread_id is not None:
            data.update(message_thread_id=int(message.thread_id), is_topic_message=True)
        return data

    def _take_fault(self, method: str, params: dict) -> Fault | None:
        faults = self._faults.get(method) or []
        for index, fault in enumerate(faults):
            if fault.when is not None and not fault.when(params):
                continue
            if fault.times is not None:
                left = fault.times - 1
                if left <= 0:
                    faults.pop(index)
                else:
                    faults[index] = Fault(fault.status, fault.description, fault.retry_after, left, fault.when)
            return fault
        return None

    def _flight_key(self, method: str, params: dict) -> tuple | None:
        if method == "editMessageText":
            return (method, params.get("chat_id"), params.get("message_id"))
        if method == "sendMessageDraft":
            return (method, params.get("chat_id"), params.get("draft_id"))
        return None

    def _enter_flight(self, key: tuple | None) -> None:
        if key is not None:
            with self._lock:
                self._in_flight[key] = self._in_flight.get(key, 0) + 1
                self.max_in_flight = max(self.max_in_flight, self._in_flight[key])

    def _leave_flight(self, key: tuple | None) -> None:
        if key is not None:
            with self._lock:
                self._in_flight[key] -= 1
                if not self._in_flight[key]:
                    del self._in_flight[key]


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _decode_params(body: bytes, content_type: str) -> dict:
    """Form or JSON bodies as PTB sends them: every non-text value is JSON-encoded."""
    if content_type.startswith("application/json"):
        return json.loads(body or b"{}")
    params = {}
    for key, value in parse_qsl(body.decode(), keep_blank_values=True):
        if key in _RAW_STRING_PARAMS:
            params[key] = value
            continue
        try:
            params[key] = json.loads(value)
        except ValueError:
            params[key] = value
    return params


class _QuietHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # socketserver's 5 drops connects in a burst: 1 s SYN retries

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # the bot hanging up on a long poll when it stops is normal


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as with the real API
    disable_nagle_algorithm = True  # headers and body go in two writes: no 40 ms delayed-ACK stalls
    server_version = "FakeBotAPI/1.0"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        self._answer(body)

    def do_GET(self) -> None:
        self._answer(b"")

    def _answer(self, body: bytes) -> None:
        fake: FakeBotApi = self.server.fake  # type: ignore[attr-defined]
        path = self.path.split("?", 1)[0]
        prefix, _, method = path.rpartition("/")
        token = prefix[len("/bot") :] if prefix.startswith("/bot") else ""
        try:
            params = _decode_params(body, self.headers.get("Content-Type") or "")
            status, payload = fake._handle(token, method, params)
        except Exception as error:  # noqa: BLE001 - a bug in the fake must fail the call, not hang it
            status, payload = 500, {"ok": False, "error_code": 500, "description": f"fake Bot API error: {error!r}"}
        data = json.dumps(payload, ensure_ascii=False).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

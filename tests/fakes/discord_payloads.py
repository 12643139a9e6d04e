"""Raw Discord gateway and REST payloads, shaped as Discord sends them, for the real
discord.py parsers: `GUILD_CREATE`, `MESSAGE_CREATE`, `INTERACTION_CREATE` and the message
objects the fake REST API answers with. Ids are strings, as on the wire.
"""

from __future__ import annotations

import itertools
from typing import Any

BOT_ID = 555_000_000_000_000_001
APP_ID = "555000000000000001"
BOT_USER = {"id": str(BOT_ID), "username": "lilm", "discriminator": "0", "global_name": "LiLM", "avatar": None, "bot": True}
TIMESTAMP = "2026-01-01T00:00:00.000000+00:00"
MANAGE_GUILD = 1 << 5
SEND_MESSAGES = 1 << 11

TEXT, DM, PUBLIC_THREAD, FORUM = 0, 1, 11, 15


class Ids:
    """Fresh snowflakes for test messages and interactions."""

    def __init__(self, start: int = 700_000_000_000_000_000) -> None:
        self._next = itertools.count(start)

    def __call__(self) -> int:
        return next(self._next)


def user(user_id: int, name: str = "巴打", *, bot: bool = False) -> dict[str, Any]:
    return {"id": str(user_id), "username": name, "discriminator": "0", "global_name": name, "avatar": None, "bot": bot}


def role(role_id: int, name: str, *, permissions: int = 0, position: int = 1) -> dict[str, Any]:
    return {
        "id": str(role_id), "name": name, "color": 0, "hoist": False, "position": position,
        "permissions": str(permissions), "managed": False, "mentionable": True, "flags": 0,
    }  # fmt: skip


def channel(channel_id: int, guild_id: int, name: str = "general", *, kind: int = TEXT) -> dict[str, Any]:
    return {"id": str(channel_id), "guild_id": str(guild_id), "name": name, "type": kind, "position": 0, "permission_overwrites": [], "nsfw": False}


def thread(thread_id: int, guild_id: int, parent_id: int, name: str = "thread") -> dict[str, Any]:
    """A public thread, or a forum post when `parent_id` is a forum channel."""
    return {
        "id": str(thread_id), "guild_id": str(guild_id), "parent_id": str(parent_id), "owner_id": "1",
        "name": name, "type": PUBLIC_THREAD, "last_message_id": None, "rate_limit_per_user": 0,
        "message_count": 1, "member_count": 1, "flags": 0,
        "thread_metadata": {"archived": False, "auto_archive_duration": 1440, "archive_timestamp": TIMESTAMP, "locked": False},
    }  # fmt: skip


def guild_create(guild_id: int, *, channels: list[dict], threads: list[dict] = (), roles: list[dict] = ()) -> dict[str, Any]:
    """A GUILD_CREATE for a server with these channels, threads and roles (plus @everyone)."""
    everyone = role(guild_id, "@everyone", permissions=SEND_MESSAGES, position=0)
    return {
        "id": str(guild_id), "name": f"server {guild_id}", "icon": None, "owner_id": "1", "features": [],
        "roles": [everyone, *roles], "emojis": [], "stickers": [], "channels": channels, "threads": list(threads),
        "members": [], "voice_states": [], "presences": [], "member_count": 10, "large": False,
        "unavailable": False, "mfa_level": 0, "verification_level": 0, "default_message_notifications": 0,
        "explicit_content_filter": 0, "premium_tier": 0, "preferred_locale": "zh-TW", "nsfw_level": 0,
        "system_channel_id": None, "afk_channel_id": None, "afk_timeout": 300, "application_id": None,
        "joined_at": TIMESTAMP,
    }  # fmt: skip


def message_payload(
    message_id: int,
    channel_id: int,
    author: dict[str, Any],
    content: str,
    *,
    guild_id: int | None = None,
    mentions: list[dict] = (),
    roles: list[int] | None = None,
) -> dict[str, Any]:
    """A message object (MESSAGE_CREATE data, or what the REST API answers a send with)."""
    data = {
        "id": str(message_id), "channel_id": str(channel_id), "author": author, "content": content,
        "timestamp": TIMESTAMP, "edited_timestamp": None, "tts": False, "mention_everyone": False,
        "mentions": list(mentions), "mention_roles": [], "attachments": [], "embeds": [], "pinned": False,
        "type": 0, "flags": 0, "components": [],
    }  # fmt: skip
    if guild_id is not None:
        data["guild_id"] = str(guild_id)
        data["member"] = {"roles": [str(r) for r in roles or ()], "joined_at": TIMESTAMP, "deaf": False, "mute": False, "flags": 0}
    return data


def command_interaction(
    interaction_id: int,
    name: str,
    options: dict[str, Any],
    *,
    channel: dict[str, Any],
    author: dict[str, Any],
    guild_id: int | None = None,
    roles: list[int] = (),
    permissions: int = SEND_MESSAGES,
) -> dict[str, Any]:
    """An INTERACTION_CREATE for slash command `name` with `options` (all typed as the bot
    declared them: str 3, int 4, bool 5, float 10). The token ends with the channel id, so the
    fake REST API knows where the response shows."""
    kinds = {str: 3, int: 4, bool: 5, float: 10}
    data: dict[str, Any] = {
        "id": str(interaction_id), "application_id": APP_ID, "type": 2, "version": 1,
        "token": f"itoken-{interaction_id}-{channel['id']}", "channel_id": channel["id"], "channel": channel,
        "data": {"id": "1", "name": name, "type": 1,
                 "options": [{"name": key, "type": kinds[type(value)], "value": value} for key, value in options.items()]},
        "app_permissions": str(SEND_MESSAGES), "locale": "zh-TW", "entitlements": [],
        "authorizing_integration_owners": {"0": guild_id or author["id"]}, "context": 0 if guild_id else 1,
        "attachment_size_limit": 8 * 2**20,
    }  # fmt: skip
    if guild_id is None:
        data["user"] = author
    else:
        data["guild_id"], data["guild_locale"] = str(guild_id), "zh-TW"
        data["member"] = {
            "user": author, "roles": [str(r) for r in roles], "permissions": str(permissions),
            "joined_at": TIMESTAMP, "deaf": False, "mute": False, "flags": 0,
        }  # fmt: skip
    return data

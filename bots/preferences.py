"""Per-chat preferences set with /settings: candidates, temperature and reply style.

Platform-neutral and in memory (they reset when the bot restarts); only chats that changed
something are stored, and at most `max_chats` of them (least recently changed dropped).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, replace

from core.errors import LilmError
from core.generation import SamplingParams
from core.prompt import SYSTEM_MESSAGE

MIN_TEMPERATURE = 0.0
MAX_TEMPERATURE = 1.5
MAX_CHATS = 10_000


@dataclass(frozen=True)
class Style:
    """A named system-message variant; `system=None` keeps the service's own."""

    key: str
    label: str
    system: str | None


STYLES = (
    Style("standard", "標準", None),
    Style("snarky", "毒舌", SYSTEM_MESSAGE.replace("用廣東話回覆一句", "用廣東話寸佢一句，越串越好")),
    Style("serious", "正經", SYSTEM_MESSAGE.replace("用廣東話回覆一句", "用廣東話認真咁回覆一句，唔好講粗口")),
    Style("funny", "搞笑", SYSTEM_MESSAGE.replace("用廣東話回覆一句", "用廣東話講一句搞笑嘅回覆")),
)
_STYLE_BY_NAME = {name.lower(): style for style in STYLES for name in (style.key, style.label)}
_KEYS = {
    "candidates": "candidates", "n": "candidates", "候選": "candidates", "候選數量": "candidates",
    "temperature": "temperature", "temp": "temperature", "溫度": "temperature",
    "style": "style", "風格": "style",
}  # fmt: skip


class SettingRejected(LilmError):
    """A /settings value was not understood; the user message says what is accepted."""


def find_style(name: str) -> Style:
    """The style called `name` (key or Cantonese label).

    >>> find_style("毒舌").key, find_style("Serious").label
    ('snarky', '正經')
    """
    style = _STYLE_BY_NAME.get(name.strip().lower())
    if style is None:
        names = "、".join(s.label for s in STYLES)
        raise SettingRejected(f"unknown style {name!r}", user_message=f"冇呢個風格，揀：{names}")
    return style


@dataclass(frozen=True)
class ChatPreferences:
    """What one chat asked for."""

    candidates: int = 1
    temperature: float = 0.8
    style: str = "standard"

    @property
    def system(self) -> str | None:
        """The system message of this chat's style (None: the reply service's own)."""
        return find_style(self.style).system

    def sampling(self, params: SamplingParams) -> SamplingParams:
        """`params` with this chat's temperature."""
        return replace(params, temperature=self.temperature)

    def describe(self, max_candidates: int, *, usage: str = "/settings {} {}", where: str = "呢個對話") -> str:
        """The /settings answer, in Cantonese, with how to change each value (`usage` shows
        a setting and its values as the platform's command takes them).

        >>> print(ChatPreferences().describe(3, usage="/settings {}:{}", where="呢個伺服器").splitlines()[1])
        候選數量：1（/settings candidates:1-3）
        """
        style = find_style(self.style)
        names = "|".join(s.label for s in STYLES)
        return "\n".join(
            [
                f"{where}嘅設定：",
                f"候選數量：{self.candidates}（{usage.format('candidates', f'1-{max_candidates}')}）",
                f"溫度：{self.temperature:g}（{usage.format('temperature', f'{MIN_TEMPERATURE:g}-{MAX_TEMPERATURE:g}')}，越高越亂噏）",
                f"風格：{style.label}（{usage.format('style', names)}）",
                f"{usage.format('reset', '').rstrip(' :')} 還原預設",
            ]
        )


class PreferenceStore:
    """Preferences per chat id, with `defaults` for chats that never changed anything."""

    def __init__(self, defaults: ChatPreferences, *, max_candidates: int, max_chats: int = MAX_CHATS) -> None:
        self.defaults = defaults
        self.max_candidates = max_candidates
        self.max_chats = max_chats
        self._chats: OrderedDict[int, ChatPreferences] = OrderedDict()

    def __len__(self) -> int:
        return len(self._chats)

    def get(self, chat_id: int) -> ChatPreferences:
        return self._chats.get(chat_id, self.defaults)

    def reset(self, chat_id: int) -> ChatPreferences:
        self._chats.pop(chat_id, None)
        return self.defaults

    def change(self, chat_id: int, key: str, value: str) -> ChatPreferences:
        """Set one preference from user text; SettingRejected (Cantonese) if it is invalid.

        >>> store = PreferenceStore(ChatPreferences(), max_candidates=3)
        >>> store.change(7, "溫度", "0.3").temperature, store.get(8).temperature
        (0.3, 0.8)
        """
        field = _KEYS.get(key.strip().lower())
        if field is None:
            raise SettingRejected(f"unknown setting {key!r}", user_message="識改嘅設定：candidates、temperature、style")
        updated = replace(self.get(chat_id), **{field: self._parse(field, value)})
        self._chats[chat_id] = updated
        self._chats.move_to_end(chat_id)
        while len(self._chats) > self.max_chats:
            self._chats.popitem(last=False)
        return updated

    def _parse(self, field: str, value: str) -> int | float | str:
        if field == "style":
            return find_style(value).key
        if field == "candidates":
            number = _number(value, int)
            if number is None or not 1 <= number <= self.max_candidates:
                raise SettingRejected(f"candidates {value!r}", user_message=f"候選數量要係 1 至 {self.max_candidates}。")
            return number
        number = _number(value, float)
        if number is None or not MIN_TEMPERATURE <= number <= MAX_TEMPERATURE:
            raise SettingRejected(
                f"temperature {value!r}", user_message=f"溫度要係 {MIN_TEMPERATURE:g} 至 {MAX_TEMPERATURE:g} 之間嘅數字。"
            )
        return round(number, 2)


def _number(text: str, kind: type) -> int | float | None:
    try:
        return kind(text.strip())
    except ValueError:
        return None

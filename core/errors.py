"""The project's exception tree.

Every error a user can meet carries `user_message`: one short Cantonese line that is safe to
show in a chat (no internals, no secrets). `str(error)` is the English detail for logs and CLI.
"""

from __future__ import annotations


class LilmError(Exception):
    """Base of every error the project raises on purpose."""

    user_message = "出咗少少問題，遲啲再試下啦。"

    def __init__(self, detail: str = "", *, user_message: str | None = None) -> None:
        super().__init__(detail or self.__class__.__doc__ or self.__class__.__name__)
        if user_message is not None:
            self.user_message = user_message


class ConfigError(LilmError):
    """A setting is missing or has an invalid value."""

    user_message = "設定有問題，請通知管理員。"


class LinkError(LilmError):
    """The text holds no LIHKG thread link we can use."""

    user_message = "搵唔到 LIHKG 連結，貼個 https://lihkg.com/thread/… 或者 https://lih.kg/… 嚟啦。"


class LihkgError(LilmError):
    """Fetching a thread from LIHKG failed."""

    user_message = "連唔到 LIHKG，遲啲再試下。"


class ThreadNotFound(LihkgError):
    """The thread does not exist or was removed."""

    user_message = "呢個 post 唔存在或者已經被刪咗。"


class LihkgBlocked(LihkgError):
    """LIHKG refused us (HTTP 403): this IP or proxy is banned."""

    user_message = "LIHKG 封咗我哋，暫時攞唔到個 post。"


class LihkgRateLimited(LihkgError):
    """LIHKG kept answering 429 after our retries."""

    user_message = "LIHKG 話我哋太密，等陣再試啦。"

    def __init__(self, detail: str = "", *, retry_after: float | None = None) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class LihkgChallenge(LihkgError):
    """LIHKG (Cloudflare) answered with an HTML challenge page instead of JSON."""

    user_message = "LIHKG 出咗人機驗證，暫時攞唔到個 post。"


class LihkgTimeout(LihkgError):
    """LIHKG did not answer in time."""

    user_message = "LIHKG 回應太慢，遲啲再試下。"


class LihkgBadResponse(LihkgError):
    """LIHKG answered with something we cannot read (malformed JSON, wrong shape)."""

    user_message = "LIHKG 回咗啲怪嘢，睇唔明。"


class ModelError(LilmError):
    """The language model failed to load or to generate."""

    user_message = "個 AI 模型出咗事，遲啲再試下。"


class EngineBusy(ModelError):
    """The generation queue is full: the request was refused at once instead of waiting."""

    user_message = "太多人用緊，遲啲再試啦。"

    def __init__(self, detail: str = "", *, waiting: int = 0) -> None:
        super().__init__(detail, user_message=busy_message(waiting))
        self.waiting = waiting


class GenerationTimeout(ModelError):
    """A generation request took longer than its deadline (waiting in the queue included)."""

    user_message = "個 AI 模型太忙，等咗好耐都未有回覆，遲啲再試下。"


class PromptTooLong(ModelError):
    """The prompt plus the reply it asks for does not fit the model's context window."""

    user_message = "個 post 太長，個 AI 模型食唔落。"


def queue_message(ahead: int) -> str:
    """What a bot shows while a request waits in the generation queue.

    >>> queue_message(3)
    '排緊隊，前面仲有 3 個。'
    >>> queue_message(0)
    '排緊隊，下一個就到你。'
    """
    return f"排緊隊，前面仲有 {ahead} 個。" if ahead > 0 else "排緊隊，下一個就到你。"


def busy_message(waiting: int) -> str:
    """The Cantonese line of EngineBusy, naming the queue length when known.

    >>> busy_message(12)
    '太多人用緊（前面仲有 12 個排緊隊），遲啲再試啦。'
    """
    return f"太多人用緊（前面仲有 {waiting} 個排緊隊），遲啲再試啦。" if waiting > 0 else EngineBusy.user_message

"""The reply service: message text -> link -> thread -> prompt -> candidate replies -> clean -> mask.

Every bot and the CLI go through `ReplyService`; it owns no platform code.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, replace
from typing import Protocol

from core.emoji import render_emoji
from core.errors import LihkgBadResponse, PromptTooLong
from core.generation import GenerationBackend, SamplingParams
from core.html_text import post_to_text
from core.links import ThreadLink, parse_link
from core.masking import Masker
from core.normalize import clean_reply
from core.prompt import build_messages
from core.settings import Settings
from core.thread import Thread

log = logging.getLogger(__name__)

PartialCallback = Callable[[int, str], Awaitable[None]]


@dataclass(frozen=True)
class ThreadPrompt:
    """What the model is asked about: the thread's category, title and first-post text."""

    category: str
    title: str
    content: str
    thread_id: int | None = None


@dataclass(frozen=True)
class ReplyResult:
    """Masked, display-ready text: the thread as shown to users and the generated replies."""

    thread: ThreadPrompt
    replies: list[str]
    model: str

    def to_json_dict(self) -> dict:
        thread = asdict(self.thread)
        thread["id"] = thread.pop("thread_id")
        return {"thread": thread, "replies": list(self.replies), "model": self.model}


class ThreadFetcher(Protocol):
    """What the service needs of a LIHKG client (`core.lihkg.LihkgClient` fits)."""

    async def fetch_thread(self, thread_id: int) -> Thread: ...


class ReplyService:
    """Turns a chat message with a LIHKG link (or a typed post) into masked LIHKG-style replies."""

    def __init__(
        self,
        *,
        backend: GenerationBackend,
        fetcher: ThreadFetcher | None,
        masker: Masker,
        params: SamplingParams,
        candidates: int = 1,
        system_message: str | None = None,
        prompt_budget: int = 2048,
        emoji_style: str = "unicode",
    ) -> None:
        self.backend = backend
        self.fetcher = fetcher
        self.masker = masker
        self.params = params
        self.candidates = candidates
        self.system_message = system_message or None
        self.prompt_budget = prompt_budget
        self.emoji_style = emoji_style

    @classmethod
    def from_settings(cls, settings: Settings, *, backend: GenerationBackend, fetcher: ThreadFetcher | None) -> ReplyService:
        masker = Masker.default(extra_words=settings.sensitive_words_extra, extra_file=settings.sensitive_words_file or None)
        params = SamplingParams(
            max_tokens=settings.max_tokens,
            temperature=settings.temperature,
            top_p=settings.top_p,
            repetition_penalty=settings.repetition_penalty,
        )
        return cls(
            backend=backend,
            fetcher=fetcher,
            masker=masker,
            params=params,
            candidates=settings.candidates,
            system_message=settings.system_message,
            prompt_budget=settings.prompt_token_budget,
        )

    async def reply_to_message(self, text: str, **options) -> ReplyResult:
        """Reply to the first LIHKG link in `text` (raises LinkError when there is none)."""
        return await self.reply_to_link(parse_link(text), **options)

    async def reply_to_link(self, link: ThreadLink, **options) -> ReplyResult:
        return await self.reply_to_prompt(await self.fetch_prompt(link), **options)

    async def fetch_prompt(self, link: ThreadLink) -> ThreadPrompt:
        """The linked thread's category, title and first post (bots show the title before generating)."""
        if self.fetcher is None:
            raise LihkgBadResponse("no LIHKG fetcher configured")
        return prompt_from_thread(await self.fetcher.fetch_thread(link.thread_id))

    async def reply_to_prompt(
        self,
        prompt: ThreadPrompt,
        *,
        n: int | None = None,
        seed: int | None = None,
        params: SamplingParams | None = None,
        system: str | None = None,
        on_partial: PartialCallback | None = None,
    ) -> ReplyResult:
        """Generate `n` candidates (seeded `seed`, `seed+1`, ...). `on_partial(i, text)` sees
        candidate i's masked text so far, for bots that stream by editing a message. `system`
        replaces the service's system message for this call (e.g. a chat's chosen style)."""
        params = params or self.params
        count = n or self.candidates
        messages = self.messages_for(prompt, params, system=system)
        params = self._fit_reply(messages, params)
        candidate_params = [params.with_seed(None if seed is None else seed + index) for index in range(count)]
        if count > 1 and hasattr(self.backend, "stream_many"):
            replies = await self._batched_replies(messages, candidate_params, on_partial)
        else:
            replies = [await self._one_reply(messages, p, index, on_partial) for index, p in enumerate(candidate_params)]
        return ReplyResult(thread=self.display_thread(prompt), replies=replies, model=self.backend.name)

    def messages_for(self, prompt: ThreadPrompt, params: SamplingParams, *, system: str | None = None) -> list[dict[str, str]]:
        """The exact chat the model sees: the dataset step's builder, with room kept for the reply.

        Within the model's trained window when the backend knows it: a tiny model trained on
        192 positions gets a shorter first post, not positions it never saw."""
        window = self._window()
        budget = self.prompt_budget if window is None else min(self.prompt_budget, window)
        reserve = params.max_tokens if window is None else min(params.max_tokens, window // 2)
        build = functools.partial(
            build_messages,
            prompt.category,
            prompt.title,
            prompt.content,
            count_tokens=self.backend.count_tokens,
            budget=budget,
            system=system or self.system_message,
        )
        try:
            return build(reserve=reserve)
        except ValueError:
            if reserve == 0:
                raise PromptTooLong(f"title and system message alone exceed the {budget}-token budget") from None
        try:  # a small window: give the prompt everything, the reply gets what is left
            return build(reserve=0)
        except ValueError:
            raise PromptTooLong(f"title and system message alone exceed the {budget}-token budget") from None

    def _window(self) -> int | None:
        window = getattr(self.backend, "context_window", None)
        return window if isinstance(window, int) and window > 0 else None

    def _fit_reply(self, messages: list[dict[str, str]], params: SamplingParams) -> SamplingParams:
        """Shorten max_tokens so prompt + reply stay inside the model's trained window."""
        window = self._window()
        if window is None or not hasattr(self.backend, "prompt_tokens"):
            return params
        room = window - len(self.backend.prompt_tokens(messages))
        if room >= params.max_tokens:
            return params
        return replace(params, max_tokens=max(1, room))

    def display_thread(self, prompt: ThreadPrompt) -> ThreadPrompt:
        """The thread as users see it: masked, emoji rendered."""
        return replace(prompt, title=self.finish(prompt.title), content=self.finish(prompt.content))

    def finish(self, text: str) -> str:
        """Display form of any text: emoji rendered, sensitive words masked."""
        return self.masker.mask(render_emoji(text, style=self.emoji_style))

    def post_process(self, raw: str) -> str:
        """Generated text -> what users see: special tokens and <think> gone, HK characters, masked."""
        return self.finish(clean_reply(raw, special_tokens=self.backend.special_tokens()))

    async def _batched_replies(self, messages, params: list[SamplingParams], on_partial: PartialCallback | None) -> list[str]:
        """All candidates as one batch (backends with `stream_many`, e.g. the MLX engine)."""
        raw = [""] * len(params)
        async for index, piece in self.backend.stream_many(messages, params):
            raw[index] += piece
            if on_partial is not None:
                await on_partial(index, self.post_process(raw[index]))
        return [self.post_process(text) for text in raw]

    async def _one_reply(self, messages, params: SamplingParams, index: int, on_partial: PartialCallback | None) -> str:
        raw = ""
        async for piece in self.backend.stream(messages, params):
            raw += piece
            if on_partial is not None:
                await on_partial(index, self.post_process(raw))
        return self.post_process(raw)


def prompt_from_thread(thread: Thread) -> ThreadPrompt:
    """Category, title and first-post text of a fetched thread."""
    first = thread.first_post
    content = post_to_text(first.msg) if first is not None else ""
    return ThreadPrompt(category=thread.category, title=thread.title, content=content, thread_id=thread.thread_id)

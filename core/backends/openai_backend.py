"""A client of any OpenAI-compatible chat completions server (mlx_lm.server, vLLM, llama.cpp).

How users outgrow one machine: bots stay thin clients and the inference server scales.
Streams `POST {base_url}/chat/completions` with `"stream": true` (server-sent events) and
translates every failure into the project's exception tree at this boundary. The optional
API key travels only in the Authorization header: never logged, never in an error or repr.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import unicodedata
from collections.abc import AsyncIterator, Sequence

import httpx

from core.errors import EngineBusy, GenerationTimeout, ModelError, PromptTooLong
from core.generation import Messages, SamplingParams

log = logging.getLogger(__name__)

# Stripped from output if a server lets them through (ChatML end-of-turn markers).
CHATML_SPECIAL_TOKENS = ("<|im_end|>", "<|endoftext|>", "<|im_start|>")
CONNECT_TIMEOUT = 10.0


class OpenAIBackend:
    """`stream(messages, params)` against `{base_url}/chat/completions`; `stream_many` runs the
    candidates as concurrent requests, which a batching server serves as one batch."""

    def __init__(
        self,
        *,
        base_url: str,
        model: str = "",
        api_key: str = "",
        timeout: float | None = 120.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.timeout = timeout
        self.name = model or _host_of(self.base_url)
        headers = {"Accept": "text/event-stream"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self._client = httpx.AsyncClient(
            base_url=self.base_url,
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=min(CONNECT_TIMEOUT, timeout or CONNECT_TIMEOUT)),
            transport=transport,
        )

    @classmethod
    def from_settings(cls, settings) -> OpenAIBackend:
        return cls(
            base_url=settings.openai_base_url,
            model=settings.openai_model,
            api_key=settings.openai_api_key,
            timeout=settings.generation_timeout or None,
        )

    def __repr__(self) -> str:
        return f"OpenAIBackend(base_url={self.base_url!r}, model={self.model!r})"

    def count_tokens(self, text: str) -> int:
        """No tokenizer on this side: an estimate (see `estimate_tokens`)."""
        return estimate_tokens(text)

    def special_tokens(self) -> tuple[str, ...]:
        return CHATML_SPECIAL_TOKENS

    def request_body(self, messages: Messages, params: SamplingParams) -> dict:
        """The JSON sent for one reply."""
        body: dict = {
            "messages": [dict(m) for m in messages],
            "stream": True,
            "max_tokens": params.max_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
        }
        if self.model:
            body["model"] = self.model
        if params.seed is not None:
            body["seed"] = params.seed
        if params.repetition_penalty and params.repetition_penalty != 1.0:
            body["repetition_penalty"] = params.repetition_penalty  # mlx_lm.server, vLLM
        return body

    async def stream(self, messages: Messages, params: SamplingParams) -> AsyncIterator[str]:
        body = self.request_body(messages, params)
        # httpx times each read; this bounds the whole reply, like the in-process engine does.
        deadline = asyncio.get_running_loop().time() + self.timeout if self.timeout else math.inf
        try:
            async with self._client.stream("POST", "/chat/completions", json=body) as response:
                if response.status_code != 200:
                    await response.aread()
                    raise _status_error(response)
                async for text in _sse_text(response):
                    if asyncio.get_running_loop().time() > deadline:
                        raise GenerationTimeout(f"{self.base_url} took longer than {self.timeout:g}s for one reply")
                    yield text
        except httpx.TimeoutException as error:
            raise GenerationTimeout(f"{self.base_url} did not answer in time ({type(error).__name__})") from error
        except httpx.TransportError as error:
            raise ModelError(
                f"could not reach the model server at {self.base_url}: {type(error).__name__}",
                user_message="連唔到個 AI 模型伺服器，遲啲再試下。",
            ) from error

    async def stream_many(self, messages: Messages, params_list: Sequence[SamplingParams]) -> AsyncIterator[tuple[int, str]]:
        """Candidates as concurrent requests: (index, text) pieces in arrival order."""
        queue: asyncio.Queue = asyncio.Queue()

        async def pump(index: int, params: SamplingParams) -> None:
            async for text in self.stream(messages, params):
                await queue.put((index, text))

        tasks = [asyncio.create_task(pump(i, p)) for i, p in enumerate(params_list)]
        waiter = asyncio.ensure_future(asyncio.gather(*tasks))
        waiter.add_done_callback(lambda _: queue.put_nowait(None))
        try:
            while (item := await queue.get()) is not None:
                yield item
            await waiter  # raises the first candidate's error
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if waiter.done() and not waiter.cancelled():
                waiter.exception()  # mark retrieved: the error was raised above or is moot

    async def aclose(self) -> None:
        await self._client.aclose()


async def _sse_text(response: httpx.Response) -> AsyncIterator[str]:
    """Content pieces of an OpenAI chat-completions event stream, until [DONE] or the end."""
    async for line in response.aiter_lines():
        if not line.startswith("data:"):
            continue  # blank separators, ": keepalive" comments, event/id fields
        data = line[len("data:") :].strip()
        if data == "[DONE]":
            return
        try:
            event = json.loads(data)
        except json.JSONDecodeError as error:
            raise ModelError(f"the model server sent a malformed event: {data[:80]!r}") from error
        if not isinstance(event, dict):
            raise ModelError(f"the model server sent an unexpected event: {data[:80]!r}")
        if "error" in event:
            raise ModelError(f"the model server failed mid-stream: {_error_text(event)}")
        for choice in event.get("choices") or ():
            text = (choice.get("delta") or {}).get("content")
            if text:
                yield text


def _status_error(response: httpx.Response) -> ModelError:
    status, detail = response.status_code, _error_text(_json_or_text(response))
    where = f"{response.request.method} {response.request.url.path} -> HTTP {status}"
    if status in (429, 503):
        return EngineBusy(f"{where}: {detail}")
    if status in (401, 403):
        return ModelError(f"{where}: the server refused our API key", user_message="個 AI 模型伺服器唔俾我哋用，請通知管理員。")
    if status == 400 and "context" in detail.lower():
        return PromptTooLong(f"{where}: {detail}")
    if status == 404:
        return ModelError(f"{where}: wrong LILM_OPENAI_BASE_URL or model name? {detail}")
    return ModelError(f"{where}: {detail}")


def _json_or_text(response: httpx.Response):
    try:
        return response.json()
    except ValueError:
        return response.text


def _error_text(payload) -> str:
    """The message inside an OpenAI-style error body ({"error": {"message": ...}} or {"error": "..."})."""
    if isinstance(payload, dict):
        error = payload.get("error", payload)
        if isinstance(error, dict):
            error = error.get("message", error)
        return str(error)[:300]
    return str(payload)[:300]


def _host_of(base_url: str) -> str:
    return httpx.URL(base_url).host or base_url


def estimate_tokens(text: str) -> int:
    """Rough tokens of `text` in a server's unknown tokenizer, for the prompt budget: one per
    CJK/wide character, one per three others (about right for Qwen-sized vocabularies; lower
    LILM_PROMPT_TOKEN_BUDGET for a server whose tokenizer splits Chinese finer).

    >>> estimate_tokens("今晚食咩"), estimate_tokens("hello world!")
    (4, 4)
    """
    wide = sum(1 for ch in text if unicodedata.east_asian_width(ch) in "WF")
    return wide + math.ceil((len(text) - wide) / 3)

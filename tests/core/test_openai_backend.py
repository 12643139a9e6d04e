"""The OpenAI-compatible backend: SSE parsing and error translation over httpx.MockTransport,
then end to end against a real `mlx_lm.server` on loopback (slow)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import subprocess
import sys
import time

import httpx
import pytest

from core.backends.openai_backend import OpenAIBackend, estimate_tokens
from core.blas import find_openblas
from core.errors import EngineBusy, GenerationTimeout, ModelError, PromptTooLong
from core.generation import SamplingParams, complete
from core.masking import Masker
from core.reply import ReplyService, ThreadPrompt
from core.runtime import load_backend
from core.settings import load_settings
from tests.fakes.tiny_mlx_model import tiny_model_path  # noqa: F401 (fixture)

MESSAGES = [{"role": "system", "content": "你係 LIHKG 用戶。"}, {"role": "user", "content": "今晚食咩好"}]
SECRET = "sk-test-s3cret-value"


def sse(*events, done: bool = True) -> bytes:
    lines = [": keepalive 10/20", ""]
    for event in events:
        lines += [f"data: {json.dumps(event, ensure_ascii=False)}", ""]
    if done:
        lines += ["data: [DONE]", ""]
    return ("\n".join(lines) + "\n").encode()


def chunk(text: str | None, finish: str | None = None) -> dict:
    delta = {"role": "assistant"} if text is None else {"content": text}
    return {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


def backend_for(handler, **options) -> OpenAIBackend:
    return OpenAIBackend(base_url="http://model.test/v1", transport=httpx.MockTransport(handler), **options)


async def test_streams_content_pieces_and_sends_the_sampling_settings():
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        body = sse(chunk(None), chunk("今晚"), chunk("打邊爐"), chunk("", finish="stop"))
        return httpx.Response(200, content=body, headers={"content-type": "text/event-stream"})

    backend = backend_for(handler, model="lilm-tiny", api_key=SECRET)
    params = SamplingParams(max_tokens=50, temperature=0.7, top_p=0.9, repetition_penalty=1.2, seed=3)
    pieces = [piece async for piece in backend.stream(MESSAGES, params)]
    await backend.aclose()

    assert pieces == ["今晚", "打邊爐"]
    request = seen[0]
    assert request.url == "http://model.test/v1/chat/completions"
    assert request.headers["authorization"] == f"Bearer {SECRET}"
    assert json.loads(request.content) == {
        "model": "lilm-tiny",
        "messages": MESSAGES,
        "stream": True,
        "max_tokens": 50,
        "temperature": 0.7,
        "top_p": 0.9,
        "seed": 3,
        "repetition_penalty": 1.2,
    }


async def test_no_model_name_and_no_key_means_neither_is_sent():
    seen = []

    def handler(request):
        seen.append(request)
        return httpx.Response(200, content=sse(chunk("好")))

    backend = backend_for(handler)
    assert await complete(backend, MESSAGES, SamplingParams(repetition_penalty=1.0)) == "好"
    body = json.loads(seen[0].content)
    assert "model" not in body and "repetition_penalty" not in body and "seed" not in body
    assert "authorization" not in seen[0].headers
    assert backend.name == "model.test"


@pytest.mark.parametrize(
    "status, payload, error_type, fragment",
    [
        (429, {"error": {"message": "slow down"}}, EngineBusy, "太多人用緊"),
        (503, "overloaded", EngineBusy, "太多人用緊"),
        (400, {"error": {"message": "maximum context length is 2048 tokens"}}, PromptTooLong, "太長"),
        (404, {"error": "model not found"}, ModelError, "AI 模型"),
        (500, {"error": "CUDA out of memory"}, ModelError, "AI 模型"),
        (401, {"error": "invalid api key"}, ModelError, "管理員"),
    ],
)
async def test_http_errors_become_typed_errors(status, payload, error_type, fragment):
    def handler(request):
        if isinstance(payload, dict):
            return httpx.Response(status, json=payload)
        return httpx.Response(status, text=payload)

    backend = backend_for(handler, api_key=SECRET)
    with pytest.raises(error_type) as raised:
        await complete(backend, MESSAGES, SamplingParams())
    assert fragment in raised.value.user_message
    assert str(status) in str(raised.value)
    assert SECRET not in str(raised.value)


async def test_the_api_key_never_reaches_logs_errors_or_repr(caplog):
    def handler(request):
        return httpx.Response(401, json={"error": "bad key"})

    caplog.set_level(logging.DEBUG)
    backend = backend_for(handler, api_key=SECRET)
    with pytest.raises(ModelError) as raised:
        await complete(backend, MESSAGES, SamplingParams())
    assert SECRET not in caplog.text
    assert SECRET not in repr(backend) and SECRET not in repr(raised.value)
    settings = load_settings(env_file=None, environ={"LILM_OPENAI_API_KEY": SECRET})
    assert SECRET not in repr(settings)


@pytest.mark.parametrize(
    "body, fragment",
    [
        (b"data: {not json\n\n", "malformed"),
        (b'data: {"error": {"message": "generation crashed"}}\n\n', "generation crashed"),
        (b"data: [1, 2]\n\n", "unexpected"),
    ],
)
async def test_broken_event_streams_are_model_errors(body, fragment):
    backend = backend_for(lambda request: httpx.Response(200, content=body))
    with pytest.raises(ModelError, match=fragment):
        await complete(backend, MESSAGES, SamplingParams())


@pytest.mark.parametrize(
    "failure, error_type, fragment",
    [
        (httpx.ConnectError("refused"), ModelError, "連唔到"),
        (httpx.ReadTimeout("slow"), GenerationTimeout, "太忙"),
    ],
)
async def test_transport_failures_are_typed(failure, error_type, fragment):
    def handler(request):
        raise failure

    with pytest.raises(error_type) as raised:
        await complete(backend_for(handler), MESSAGES, SamplingParams())
    assert fragment in raised.value.user_message


async def test_stream_many_runs_candidates_concurrently_and_tags_their_pieces():
    in_flight, peak = 0, 0

    async def handler(request):
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.01)  # let every candidate's request arrive before any answers
        in_flight -= 1
        seed = json.loads(request.content)["seed"]
        return httpx.Response(200, content=sse(chunk(f"第{seed}"), chunk("個")))

    backend = backend_for(handler)
    texts = {}
    async for index, piece in backend.stream_many(MESSAGES, [SamplingParams(seed=s) for s in (10, 11, 12)]):
        texts[index] = texts.get(index, "") + piece
    assert texts == {0: "第10個", 1: "第11個", 2: "第12個"}
    assert peak == 3


async def test_stream_many_raises_a_candidates_error():
    def handler(request):
        if json.loads(request.content)["seed"] == 2:
            return httpx.Response(503, text="busy")
        return httpx.Response(200, content=sse(chunk("好")))

    backend = backend_for(handler)
    with pytest.raises(EngineBusy):
        async for _ in backend.stream_many(MESSAGES, [SamplingParams(seed=s) for s in (1, 2, 3)]):
            pass


async def test_runtime_picks_the_openai_backend_from_settings():
    settings = load_settings(
        env_file=None,
        environ={"LILM_BACKEND": "openai", "LILM_OPENAI_BASE_URL": "http://127.0.0.1:9/v1", "LILM_OPENAI_MODEL": "m"},
    )
    backend = await load_backend(settings)
    try:
        assert isinstance(backend, OpenAIBackend) and backend.name == "m"
        with pytest.raises(ModelError):  # nothing listens on the discard port
            await complete(backend, MESSAGES, SamplingParams())
    finally:
        await backend.aclose()


def test_openai_backend_needs_a_base_url():
    from core.errors import ConfigError

    with pytest.raises(ConfigError, match="LILM_OPENAI_BASE_URL"):
        load_settings(env_file=None, environ={"LILM_BACKEND": "openai"})
    with pytest.raises(ConfigError, match="LILM_BACKEND"):
        load_settings(env_file=None, environ={"LILM_BACKEND": "llama"})


def test_token_estimate_counts_cjk_characters_one_each():
    assert estimate_tokens("") == 0
    assert estimate_tokens("巴士又加價") == 5
    assert estimate_tokens("abc def") == 3


# --- a real mlx_lm.server ----------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def mlx_server(tiny_model_path, tmp_path_factory):  # noqa: F811
    """`python -m mlx_lm.server` with the tiny model on a loopback port; stopped afterwards."""
    port = _free_port()
    log_path = tmp_path_factory.mktemp("mlx-server") / "server.log"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    if find_openblas():
        env["LD_PRELOAD"] = find_openblas()
    command = [sys.executable, "-m", "mlx_lm.server", "--model", tiny_model_path, "--host", "127.0.0.1",
               "--port", str(port), "--max-tokens", "64"]
    with open(log_path, "wb") as log_file:
        server = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 120
        while True:
            if server.poll() is not None:
                pytest.fail(f"mlx_lm.server exited with {server.returncode}:\n{log_path.read_text()[-2000:]}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"mlx_lm.server did not become healthy:\n{log_path.read_text()[-2000:]}")
            time.sleep(0.2)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


@pytest.mark.slow
async def test_real_mlx_server_streams_a_reply(mlx_server):
    backend = OpenAIBackend(base_url=mlx_server)
    try:
        pieces = [p async for p in backend.stream(MESSAGES, SamplingParams(max_tokens=12, seed=1))]
    finally:
        await backend.aclose()
    assert pieces and all(isinstance(p, str) for p in pieces)


@pytest.mark.slow
async def test_real_mlx_server_behind_the_reply_service(mlx_server):
    backend = OpenAIBackend(base_url=mlx_server)
    service = ReplyService(backend=backend, fetcher=None, masker=Masker.default(), params=SamplingParams(max_tokens=16))
    partial_indices = set()

    async def on_partial(index, text):
        partial_indices.add(index)

    try:
        result = await service.reply_to_prompt(
            ThreadPrompt(category="吹水台", title="今晚食咩", content="好肚餓"), n=2, seed=4, on_partial=on_partial
        )
    finally:
        await backend.aclose()
    assert len(result.replies) == 2 and partial_indices <= {0, 1}
    assert all("<|im_end|>" not in reply for reply in result.replies)


@pytest.mark.slow
async def test_real_mlx_server_survives_a_client_that_hangs_up(mlx_server):
    backend = OpenAIBackend(base_url=mlx_server)
    try:
        stream = backend.stream(MESSAGES, SamplingParams(max_tokens=60, seed=2))
        await anext(stream)
        await stream.aclose()
        again = await complete(backend, MESSAGES, SamplingParams(max_tokens=8, seed=3))
    finally:
        await backend.aclose()
    assert isinstance(again, str)


@pytest.mark.slow
async def test_real_mlx_server_unknown_model_is_a_model_error(mlx_server):
    backend = OpenAIBackend(base_url=mlx_server, model="/nonexistent/model/dir")
    try:
        with pytest.raises(ModelError):
            await complete(backend, MESSAGES, SamplingParams(max_tokens=4))
    finally:
        await backend.aclose()

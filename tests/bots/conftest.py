"""Fixtures for the bot tests: the fake Bot API, a LIHKG client on the fake LIHKG server,
threads to answer, and a reply service with a scripted model."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from core.generation import SamplingParams
from core.lihkg import LihkgClient
from core.masking import Masker
from core.reply import ReplyService
from tests.bots.harness import TOKEN
from tests.fakes.lihkg_threads import FakePost, make_thread
from tests.fakes.scripted_backend import ScriptedBackend
from tests.fakes.telegram_api import FakeBotApi

THREAD_ID = 3699748
THREAD_TITLE = "屌，巴士又加價 <b>&amp;"  # masked to X; HTML-looking text must show literally
SHOWN_TITLE = "X，巴士又加價 <b>&amp;"
REPLY = "撚樣，真係冇撚用[hkg:normal/clown]"
SHOWN_REPLY = "XX，真係冇X用🤡"


async def _no_sleep(_seconds: float) -> None:
    return None


@pytest.fixture(scope="session")
def masker() -> Masker:
    return Masker.default()


@pytest.fixture
def api() -> Iterator[FakeBotApi]:
    """A fake Bot API on a loopback port (privacy mode on: not every group message)."""
    with FakeBotApi(token=TOKEN) as fake:
        yield fake


@pytest.fixture
def threads(lihkg_server):
    """The fake LIHKG server with a few threads."""
    lihkg_server.add_thread(make_thread(THREAD_ID, THREAD_TITLE, cat_id=5, posts=[FakePost("又加價<br />冇撚用嘅政府")]))
    lihkg_server.add_thread(make_thread(100, "今晚食咩好", cat_id=1, posts=["好肚餓"]))
    lihkg_server.add_thread(make_thread(200, "有冇人睇波", cat_id=6, posts=["今晚曼聯"]))
    return lihkg_server


@pytest.fixture
async def lihkg(threads):
    async with LihkgClient(threads.base_url, device_id="a" * 40, sleep=_no_sleep, retries=0) as client:
        yield client


@pytest.fixture
def backend() -> ScriptedBackend:
    return ScriptedBackend([REPLY], chunk=3)


@pytest.fixture
def service(backend, lihkg, masker) -> ReplyService:
    return make_service(backend, lihkg, masker)


def make_service(backend, fetcher, masker) -> ReplyService:
    return ReplyService(backend=backend, fetcher=fetcher, masker=masker, params=SamplingParams(max_tokens=60))

"""ThrottledEdits in virtual time: one call in flight, a minimum interval, retry_after honoured,
the final content always delivered; and `stream_answer` feeding an outbox from a real reply
service with a scripted model."""

import asyncio
import itertools

import pytest

from bots.chat_text import Span, answer_spans, plain_text
from bots.preferences import ChatPreferences, find_style
from bots.streaming import (
    AnswerOutbox,
    RetryTooLong,
    ThrottledEdits,
    View,
    stream_answer,
)
from core.errors import GenerationTimeout
from core.generation import SamplingParams
from core.masking import Masker
from core.reply import ReplyService, ThreadPrompt
from tests.fakes.scripted_backend import ScriptedBackend


class Later(Exception):
    """A platform's 429."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"retry after {seconds}")
        self.seconds = seconds


def retry_after(error: BaseException) -> float | None:
    return error.seconds if isinstance(error, Later) else None


class Platform:
    """Records deliveries with the virtual time they started; fails as scripted."""

    def __init__(self, clock) -> None:
        self.clock = clock
        self.calls: list[tuple[float, object, bool]] = []
        self.failures: list[Exception] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.latency = 0.0

    async def deliver(self, content, final: bool) -> None:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            self.calls.append((self.clock.now, content, final))
            await asyncio.sleep(self.latency)
            if self.failures:
                raise self.failures.pop(0)
        finally:
            self.in_flight -= 1


class VirtualClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


@pytest.fixture
def clock():
    return VirtualClock()


@pytest.fixture
def platform(clock):
    return Platform(clock)


def edits(platform, clock, interval=1.5, **options):
    return ThrottledEdits(platform.deliver, min_interval=interval, retry_after=retry_after, sleep=clock.sleep, clock=clock, **options)


async def test_updates_are_delivered_at_most_once_per_interval_latest_first(platform, clock):
    stream = edits(platform, clock)
    for step in range(50):
        stream.update(f"text {step}")
        await asyncio.sleep(0)
        clock.now += 0.1  # tokens arrive every 0.1 s of virtual time
    await stream.finish("text final")

    starts = [at for at, _, _ in platform.calls]
    assert all(b - a >= 1.5 for a, b in itertools.pairwise(starts))
    assert len(platform.calls) <= clock.now / 1.5 + 2 and len(platform.calls) < 50
    assert platform.calls[-1][1:] == ("text final", True)
    intermediate = [content for _, content, final in platform.calls if not final]
    assert intermediate == sorted(set(intermediate), key=lambda c: int(c.split()[1]))  # in order, no repeats


async def test_never_more_than_one_call_in_flight(platform, clock):
    platform.latency = 0.001
    stream = edits(platform, clock, interval=0)
    for step in range(200):
        stream.update(step)
        if step % 7 == 0:
            await asyncio.sleep(0.0005)
    await stream.finish("done")
    assert platform.max_in_flight == 1
    assert platform.calls[-1][1] == "done"


async def test_retry_after_is_waited_out_and_the_content_retried(platform, clock):
    platform.failures = [Later(30)]
    stream = edits(platform, clock)
    stream.update("first")
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    await stream.finish("final")
    (t0, first, _), (t1, final, is_final) = platform.calls
    assert first == "first" and final == "final" and is_final
    assert t1 - t0 >= 30


async def test_final_content_survives_repeated_429s(platform, clock):
    platform.failures = [Later(5), Later(60), Later(1)]
    stream = edits(platform, clock)
    await stream.finish("final")
    assert [c for _, c, _ in platform.calls] == ["final"] * 4
    assert clock.slept[-3:] == [5, 60, 1] or sum(clock.slept) >= 66


async def test_final_gives_up_after_its_attempts_or_a_huge_wait(platform, clock):
    platform.failures = [Later(1)] * 10
    with pytest.raises(Later):
        await edits(platform, clock, final_attempts=3).finish("final")
    platform.failures = [Later(10_000)]
    with pytest.raises(RetryTooLong):
        await edits(platform, clock).finish("final")


async def test_other_errors_drop_an_update_but_not_the_final(platform, clock):
    platform.failures = [RuntimeError("message is not modified")]
    stream = edits(platform, clock)
    stream.update("a")
    await asyncio.sleep(0)
    await stream.finish("b")
    assert [c for _, c, _ in platform.calls] == ["a", "b"]


async def test_final_errors_reach_the_caller(platform, clock):
    platform.failures = [PermissionError("blocked")]
    with pytest.raises(PermissionError):
        await edits(platform, clock).finish("final")


async def test_finish_waits_for_the_call_in_flight(platform, clock):
    platform.latency = 0.01
    stream = edits(platform, clock, interval=0)
    stream.update("partial")
    await asyncio.sleep(0.001)  # the partial is now in flight
    await stream.finish("final")
    assert [c for _, c, _ in platform.calls] == ["partial", "final"]
    assert platform.max_in_flight == 1


async def test_updates_after_finish_and_aclose_are_ignored(platform, clock):
    stream = edits(platform, clock)
    await stream.finish("final")
    stream.update("late")
    await asyncio.sleep(0)
    other = edits(platform, clock)
    other.update("x")
    await other.aclose()
    other.update("y")
    await asyncio.sleep(0)
    assert [c for _, c, _ in platform.calls] in (["final"], ["final", "x"])


async def test_a_final_in_several_messages_resumes_after_a_429_without_repeats(clock):
    sent: list[tuple[str, str]] = []
    failures = [None, Later(3.0), None, None]

    async def first(piece: str) -> None:
        sent.append(("put", piece))

    async def more(piece: str) -> None:
        failure = failures.pop(0) if failures else None
        if failure is not None:
            raise failure
        sent.append(("add", piece))

    async def deliver(view: View, final: bool) -> None:
        await view.send_pieces(["一", "二", "三"], first, more)

    throttled = ThrottledEdits(deliver, min_interval=1.0, retry_after=retry_after, sleep=clock.sleep, clock=clock)
    await throttled.finish(View((Span("一二三"),)))
    assert sent == [("put", "一"), ("add", "二"), ("add", "三")]
    assert clock.slept == [3.0]


async def test_an_unchanged_view_is_not_sent_again(platform, clock):
    async def settle() -> None:
        for _ in range(10):
            await asyncio.sleep(0)

    throttled = edits(platform, clock)
    shown = View((Span("排緊隊"),))
    throttled.update(shown)
    await settle()
    shown.sent = 2  # delivery progress is not part of what a view shows
    throttled.update(View((Span("排緊隊"),)))
    await settle()
    throttled.update(View((Span("排緊隊"),), partial=True))
    await settle()
    await throttled.finish(View((Span("完"),)))
    assert [(content.partial, final) for _, content, final in platform.calls] == [(False, False), (True, False), (False, True)]


class Closed(Exception):
    """The test platform's "chat closed to the bot"."""


class RecordingOutbox(AnswerOutbox):
    """A platform that shows every view at once and keeps them."""

    def __init__(self) -> None:
        super().__init__(min_interval=0.0, hold=0.0, retry_after=retry_after, refusal=Closed)
        self.views: list[tuple[str, bool]] = []

    @property
    def shown(self) -> bool:
        return bool(self.views)

    async def deliver_view(self, view: View, final: bool) -> None:
        self.views.append((plain_text(view.spans), final))


def scripted_service(backend: ScriptedBackend) -> ReplyService:
    return ReplyService(backend=backend, fetcher=None, masker=Masker.default(), params=SamplingParams(max_tokens=60))


PROMPT = ThreadPrompt(category="吹水台", title="今晚食咩好", content="好肚餓")
URL = "https://lih.kg/100"


@pytest.mark.timeout(10)
async def test_stream_answer_shows_the_layout_as_it_grows_with_the_chats_preferences():
    backend = ScriptedBackend(["食飯啦", "叫外賣"], chunk=1, delay=0.001)
    out = RecordingOutbox()
    prefs = ChatPreferences(candidates=2, temperature=0.3, style="snarky")
    result = await stream_answer(scripted_service(backend), PROMPT, out, prefs=prefs, url=URL, deadline=5.0)
    await out.finish(answer_spans(result.thread, result.replies, URL))
    assert result.replies == ["食飯啦", "叫外賣"]
    assert [params.temperature for _, params in backend.calls] == [0.3, 0.3]
    assert backend.calls[0][0][0] == {"role": "system", "content": find_style("snarky").system}
    texts = [text for text, final in out.views if not final]
    assert texts and all(text.startswith("【吹水台】今晚食咩好\n\n") for text in texts)
    assert texts[-1].startswith("【吹水台】今晚食咩好\n\n1. 食飯啦\n\n2. 叫")  # the second candidate growing
    assert out.views[-1] == ("【吹水台】今晚食咩好\n\n1. 食飯啦\n\n2. 叫外賣", True)


@pytest.mark.timeout(10)
async def test_stream_answer_without_streaming_shows_nothing_until_the_final():
    out = RecordingOutbox()
    result = await stream_answer(scripted_service(ScriptedBackend(["食飯啦"])), PROMPT, out, prefs=ChatPreferences(), url=URL, deadline=None, streaming=False)
    await asyncio.sleep(0)
    assert result.replies == ["食飯啦"] and out.views == []


@pytest.mark.timeout(10)
async def test_a_stuck_model_ends_at_the_bots_deadline():
    out = RecordingOutbox()
    stuck = ScriptedBackend(["食飯啦"], delay=30.0)
    with pytest.raises(GenerationTimeout):
        await stream_answer(scripted_service(stuck), PROMPT, out, prefs=ChatPreferences(), url=URL, deadline=0.05)


@pytest.mark.timeout(10)
async def test_a_chat_closed_to_the_bot_stops_generating():
    out = RecordingOutbox()
    out.refused = Closed("blocked")
    backend = ScriptedBackend(["食飯啦"], chunk=1)
    with pytest.raises(Closed):
        await stream_answer(scripted_service(backend), PROMPT, out, prefs=ChatPreferences(), url=URL, deadline=5.0)
    assert out.views == []

"""ReplyService end to end over a real loopback LIHKG server, with a scripted model."""

import pytest

from core.errors import LinkError, ModelError, ThreadNotFound
from core.generation import SamplingParams
from core.lihkg import LihkgClient
from core.masking import Masker
from core.prompt import SYSTEM_MESSAGE, format_user_message
from core.reply import ReplyService, ThreadPrompt
from tests.fakes.lihkg_server import Scenario
from tests.fakes.lihkg_threads import FakePost, make_thread
from tests.fakes.scripted_backend import ScriptedBackend


async def _no_sleep(_seconds: float) -> None:
    return None


@pytest.fixture
def thread(lihkg_server):
    return lihkg_server.add_thread(
        make_thread(
            3699748,
            "屌，巴士又加價",
            cat_id=5,
            posts=[
                FakePost('又加價<br />\n冇撚用嘅政府<img src="/assets/faces/normal/clown.gif" class="hkgmoji" />'),
                FakePost("頂唔順", like_count=30),
            ],
        )
    )


@pytest.fixture
async def client(lihkg_server, tmp_path):
    async with LihkgClient(lihkg_server.base_url, device_id="a" * 40, sleep=_no_sleep, retries=1) as client:
        yield client


def _service(backend, client, **options):
    return ReplyService(
        backend=backend,
        fetcher=client,
        masker=Masker.default(),
        params=SamplingParams(max_tokens=50),
        **options,
    )


async def test_link_in_a_message_becomes_a_masked_reply(thread, client, lihkg_server):
    backend = ScriptedBackend(["<think>諗下先</think>撚樣，真係冇撚用[hkg:normal/clown]<|im_end|>"])
    result = await _service(backend, client).reply_to_message("睇下 https://lihkg.com/thread/3699748/page/1 笑死")

    assert result.thread.thread_id == 3699748
    assert result.thread.category == "時事台"
    assert result.thread.title == "X，巴士又加價"
    assert result.thread.content == "又加價\n冇X用嘅政府🤡"
    assert result.replies == ["XX，真係冇X用🤡"]  # 撚樣 is listed whole
    assert result.model == "scripted"


async def test_model_sees_the_training_prompt_unmasked(thread, client):
    backend = ScriptedBackend(["好"])
    await _service(backend, client).reply_to_message("https://lih.kg/3699748")
    messages, params = backend.calls[0]
    assert messages[0] == {"role": "system", "content": SYSTEM_MESSAGE}
    assert messages[1]["content"] == format_user_message("時事台", "屌，巴士又加價", "又加價\n冇撚用嘅政府[hkg:normal/clown]")
    assert params.max_tokens == 50


async def test_n_candidates_get_consecutive_seeds(thread, client):
    backend = ScriptedBackend(["一", "二", "三"])
    result = await _service(backend, client).reply_to_message("https://lih.kg/3699748", n=3, seed=7)
    assert result.replies == ["一", "二", "三"]
    assert [params.seed for _, params in backend.calls] == [7, 8, 9]


async def test_simplified_output_becomes_hong_kong_traditional(thread, client):
    backend = ScriptedBackend(["这个帖子说得对，真系无聊"])
    result = await _service(backend, client).reply_to_message("https://lih.kg/3699748")
    assert "这" not in result.replies[0] and "這" in result.replies[0]


async def test_partial_text_is_masked_while_streaming(thread, client):
    backend = ScriptedBackend(["你個仆街冇撚用"], chunk=1)
    seen = []

    async def on_partial(index, text):
        seen.append(text)

    await _service(backend, client).reply_to_message("https://lih.kg/3699748", on_partial=on_partial)
    assert seen[-1] == "你個XX冇X用"
    assert all("撚" not in text and "仆街" not in text for text in seen)


async def test_no_link_means_no_request_and_no_generation(client, lihkg_server):
    backend = ScriptedBackend(["x"])
    with pytest.raises(LinkError) as error:
        await _service(backend, client).reply_to_message("https://evil.com/thread/3699748/page/1")
    assert "LIHKG" in error.value.user_message
    assert lihkg_server.requests == [] and backend.calls == []


async def test_missing_thread_is_a_typed_error(client, lihkg_server):
    lihkg_server.set_scenario(Scenario.not_found())
    with pytest.raises(ThreadNotFound):
        await _service(ScriptedBackend(["x"]), client).reply_to_message("https://lih.kg/1")


async def test_model_failure_propagates_as_model_error(thread, client):
    backend = ScriptedBackend(["x"], fail_with=ModelError("boom"))
    with pytest.raises(ModelError):
        await _service(backend, client).reply_to_message("https://lih.kg/3699748")


async def test_long_first_post_is_cut_to_the_budget(client, lihkg_server):
    lihkg_server.add_thread(make_thread(5, "長文", cat_id=1, posts=[FakePost("字" * 20_000)]))
    backend = ScriptedBackend(["好"])
    await _service(backend, client, prompt_budget=1000).reply_to_message("https://lih.kg/5")
    messages, params = backend.calls[0]
    used = sum(backend.count_tokens(m["content"]) for m in messages)
    assert used + params.max_tokens <= 1000


async def test_typed_post_needs_no_fetcher():
    backend = ScriptedBackend(["今晚食飯"])
    service = ReplyService(backend=backend, fetcher=None, masker=Masker.default(), params=SamplingParams())
    result = await service.reply_to_prompt(ThreadPrompt(category="吹水台", title="食咩好", content="好肚餓"))
    assert result.replies == ["今晚食飯"]
    assert result.to_json_dict() == {
        "thread": {"id": None, "category": "吹水台", "title": "食咩好", "content": "好肚餓"},
        "replies": ["今晚食飯"],
        "model": "scripted",
    }


async def test_system_message_can_change_per_call(thread, client):
    backend = ScriptedBackend(["好"])
    service = _service(backend, client)
    await service.reply_to_message("https://lih.kg/3699748", system="你係一個毒舌嘅連登仔。")
    await service.reply_to_message("https://lih.kg/3699748")

    assert backend.calls[0][0][0] == {"role": "system", "content": "你係一個毒舌嘅連登仔。"}
    assert backend.calls[1][0][0] == {"role": "system", "content": SYSTEM_MESSAGE}


async def test_fetch_prompt_reads_the_thread_without_generating(thread, client):
    from core.links import parse_link

    backend = ScriptedBackend(["好"])
    prompt = await _service(backend, client).fetch_prompt(parse_link("https://lih.kg/3699748"))

    assert (prompt.thread_id, prompt.category, prompt.title) == (3699748, "時事台", "屌，巴士又加價")
    assert backend.calls == []


class _WindowedBackend(ScriptedBackend):
    """A scripted model trained on `context_window` positions; a token is a character."""

    context_window: int = 300

    def prompt_tokens(self, messages) -> list[int]:
        return [0] * sum(len(m["content"]) + 8 for m in messages)


@pytest.mark.parametrize("max_tokens", [100, 250])
async def test_prompt_and_reply_fit_the_model_window(max_tokens):
    backend = _WindowedBackend(["好"])
    service = ReplyService(backend=backend, fetcher=None, masker=Masker.default(), params=SamplingParams(max_tokens=max_tokens))
    await service.reply_to_prompt(ThreadPrompt(category="吹水台", title="長文", content="字" * 500))

    messages, params = backend.calls[0]
    prompt_len = len(backend.prompt_tokens(messages))
    window = backend.context_window
    assert prompt_len <= window - min(max_tokens, window // 2)  # the content was cut for the reply
    assert params.max_tokens == min(max_tokens, window - prompt_len)
    assert prompt_len + params.max_tokens <= window


async def test_short_prompt_keeps_the_full_reply_length():
    backend = _WindowedBackend(["好"])
    service = ReplyService(backend=backend, fetcher=None, masker=Masker.default(), params=SamplingParams(max_tokens=20))
    await service.reply_to_prompt(ThreadPrompt(category="吹水台", title="短", content="字"))

    assert backend.calls[0][1].max_tokens == 20


async def test_a_title_too_long_for_the_window_is_a_typed_error():
    from core.errors import PromptTooLong

    backend = _WindowedBackend(["好"])
    service = ReplyService(backend=backend, fetcher=None, masker=Masker.default(), params=SamplingParams(max_tokens=20))
    with pytest.raises(PromptTooLong):
        await service.reply_to_prompt(ThreadPrompt(category="吹水台", title="長" * 400, content="字"))
    assert backend.calls == []

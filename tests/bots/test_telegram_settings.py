"""/settings through the real bot: per chat, checked, and used by the next reply."""

import asyncio

from bots.preferences import find_style
from core.prompt import SYSTEM_MESSAGE
from tests.bots.harness import running_bot
from tests.fakes.scripted_backend import ScriptedBackend

LINK = "https://lih.kg/3699748"


async def test_settings_show_the_chat_defaults(api, service):
    ann = api.user(1, "Ann")
    async with running_bot(api, service) as bot:
        shown = await bot.answer(api.send(api.private_chat(ann), ann, "/settings"))
    assert "候選數量：1" in shown.text and "溫度：0.8" in shown.text and "風格：標準" in shown.text


async def test_candidates_temperature_and_style_shape_the_next_reply(api, lihkg, masker):
    from tests.bots.conftest import make_service

    backend = ScriptedBackend(["一號", "二號"])
    ann, bob = api.user(1, "Ann"), api.user(2, "Bob")
    chat = api.private_chat(ann)
    async with running_bot(api, make_service(backend, lihkg, masker)) as bot:
        await bot.answer(api.send(chat, ann, "/settings candidates 2"))
        await bot.answer(api.send(chat, ann, "/settings 溫度 0.3"))
        changed = await bot.answer(api.send(chat, ann, "/settings style 毒舌"))
        reply = await bot.answer(api.send(chat, ann, LINK))
        other_chat = await bot.answer(api.send(api.private_chat(bob), bob, LINK))

    assert "候選數量：2" in changed.text and "溫度：0.3" in changed.text and "風格：毒舌" in changed.text
    assert "1. 一號" in reply.text and "2. 二號" in reply.text
    (first_messages, first_params), second = backend.calls[0], backend.calls[1]
    assert first_params.temperature == 0.3 and second[1].temperature == 0.3
    assert first_messages[0]["content"] == find_style("毒舌").system != SYSTEM_MESSAGE
    bob_messages, bob_params = backend.calls[2]
    assert bob_messages[0]["content"] == SYSTEM_MESSAGE and bob_params.temperature == 0.8  # another chat
    assert "1." not in other_chat.text


async def test_invalid_values_are_refused_in_cantonese(api, service):
    ann = api.user(1, "Ann")
    chat = api.private_chat(ann)
    async with running_bot(api, service, env={"TELEGRAM_MAX_CANDIDATES": "3"}) as bot:
        too_many = await bot.answer(api.send(chat, ann, "/settings candidates 9"))
        too_hot = await bot.answer(api.send(chat, ann, "/settings temperature nan"))
        unknown = await bot.answer(api.send(chat, ann, "/settings colour red"))
        after = await bot.answer(api.send(chat, ann, "/settings"))
    assert too_many.text == "候選數量要係 1 至 3。"
    assert "溫度要係" in too_hot.text
    assert "candidates" in unknown.text
    assert "候選數量：1" in after.text


async def test_in_groups_only_admins_change_settings(api, service):
    ann, boss = api.user(1, "Ann"), api.user(9, "Boss")
    group = api.group(-1001, admins=(9,))
    async with running_bot(api, service) as bot:
        refused = await bot.answer(api.send(group, ann, "/settings candidates 2"))
        looked = await bot.answer(api.send(group, ann, "/settings"))
        changed = await bot.answer(api.send(group, boss, "/settings candidates 2"))
        reset = await bot.answer(api.send(group, boss, "/settings reset"))
    assert refused.text == "群組設定只有管理員可以改。"
    assert "候選數量：1" in looked.text
    assert "候選數量：2" in changed.text
    assert "候選數量：1" in reset.text


async def test_candidates_streamed_interleaved_by_a_batching_backend(api, lihkg, masker):
    from tests.bots.conftest import make_service

    class Batching(ScriptedBackend):
        """Like the MLX engine: the candidates of one thread come as one interleaved stream."""

        async def stream_many(self, messages, params_list):
            texts = [self.replies[i % len(self.replies)] for i in range(len(params_list))]
            self.calls.extend((messages, params) for params in params_list)
            for step in range(max(map(len, texts))):
                await asyncio.sleep(0.005)  # let the bot edit the message between steps
                for index, text in enumerate(texts):
                    if step < len(text):
                        yield index, text[step]

    ann = api.user(1, "Ann")
    group = api.group(-1001)
    backend = Batching(["第一個答案", "第二個"])
    async with running_bot(api, make_service(backend, lihkg, masker), env={"TELEGRAM_ADMIN_IDS": "1"}) as bot:
        await bot.answer(api.send(group, ann, "/settings candidates 2"))
        reply = await bot.answer(api.send(group, ann, f"/lihkg {LINK}"))
    assert reply.text.endswith("1. 第一個答案\n\n2. 第二個")
    assert len(reply.versions) > 1 and all(version.count("1. ") <= 1 for version in reply.versions)
    assert any("2. 第" in version and not version.endswith("第二個") for version in reply.versions[:-1])

"""The Telegram bot end to end: real python-telegram-bot, fake Bot API, fake LIHKG, scripted model.

Where and how the bot answers: private chats, groups (mention, reply, /lihkg, privacy off),
forum topics, streaming by drafts or edits, long replies, HTML, link previews, typing.
"""

import asyncio

import pytest

from bots.chat_text import EXAMPLE_LINK, NO_LINK_IN_COMMAND, STREAMING_MARK
from core.errors import LinkError
from core.prompt import format_user_message
from tests.bots.conftest import SHOWN_REPLY, SHOWN_TITLE, THREAD_ID, make_service
from tests.bots.harness import GatedBackend, running_bot
from tests.fakes.scripted_backend import ScriptedBackend
from tests.fakes.telegram_api import FakeBotApi
from tests.fakes.telegram_entities import utf16_len

LINK = f"https://lihkg.com/thread/{THREAD_ID}/page/1"
THREAD_URL = f"https://lihkg.com/thread/{THREAD_ID}/page/1"


async def test_private_link_gets_a_quoted_reply_with_masked_title(api, service, backend):
    ann = api.user(1, "Ann")
    async with running_bot(api, service) as bot:
        message = api.send(api.private_chat(ann), ann, f"睇下 {LINK} 笑死")
        reply = await bot.answer(message)

    assert reply.text == f"【時事台】{SHOWN_TITLE}\n\n{SHOWN_REPLY}"
    assert reply.params["parse_mode"] == "HTML"
    assert reply.params["reply_parameters"]["message_id"] == message["message_id"]
    title_link = [e for e in reply.entities if e.type == "text_link"]
    assert [e.url for e in title_link] == [THREAD_URL]
    assert reply.params["link_preview_options"] == {"is_disabled": True}
    # The model saw the unmasked thread; the chat never sees a raw sensitive word.
    messages, _ = backend.calls[0]
    assert messages[1]["content"] == format_user_message("時事台", "屌，巴士又加價 <b>&amp;", "又加價\n冇撚用嘅政府")
    assert "撚" not in reply.text and "屌" not in reply.text


async def test_private_chat_streams_through_native_drafts_then_sends_the_final(api, lihkg, masker):
    gated = GatedBackend(["第一句。第二句。第三句。"], chunk=1)
    ann = api.user(1, "Ann")
    async with running_bot(api, make_service(gated, lihkg, masker)) as bot:
        message = api.send(api.private_chat(ann), ann, LINK)
        await api.wait_for(lambda: gated.started, what="generation to start")
        await api.wait_for(lambda: api.calls_to("sendChatAction"), what="typing")
        gated.gate.set()
        reply = await bot.answer(message)

    assert api.drafts, "drafts stream the text in private chats"
    assert all(d["draft_id"] == message["message_id"] and d["text"].endswith(STREAMING_MARK) for d in api.drafts)
    assert reply.text.endswith("第一句。第二句。第三句。")
    assert reply.versions == [reply.text]  # drafts, then one real message: no edits
    typing = api.calls_to("sendChatAction")[0].params
    assert typing["action"] == "typing" and typing["chat_id"] == ann.id


async def test_group_mention_streams_by_editing_one_message(api, lihkg, masker):
    gated = GatedBackend(["一二三四五六七八九十"], chunk=2)
    ann = api.user(1, "Ann")
    group = api.group(-1001, "吹水群")
    async with running_bot(api, make_service(gated, lihkg, masker)) as bot:
        message = api.send(group, ann, f"@{api.bot.username} 呢個點睇 {LINK}")
        await api.wait_for(lambda: gated.started)
        gated.gate.set()
        reply = await bot.answer(message)

    assert not api.drafts
    assert reply.text.endswith("一二三四五六七八九十")
    assert len(reply.versions) >= 1 and not reply.versions[-1].endswith(STREAMING_MARK)
    assert api.max_in_flight <= 1


async def test_group_link_without_mention_is_left_alone_under_privacy_mode(api, service, backend):
    ann = api.user(1, "Ann")
    group = api.group(-1001)
    async with running_bot(api, service) as bot:
        ignored = api.send(group, ann, f"大家睇下 {LINK}")
        probe = api.send(group, ann, "/help")
        await bot.answer(probe)

    assert api.replies_to(group.id, ignored["message_id"]) == []
    assert backend.calls == []


async def test_group_link_is_answered_when_the_bot_reads_all_messages(service):
    from tests.bots.harness import TOKEN

    with FakeBotApi(token=TOKEN, read_all_group_messages=True) as api:
        ann = api.user(1, "Ann")
        group = api.group(-1001)
        async with running_bot(api, service) as bot:
            message = api.send(group, ann, f"大家睇下 {LINK}")
            reply = await bot.answer(message)
    assert reply.text.endswith(SHOWN_REPLY)


async def test_reply_to_the_bot_answers_the_link_or_the_same_thread_again(api, service, backend):
    ann = api.user(1, "Ann")
    group = api.group(-1001)
    async with running_bot(api, service) as bot:
        first = await bot.answer(api.send(group, ann, f"/lihkg {LINK}"))
        with_link = api.send(group, ann, "呢個又點 https://lih.kg/100", reply_to=first.message_id)
        second = await bot.answer(with_link)
        again = api.send(group, ann, "再嚟", reply_to=first.message_id)
        third = await bot.answer(again)

    assert second.text.startswith("【吹水台】今晚食咩好")
    assert third.text.startswith(f"【時事台】{SHOWN_TITLE}")
    assert len(backend.calls) == 3


@pytest.mark.parametrize("command", ["/lihkg {link}", "/lihkg@lilm_test_bot {link}"])
async def test_lihkg_command_in_a_group(api, service, command):
    ann = api.user(1, "Ann")
    group = api.group(-1001)
    async with running_bot(api, service) as bot:
        reply = await bot.answer(api.send(group, ann, command.format(link="https://lih.kg/3699748")))
    assert reply.text == f"【時事台】{SHOWN_TITLE}\n\n{SHOWN_REPLY}"


async def test_lihkg_command_on_a_message_with_a_link_and_without_any(api, service):
    ann, bob = api.user(1, "Ann"), api.user(2, "Bob")
    group = api.group(-1001)
    async with running_bot(api, service) as bot:
        shared = api.send(group, bob, "好嘢 https://lih.kg/200")
        on_reply = await bot.answer(api.send(group, ann, "/lihkg", reply_to=shared["message_id"]))
        bare = await bot.answer(api.send(group, ann, "/lihkg"))
    assert on_reply.text.startswith("【體育台】有冇人睇波")
    assert bare.text == NO_LINK_IN_COMMAND


async def test_forum_topic_gets_every_call_in_the_same_topic(api, lihkg, masker):
    gated = GatedBackend(["喺呢個 topic 答你"], chunk=2)
    ann = api.user(1, "Ann")
    forum = api.group(-1002, "論壇", forum=True)
    async with running_bot(api, make_service(gated, lihkg, masker)) as bot:
        message = api.send(forum, ann, f"/lihkg {LINK}", topic=55)
        await api.wait_for(lambda: api.calls_to("sendChatAction"))
        gated.gate.set()
        reply = await bot.answer(message)
        help_reply = await bot.answer(api.send(forum, ann, "/help", topic=55))

    assert reply.thread_id == 55 and help_reply.thread_id == 55
    sends = api.calls_to("sendMessage") + api.calls_to("sendChatAction")
    assert sends and all(call.params.get("message_thread_id") == 55 for call in sends)


async def test_long_reply_is_split_on_boundaries_within_4096_utf16_units(api, lihkg, masker):
    paragraph = "今日好熱🤡，熱到溶化。" * 40  # 440 characters, 480 UTF-16 units
    long_reply = "\n\n".join([paragraph] * 20)
    ann = api.user(1, "Ann")
    async with running_bot(api, make_service(ScriptedBackend([long_reply], chunk=400), lihkg, masker)) as bot:
        message = api.send(api.private_chat(ann), ann, LINK)
        await bot.answer(message)
        await bot.settled()

    sent = api.messages(ann.id)
    assert len(sent) >= 3
    assert all(utf16_len(m.text) <= 4096 for m in sent)
    assert all(m.text.endswith("。") for m in sent)  # cut at paragraph ends, not mid-sentence
    body = "\n\n".join(m.text for m in sent)
    assert body.count("今日好熱🤡，熱到溶化。") == 40 * 20
    assert sent[0].reply_to == message["message_id"]
    assert all(c.status == 200 for c in api.calls_to("sendMessage"))


async def test_html_in_thread_and_reply_shows_literally(api, lihkg, masker):
    tricky = "<script>alert(1)</script> & <b>唔係粗體</b> &amp; 1 < 2 > 0"
    ann = api.user(1, "Ann")
    async with running_bot(api, make_service(ScriptedBackend([tricky]), lihkg, masker)) as bot:
        reply = await bot.answer(api.send(api.private_chat(ann), ann, LINK))
    assert reply.text.endswith(tricky)
    assert sorted(e.type for e in reply.entities) == ["bold", "bold", "text_link"]  # only ours


async def test_link_preview_can_point_at_the_thread(api, service):
    ann = api.user(1, "Ann")
    async with running_bot(api, service, env={"TELEGRAM_LINK_PREVIEW": "thread"}) as bot:
        reply = await bot.answer(api.send(api.private_chat(ann), ann, "https://lih.kg/3699748"))
    assert reply.params["link_preview_options"]["url"] == "https://lihkg.com/thread/3699748/page/1"


async def test_hidden_link_targets_and_captions_count(api, service):
    ann = api.user(1, "Ann")
    chat = api.private_chat(ann)
    async with running_bot(api, service) as bot:
        hidden_target = [{"type": "text_link", "offset": 0, "length": 2, "url": "https://lih.kg/100"}]
        first = await bot.answer(api.send(chat, ann, "呢個", entities=hidden_target))
        second = await bot.answer(api.send(chat, ann, "相片 https://lih.kg/200", caption=True))
    assert first.text.startswith("【吹水台】今晚食咩好")
    assert second.text.startswith("【體育台】有冇人睇波")


async def test_only_the_first_of_several_links_is_answered_and_the_user_is_told(api, service, backend):
    ann = api.user(1, "Ann")
    async with running_bot(api, service) as bot:
        reply = await bot.answer(api.send(api.private_chat(ann), ann, f"{LINK} 同 https://lih.kg/100"))
    assert "一次只答第一條連結" in reply.text
    assert len(backend.calls) == 1


@pytest.mark.parametrize(
    "text",
    ["你好", "https://example.com/thread/3699748/page/1", "https://lihkg.com.evil.com/thread/1", "lihkg 3699748", "\u202e\u0000🤡" * 50],
)
async def test_private_messages_without_a_lihkg_link_get_a_hint(api, service, backend, text):
    ann = api.user(1, "Ann")
    async with running_bot(api, service) as bot:
        reply = await bot.answer(api.send(api.private_chat(ann), ann, text))
    assert reply.text == LinkError.user_message
    assert backend.calls == []


async def test_drafts_fall_back_to_edits_when_the_bot_api_lacks_them(api, lihkg, masker):
    api.remove_method("sendMessageDraft")
    gated = GatedBackend(["慢慢講，一路講"], chunk=1)
    ann = api.user(1, "Ann")
    async with running_bot(api, make_service(gated, lihkg, masker)) as bot:
        message = api.send(api.private_chat(ann), ann, LINK)
        await api.wait_for(lambda: gated.started)
        gated.gate.set()
        reply = await bot.answer(message)
        assert bot.state.drafts is False  # later requests go straight to edits

    assert reply.text.endswith("慢慢講，一路講")


async def test_generation_does_not_hold_up_other_chats(api, lihkg, masker):
    gated = GatedBackend(["等陣先"], chunk=1)
    ann, bob = api.user(1, "Ann"), api.user(2, "Bob")
    async with running_bot(api, make_service(gated, lihkg, masker)) as bot:
        waiting = api.send(api.private_chat(ann), ann, LINK)
        await api.wait_for(lambda: gated.started)
        start = api.send(api.private_chat(bob), bob, "/start")
        help_reply = await api.wait_for(lambda: api.replies_to(bob.id, start["message_id"]), what="help")
        assert EXAMPLE_LINK in help_reply[0].text
        assert api.replies_to(ann.id, waiting["message_id"]) == []  # still generating
        gated.gate.set()
        await bot.answer(waiting)


async def test_start_and_help_are_cantonese_with_an_example_link(api, service):
    ann = api.user(1, "Ann")
    async with running_bot(api, service) as bot:
        start = await bot.answer(api.send(api.private_chat(ann), ann, "/start"))
        group_help = await bot.answer(api.send(api.group(-1001), ann, "/help@lilm_test_bot"))
    assert EXAMPLE_LINK in start.text and "/settings" in start.text and "/cancel" in start.text
    assert "連結" in start.text and "@我" in group_help.text
    assert start.params["link_preview_options"] == {"is_disabled": True}


async def test_the_command_list_is_published_on_startup(api, service):
    async with running_bot(api, service):
        pass
    assert [c["command"] for c in api.commands] == ["lihkg", "help", "settings", "cancel", "start"]
    assert all(c["description"] for c in api.commands)


async def test_shutdown_ends_open_requests_with_a_line(api, lihkg, masker):
    gated = GatedBackend(["永遠唔會講完"])
    ann = api.user(1, "Ann")
    async with running_bot(api, make_service(gated, lihkg, masker)) as bot:
        message = api.send(api.private_chat(ann), ann, LINK)
        await api.wait_for(lambda: gated.started)
        state = bot.state
    assert gated.finished == 1
    assert [m.text for m in api.replies_to(ann.id, message["message_id"])] == ["bot 重新啟動緊，遲啲再試下。"]
    assert state.queue.running == 0 and not state.tasks
    await asyncio.sleep(0)


async def test_a_quick_reply_in_a_group_arrives_whole_without_edits(api, service):
    ann = api.user(1, "Ann")
    group = api.group(-1001)
    async with running_bot(api, service, env={"TELEGRAM_STREAM_HOLD": "1"}) as bot:  # the virtual clock stands still
        reply = await bot.answer(api.send(group, ann, f"/lihkg {LINK}"))
    assert reply.text.endswith(SHOWN_REPLY) and reply.versions == [reply.text]
    assert api.calls_to("editMessageText") == []

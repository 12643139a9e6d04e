"""Access and fairness through the real bot: allow-lists, rate limits, the queue, /cancel."""

from bots.access import AlreadyQueued, QueueFull
from bots.chat_text import CANCELLED, NOTHING_TO_CANCEL, queue_position
from tests.bots.conftest import SHOWN_REPLY, make_service
from tests.bots.harness import GatedBackend, running_bot

LINK = "https://lih.kg/3699748"


async def test_users_off_the_allow_list_are_refused_with_their_id(api, service, backend, threads):
    ann, eve = api.user(1, "Ann"), api.user(666, "Eve")
    async with running_bot(api, service, env={"TELEGRAM_ALLOWED_USERS": "1"}) as bot:
        refused = await bot.answer(api.send(api.private_chat(eve), eve, LINK))
        allowed = await bot.answer(api.send(api.private_chat(ann), ann, LINK))
    assert "未開放" in refused.text and "666" in refused.text
    assert allowed.text.endswith(SHOWN_REPLY)
    assert len(backend.calls) == 1 and len(threads.requests) == 1  # nothing fetched for Eve


async def test_chat_allow_list_admits_listed_groups_and_admins_anywhere(api, service, backend):
    ann, boss = api.user(1, "Ann"), api.user(9, "Boss")
    listed, other = api.group(-1001), api.group(-1002)
    env = {"TELEGRAM_ALLOWED_CHATS": "-1001", "TELEGRAM_ADMIN_IDS": "9"}
    async with running_bot(api, service, env=env) as bot:
        in_listed = await bot.answer(api.send(listed, ann, f"/lihkg {LINK}"))
        in_other = await bot.answer(api.send(other, ann, f"/lihkg {LINK}"))
        by_admin = await bot.answer(api.send(other, boss, f"/lihkg {LINK}"))
    assert in_listed.text.endswith(SHOWN_REPLY)
    assert "未開放" in in_other.text
    assert by_admin.text.endswith(SHOWN_REPLY)


async def test_unaddressed_links_from_strangers_get_no_answer_at_all(service):
    from tests.bots.harness import TOKEN
    from tests.fakes.telegram_api import FakeBotApi

    with FakeBotApi(token=TOKEN, read_all_group_messages=True) as api:
        eve = api.user(666, "Eve")
        group = api.group(-1001)
        async with running_bot(api, service, env={"TELEGRAM_ALLOWED_USERS": "1"}) as bot:
            ignored = api.send(group, eve, f"睇下 {LINK}")
            await bot.answer(api.send(group, eve, "/help"))
        assert api.replies_to(group.id, ignored["message_id"]) == []


async def test_rate_limit_refuses_then_recovers_after_the_window(api, service, backend):
    ann = api.user(1, "Ann")
    chat = api.private_chat(ann)
    env = {"TELEGRAM_RATE_LIMIT": "2", "TELEGRAM_RATE_WINDOW": "60"}
    async with running_bot(api, service, env=env) as bot:
        for _ in range(2):
            assert (await bot.answer(api.send(chat, ann, LINK))).text.endswith(SHOWN_REPLY)
        limited = await bot.answer(api.send(chat, ann, LINK))
        bot.time.advance(61)
        again = await bot.answer(api.send(chat, ann, LINK))
    assert "太密" in limited.text and "秒" in limited.text
    assert again.text.endswith(SHOWN_REPLY)
    assert len(backend.calls) == 3


async def test_admins_are_not_rate_limited(api, service):
    boss = api.user(9, "Boss")
    chat = api.private_chat(boss)
    async with running_bot(api, service, env={"TELEGRAM_RATE_LIMIT": "1", "TELEGRAM_ADMIN_IDS": "9"}) as bot:
        for _ in range(3):
            assert (await bot.answer(api.send(chat, boss, LINK))).text.endswith(SHOWN_REPLY)


async def test_queue_positions_one_request_per_user_and_a_full_queue(api, lihkg, masker):
    gated = GatedBackend(["輪到你"], chunk=2)
    ann, bob, cat = api.user(1, "Ann"), api.user(2, "Bob"), api.user(3, "Cat")
    env = {"TELEGRAM_WORKERS": "1", "TELEGRAM_QUEUE_SIZE": "1"}
    async with running_bot(api, make_service(gated, lihkg, masker), env=env) as bot:
        running = api.send(api.private_chat(ann), ann, LINK)
        await api.wait_for(lambda: gated.started)
        waiting = api.send(api.private_chat(bob), bob, LINK)
        await api.wait_for(lambda: api.replies_to(bob.id, waiting["message_id"]), what="queue notice")
        assert api.replies_to(bob.id, waiting["message_id"])[0].text == queue_position(1)
        full = api.send(api.private_chat(cat), cat, LINK)
        second = api.send(api.private_chat(ann), ann, "https://lih.kg/100")
        await api.wait_for(lambda: api.replies_to(cat.id, full["message_id"]) and api.replies_to(ann.id, second["message_id"]))
        gated.gate.set()
        first_reply, queued_reply = await bot.answer(running), await bot.answer(waiting)

    assert api.replies_to(cat.id, full["message_id"])[0].text == QueueFull.user_message
    assert api.replies_to(ann.id, second["message_id"])[0].text == AlreadyQueued.user_message
    assert first_reply.text.endswith("輪到你")
    assert queued_reply.versions[0] == queue_position(1) and queued_reply.text.endswith("輪到你")  # the notice became the reply
    assert gated.started == 2


async def test_cancel_stops_the_users_own_generation(api, lihkg, masker):
    gated = GatedBackend(["唔會講完"])
    ann, bob = api.user(1, "Ann"), api.user(2, "Bob")
    group = api.group(-1001)
    async with running_bot(api, make_service(gated, lihkg, masker)) as bot:
        message = api.send(group, ann, f"/lihkg {LINK}")
        await api.wait_for(lambda: gated.started)
        not_yours = await bot.first_reply(api.send(group, bob, "/cancel"))
        api.send(group, ann, "/cancel")
        cancelled = await bot.answer(message)
        assert gated.finished == 1  # the model stopped
        gated.gate.set()
        after = await bot.answer(api.send(group, ann, f"/lihkg {LINK}"))

    assert not_yours.text == NOTHING_TO_CANCEL
    assert cancelled.text == CANCELLED
    assert after.text.endswith("唔會講完")


async def test_cancel_while_waiting_frees_the_place(api, lihkg, masker):
    gated = GatedBackend(["好"])
    ann, bob = api.user(1, "Ann"), api.user(2, "Bob")
    async with running_bot(api, make_service(gated, lihkg, masker), env={"TELEGRAM_WORKERS": "1"}) as bot:
        api.send(api.private_chat(ann), ann, LINK)
        await api.wait_for(lambda: gated.started)
        waiting = api.send(api.private_chat(bob), bob, LINK)
        await api.wait_for(lambda: bot.state.queue.waiting == 1)
        api.send(api.private_chat(bob), bob, "/cancel")
        await api.wait_for(lambda: bot.state.queue.waiting == 0)
        gated.gate.set()
        reply = await bot.answer(waiting)
    assert reply.text == CANCELLED and reply.versions[0] == queue_position(1)
    assert gated.started == 1

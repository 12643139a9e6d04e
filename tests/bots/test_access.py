"""Allow-lists, the per-user rate limit and the fair queue, without any platform."""

import asyncio

import pytest

from bots.access import (
    AccessDenied,
    AccessPolicy,
    AlreadyQueued,
    Fairness,
    QueueFull,
    RateLimited,
    RateLimiter,
    RequestQueue,
    parse_ids,
    place_notices,
    reply_deadline,
)
from core.errors import ConfigError


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    "policy, user, chat, private, allowed",
    [
        (AccessPolicy(), 5, -100, False, True),
        (AccessPolicy(users=frozenset({1})), 1, -100, False, True),
        (AccessPolicy(users=frozenset({1})), 2, 2, True, False),
        (AccessPolicy(chats=frozenset({-100})), 2, -100, False, True),
        (AccessPolicy(chats=frozenset({-100})), 2, 2, True, False),
        (AccessPolicy(chats=frozenset({-100})), 2, -200, False, False),
        (AccessPolicy(users=frozenset({1}), chats=frozenset({-100})), 1, 1, True, True),
        (AccessPolicy(users=frozenset({1}), chats=frozenset({-100})), 1, -200, False, False),
        (AccessPolicy(users=frozenset({1}), admins=frozenset({9})), 9, -200, False, True),
    ],
)
def test_allow_lists(policy, user, chat, private, allowed):
    assert policy.allows(user, chat, private=private) is allowed


def test_bad_ids_name_the_setting():
    with pytest.raises(ConfigError, match="TELEGRAM_ADMIN_IDS.*'x'"):
        parse_ids("1,x", "TELEGRAM_ADMIN_IDS")
    assert parse_ids("", "X") == frozenset()


def test_rate_limit_is_a_sliding_window_per_user():
    clock = Clock()
    limiter = RateLimiter(2, 60, clock=clock)
    for _ in range(2):
        limiter.check("ann")
        limiter.record("ann")
    with pytest.raises(RateLimited) as refused:
        limiter.check("ann")
    assert refused.value.retry_in == 60 and "60 秒" in refused.value.user_message
    limiter.check("bob")  # others are not affected
    clock.now = 30
    assert limiter.retry_in("ann") == 30
    clock.now = 60.5
    assert limiter.retry_in("ann") == 0


def test_rate_limiter_forgets_quiet_users():
    clock = Clock()
    limiter = RateLimiter(1, 10, clock=clock)
    for user in range(1000):
        limiter.record(user)
    clock.now = 100
    limiter.retry_in("someone")
    assert len(limiter) == 0


def test_zero_limit_means_no_limit():
    limiter = RateLimiter(0, 60)
    for _ in range(100):
        limiter.check("ann")
        limiter.record("ann")


async def test_queue_runs_workers_at_once_and_the_rest_in_order():
    queue = RequestQueue(workers=2, max_waiting=3)
    tickets = [queue.join(user) for user in "abcde"]
    assert [t.running for t in tickets] == [True, True, False, False, False]
    assert [t.position for t in tickets] == [0, 0, 1, 2, 3]
    with pytest.raises(QueueFull):
        queue.join("f")
    with pytest.raises(AlreadyQueued):
        queue.join("c")

    moves = []
    waiter = asyncio.create_task(tickets[4].wait_turn(on_move=moves.append))
    for done in (tickets[0], tickets[2], tickets[1]):  # a leaves, c runs and leaves, b leaves
        await asyncio.sleep(0)
        done.release()
    await waiter
    assert moves == [2, 1]  # e moved up twice, then got a slot
    assert tickets[3].running and tickets[4].running
    assert queue.running == 2 and queue.waiting == 0


async def test_cancel_wakes_a_waiting_request_and_frees_its_place():
    queue = RequestQueue(workers=1, max_waiting=5)
    first, second, third = queue.join("a"), queue.join("b"), queue.join("c")
    task = asyncio.create_task(second.wait_turn())
    second.attach(task)
    await asyncio.sleep(0)
    assert queue.cancel("b", "bye") is True
    with pytest.raises(asyncio.CancelledError):
        await task
    assert second.cancel_reason == "bye" and third.position == 1
    assert queue.cancel("b", "again") is False
    first.release()
    assert third.running and queue.ticket_of("b") is None


async def test_cancel_all_and_release_are_idempotent():
    queue = RequestQueue(workers=1, max_waiting=5)
    tickets = [queue.join(user) for user in range(4)]
    assert queue.cancel_all("shutdown") == 4
    for ticket in tickets:
        ticket.release()
    assert queue.running == queue.waiting == 0 and queue.join(0).running


async def test_ticket_as_context_manager():
    queue = RequestQueue(workers=1, max_waiting=1)
    async with queue.join("a") as ticket:
        assert ticket.running
    assert queue.running == 0


def fairness(clock, *, admins=frozenset(), workers=1) -> Fairness:
    return Fairness(
        policy=AccessPolicy(admins=admins),
        limiter=RateLimiter(2, 60.0, clock=clock),
        notices=RateLimiter(2, 10.0, clock=clock),
        queue=RequestQueue(workers=workers, max_waiting=1),
    )


def test_admit_counts_only_admitted_requests_and_admins_pass_the_limit():
    gate = fairness(Clock(), admins=frozenset({9}), workers=2)
    first = gate.admit(2)
    with pytest.raises(AlreadyQueued):  # refused by the queue: the limiter counts nothing
        gate.admit(2)
    first.release()
    gate.admit(2).release()  # the second of two allowed
    with pytest.raises(RateLimited):
        gate.admit(2)
    for _ in range(3):
        gate.admit(9).release()
    assert len(gate.limiter) == 1  # the admin's requests are not counted


def test_may_notify_lets_two_lines_per_user_through_each_window():
    clock = Clock()
    gate = fairness(clock)
    assert [gate.may_notify(1) for _ in range(3)] == [True, True, False]
    assert gate.may_notify(2)
    clock.now = 10.0
    assert gate.may_notify(1)


async def test_place_notices_tell_the_place_now_and_the_moves_worth_telling():
    queue = RequestQueue(workers=1, max_waiting=10)
    tickets = [queue.join(user) for user in range(8)]
    told: list[int] = []
    last = tickets[-1]
    waiter = asyncio.create_task(last.wait_turn(on_move=place_notices(last.position, told.append)))
    for ticket in tickets[:-1]:
        await asyncio.sleep(0)
        ticket.release()
    await waiter
    assert told == [7, 3, 2, 1]  # 6, 5 and 4 are not worth an edit
    assert place_notices(0, told.append) is not None and told == [7, 3, 2, 1]  # running: nothing to tell


def test_reply_deadline_gives_the_model_time_to_time_out_first():
    assert reply_deadline(10.0) == 20.0
    assert reply_deadline(600.0) == 630.0
    assert reply_deadline(600.0, max_grace=5.0) == 605.0
    assert reply_deadline(0.0) is None


def test_the_refusal_line_carries_the_user_id_for_the_admin():
    line = AccessDenied.line_for(123456)
    assert line.startswith(AccessDenied.user_message) and "123456" in line

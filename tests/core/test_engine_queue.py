"""The admission queue and the queue-facing error messages (pure Python, no model)."""

import threading

import pytest

from core.engine_queue import AdmissionQueue
from core.errors import EngineBusy, ModelError, queue_message


def test_full_queue_refuses_at_once_with_a_typed_cantonese_error():
    queue = AdmissionQueue(max_waiting=2)
    queue.push("a", size=1)
    queue.push("b", size=1)
    with pytest.raises(EngineBusy) as refused:
        queue.push("c", size=1)
    assert isinstance(refused.value, ModelError)  # bots that catch ModelError still answer
    assert refused.value.waiting == 2
    assert "太多人用緊" in refused.value.user_message and "2" in refused.value.user_message
    assert len(queue) == 2


def test_zero_capacity_refuses_everything():
    with pytest.raises(EngineBusy):
        AdmissionQueue(max_waiting=0).push("a", size=1)


def test_jobs_are_admitted_whole_and_in_order():
    queue = AdmissionQueue(max_waiting=5)
    for name, size in [("a", 2), ("b", 3), ("c", 1)]:
        queue.push(name, size=size)
    assert queue.pop_fitting(free_slots=4) == ["a"]  # "b" needs 3 of the 2 left; "c" may not overtake
    assert queue.pop_fitting(free_slots=4) == ["b", "c"]
    assert queue.pop_fitting(free_slots=4) == []


def test_removing_a_waiting_job_moves_the_ones_behind_it_up():
    queue = AdmissionQueue(max_waiting=5)
    for name in "abc":
        queue.push(name, size=1)
    assert queue.moved() == [("a", 0), ("b", 1), ("c", 2)]
    assert queue.remove("b") is True
    assert queue.remove("b") is False
    assert queue.moved() == [("c", 1)]
    assert queue.drain() == ["a", "c"] and len(queue) == 0


def test_push_returns_the_number_of_jobs_ahead():
    queue = AdmissionQueue(max_waiting=3)
    assert [queue.push(name, size=1) for name in "xyz"] == [0, 1, 2]


def test_concurrent_pushes_never_exceed_the_bound():
    queue = AdmissionQueue(max_waiting=50)
    refused = []

    def push_many(prefix):
        for i in range(40):
            try:
                queue.push(f"{prefix}{i}", size=1)
            except EngineBusy:
                refused.append(1)

    threads = [threading.Thread(target=push_many, args=(p,)) for p in "abcd"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(queue) == 50 and len(refused) == 4 * 40 - 50


@pytest.mark.parametrize("ahead, expected", [(0, "排緊隊，下一個就到你。"), (4, "排緊隊，前面仲有 4 個。")])
def test_queue_message_for_bots(ahead, expected):
    assert queue_message(ahead) == expected

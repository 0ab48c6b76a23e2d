"""Task policies, the record's wire shapes, and the in-memory store (TTL, bounds, copies)."""

from __future__ import annotations

import re

import pytest

from mcplane import ConfigError
from mcplane.tasks import InMemoryTaskStore, TaskCapacityError, TaskPolicy, TaskRecord, task_policy

ISO = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


class Clock:
    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("task", "after", "expected"),
    [
        (None, 0, None),
        (False, 0, None),
        ("forbidden", 0, None),
        (True, 0, TaskPolicy("optional", 0.0)),
        ("optional", "0", TaskPolicy("optional", 0.0)),
        ("required", None, TaskPolicy("required", None)),
        (True, "250ms", TaskPolicy("optional", 0.25)),
    ],
)
def test_task_policy_parses_the_decorator_keywords(task: object, after: object, expected: TaskPolicy | None) -> None:
    assert task_policy(task, after, tool="t") == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(("task", "after"), [("sometimes", 0), (True, "soon"), (True, -1)])
def test_task_policy_rejects_nonsense(task: object, after: object) -> None:
    with pytest.raises(ConfigError):
        task_policy(task, after, tool="t")  # type: ignore[arg-type]


def test_create_result_is_flat_and_carries_no_payload() -> None:
    record = TaskRecord(task_id="t1", tool="x", result={"content": []}, error={"code": 1, "message": "m"})
    body = record.create_result()
    assert body["resultType"] == "task"
    assert body["taskId"] == "t1"
    assert body["status"] == "working"
    assert ISO.match(body["createdAt"])
    assert ISO.match(body["lastUpdatedAt"])
    assert body["ttlMs"] == 3_600_000
    assert body["pollIntervalMs"] == 1000
    for absent in ("result", "error", "inputRequests", "requestState", "task", "ttl", "pollInterval"):
        assert absent not in body


def test_detailed_inlines_what_the_status_carries() -> None:
    record = TaskRecord(task_id="t1", tool="x")
    record.input_requests = {"k": {"method": "roots/list"}}
    assert "inputRequests" not in record.detailed()
    record.touch("input_required")
    assert record.detailed()["inputRequests"] == {"k": {"method": "roots/list"}}
    record.result = {"content": [{"type": "text", "text": "ok"}]}
    record.touch("completed")
    assert record.detailed()["result"]["content"][0]["text"] == "ok"
    assert "inputRequests" not in record.detailed()
    record.error = {"code": -32603, "message": "boom"}
    record.touch("failed")
    detailed = record.detailed()
    assert detailed["error"] == {"code": -32603, "message": "boom"}
    assert "result" not in detailed


def test_record_round_trips_through_a_dict() -> None:
    record = TaskRecord(task_id="t1", tool="x", owner="alice", status_message="half")
    assert TaskRecord.from_dict(record.to_dict()) == record


async def test_store_get_returns_copies() -> None:
    store = InMemoryTaskStore()
    await store.create(TaskRecord(task_id="t1", tool="x"))
    copy = await store.get("t1")
    assert copy is not None
    copy.touch("completed")
    copy.input_requests["k"] = {}
    fresh = await store.get("t1")
    assert fresh is not None
    assert fresh.status == "working"
    assert fresh.input_requests == {}
    await store.save(copy)
    saved = await store.get("t1")
    assert saved is not None
    assert saved.status == "completed"


async def test_store_forgets_expired_tasks() -> None:
    clock = Clock()
    store = InMemoryTaskStore(clock=clock)
    await store.create(TaskRecord(task_id="short", tool="x", created_at=clock.now, ttl_ms=1_000))
    await store.create(TaskRecord(task_id="forever", tool="x", created_at=clock.now, ttl_ms=None))
    clock.now += 0.999
    assert await store.get("short") is not None
    clock.now += 0.002
    assert await store.get("short") is None
    assert await store.get("forever") is not None
    record = TaskRecord(task_id="short", tool="x", created_at=clock.now - 2, ttl_ms=1_000)
    await store.save(record)  # saving an expired task does not revive it
    assert await store.get("short") is None


async def test_store_is_bounded_evicting_expired_then_finished_tasks() -> None:
    clock = Clock()
    store = InMemoryTaskStore(max_tasks=2, clock=clock)
    await store.create(TaskRecord(task_id="a", tool="x", created_at=clock.now, ttl_ms=1_000))
    await store.create(TaskRecord(task_id="b", tool="x", created_at=clock.now))
    clock.now += 2
    await store.create(TaskRecord(task_id="c", tool="x", created_at=clock.now))  # "a" expired: room
    assert len(store) == 2
    with pytest.raises(TaskCapacityError):
        await store.create(TaskRecord(task_id="d", tool="x", created_at=clock.now))  # both live
    done = await store.get("b")
    assert done is not None
    done.touch("completed")
    await store.save(done)
    await store.create(TaskRecord(task_id="d", tool="x", created_at=clock.now))  # "b" finished: evicted
    assert await store.get("b") is None
    assert await store.get("c") is not None
    assert await store.get("d") is not None


async def test_store_delete_and_unknown_ids() -> None:
    store = InMemoryTaskStore()
    await store.create(TaskRecord(task_id="t1", tool="x"))
    await store.delete("t1")
    await store.delete("never-existed")
    assert await store.get("t1") is None
    await store.save(TaskRecord(task_id="t1", tool="x"))  # saving a deleted task does nothing
    assert await store.get("t1") is None
    with pytest.raises(ValueError, match="max_tasks"):
        InMemoryTaskStore(max_tasks=0)

"""Upstream's execution semantics the engine now follows (issue: the behaviours that differed
without a word): task-level retry, non-retryable dead letters, message retry times, one
``agent_message_processed`` row per message, upstream's output keys, the claim event, and the
mode of a quorum join. In-process, over a MemoryStore, through the message log."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timezone

from orloj_ray.engine.controller import Controller
from orloj_ray.engine.mailbox import Mailbox
from orloj_ray.engine.runtime import LocalAgentRuntime
from orloj_ray.messaging import MemoryLog
from orloj_ray.store import MemoryStore
from tests_support import load

TERMINAL = ("Succeeded", "Failed", "DeadLetter")


class Failing(LocalAgentRuntime):
    """Every turn fails with ``error`` (code, retryable)."""

    def __init__(self, code: str = "agent_timeout", error: str = "agent timed out after 1s", retryable: bool = True):
        super().__init__()
        self.code, self.error, self.retryable, self.calls = code, error, retryable, 0

    async def run_turn(self, request):
        self.calls += 1
        result = await super().run_turn(request)
        result.error_code, result.error, result.retryable = self.code, self.error, self.retryable
        return result


async def run(store, runtime, name: str, *, timeout: float = 20.0, watch=None) -> dict:
    controller = Controller(store, runtime, worker="semantics#1", mailbox=Mailbox(MemoryLog(ack_wait_s=5.0), store))
    loop = asyncio.create_task(controller.run())
    try:
        async with asyncio.timeout(timeout):
            while (task := await store.get("Task", "default", name))["status"].get("phase") not in TERMINAL:
                if watch is not None:
                    watch(task)
                await asyncio.sleep(0.02)
        return task
    finally:
        controller.stop()
        await loop


async def pipeline(**spec) -> MemoryStore:
    store = MemoryStore()
    await load(store, "pipeline")
    task = await store.get("Task", "default", "bp-pipeline-task")
    task["spec"].update(spec)
    await store.update(task, "*")
    return store


async def test_a_retryable_failure_schedules_the_tasks_next_attempt_then_dead_letters():
    """upstream F054: a timing-out agent with ``retry {3, 1s}`` -> Pending with ``nextAttemptAt``
    about a second later and a ``retry_scheduled`` row, ..., then DeadLetter after attempt 3."""
    store = await pipeline(retry={"max_attempts": 3, "backoff": "1s"}, message_retry={"max_attempts": 1})
    seen: list[dict] = []

    def watch(task):
        st = task["status"]
        if st.get("phase") == "Pending" and st.get("nextAttemptAt") and not any(
                s["attempts"] == st["attempts"] for s in seen):
            seen.append({"attempts": st["attempts"], "at": time.time(), **st})

    started = time.monotonic()
    task = await run(store, Failing(), "bp-pipeline-task", watch=watch)
    status = task["status"]
    assert status["phase"] == "DeadLetter" and status["attempts"] == 3 and status["errorCode"] == "agent_timeout"
    assert [h["type"] for h in status["history"]] == ["claim", "retry_scheduled", "claim", "retry_scheduled", "claim",
                                                       "deadletter"]
    first = seen[0]
    due = datetime.fromisoformat(first["nextAttemptAt"].replace("Z", "+00:00"))
    assert 0.3 < (due - datetime.fromtimestamp(first["at"], timezone.utc)).total_seconds() <= 1.1
    assert first["lastError"].endswith("agent timed out after 1s (retry scheduled in 1s)")
    assert "claimedBy" not in first and "messages" not in first
    assert [s["nextAttemptAt"] > seen[0]["nextAttemptAt"] for s in seen[1:]] == [True]
    assert time.monotonic() - started < 10  # 1 s + 2 s of backoff, claimed when due (not at the next scan)


async def test_a_non_retryable_failure_fails_the_task_at_once_without_a_task_retry():
    store = await pipeline(retry={"max_attempts": 3, "backoff": "1s"})
    task = await run(store, Failing("tool_permission_denied", "denied", retryable=False), "bp-pipeline-task")
    status = task["status"]
    assert status["phase"] == "Failed" and status["attempts"] == 1
    rows = [r["type"] for r in status["trace"]]
    assert rows.index("agent_message_non_retryable") == rows.index("agent_message_deadletter") - 1


async def test_a_configured_non_retryable_error_dead_letters_the_task_with_upstreams_row():
    store = await pipeline(message_retry={"max_attempts": 5, "backoff": "10ms", "non_retryable": ["quota"]},
                           retry={"max_attempts": 1})
    runtime = Failing("model_http_429", "quota exceeded for project", retryable=True)
    task = await run(store, runtime, "bp-pipeline-task")
    status = task["status"]
    assert status["phase"] == "DeadLetter" and runtime.calls == 1
    (message,) = status["messages"]
    assert message["phase"] == "DeadLetter" and message["attempts"] == 1
    rows = [r for r in status["trace"] if r["type"].startswith("agent_message_")]
    assert [r["type"] for r in rows][-2:] == ["agent_message_non_retryable", "agent_message_deadletter"]
    assert rows[-2]["error_code"] == "model_http_429"


async def test_a_message_waiting_for_its_retry_says_when():
    store = await pipeline(message_retry={"max_attempts": 3, "backoff": "2s", "jitter": "none"})
    pending: list[dict] = []

    def watch(task):
        for m in task["status"].get("messages") or []:
            if m.get("phase") == "RetryPending" and not pending:
                pending.append((m, datetime.now(timezone.utc)))

    await run(store, Failing(), "bp-pipeline-task", timeout=30, watch=watch)
    (record, seen_at), = pending
    due = datetime.fromisoformat(record["next_attempt_at"].replace("Z", "+00:00"))
    assert 1.0 < (due - seen_at).total_seconds() <= 2.0  # the 2 s backoff, written with the retry


async def test_every_processed_message_has_its_row_and_the_output_has_upstreams_keys():
    store = await pipeline()
    task = await run(store, LocalAgentRuntime(), "bp-pipeline-task")
    status = task["status"]
    assert status["phase"] == "Succeeded"
    processed = [r["message"] for r in status["trace"] if r["type"] == "agent_message_processed"]
    ids = [m["message_id"] for m in status["messages"]]
    assert processed == [f"message_id={ids[0]} status=forwarded", f"message_id={ids[1]} status=forwarded",
                         f"message_id={ids[2]} status=succeeded"]
    out = status["output"]
    for key in ("runtime.mode", "runtime.entry_agent", "last_agent", "last_event", "last_output",
                "last_duration_ms", "last_tool_calls", "last_steps", "last_estimated_tokens", "last_tokens_used",
                "last_token_usage_source", "tokens_estimated_total", "tokens_used_total", "result", "system"):
        assert out.get(key) not in (None, ""), key
    assert out["runtime.mode"] == "message-driven" and int(out["tokens_estimated_total"]) >= 3 * 121
    assert int(out["last_steps"]) >= 1 and out["last_tool_calls"] == "0"


async def test_the_claim_is_an_event_naming_the_worker():
    store = await pipeline()
    before = await store.last_event_id()
    await run(store, LocalAgentRuntime(), "bp-pipeline-task")
    events = [e for e in await store.events_after(before, limit=10_000) if e.type.startswith("task.")]
    assert [e.type for e in events] == ["task.claimed", "task.succeeded"]
    claimed = events[0].data
    assert claimed["claimedBy"] == claimed["assignedWorker"] == "semantics#1" and claimed["attempts"] == 1
    assert claimed["phase"] == "Running"


async def test_a_quorum_join_records_its_mode():
    store = MemoryStore()
    await load(store, "hierarchical")
    system = await store.get("AgentSystem", "default", "bp-hierarchical-system")
    join_node = next(n for n, e in (system["spec"].get("graph") or {}).items() if (e or {}).get("join"))
    system["spec"]["graph"][join_node]["join"] = {"mode": "quorum", "quorum_count": 1}
    await store.update(system, "*")
    task = await run(store, LocalAgentRuntime(), "bp-hierarchical-task")
    assert task["status"]["phase"] == "Succeeded", task["status"].get("lastError")
    (state,) = task["status"]["join_states"]
    assert state["mode"] == "quorum" and state["quorum_required"] == 1 and state["activated"]


async def test_a_task_created_right_after_the_tool_it_uses_resolves_it():
    """Reported once: a task posted right after its Tool (201) failed "references missing tool".
    The configuration a claimed task resolves includes every write acknowledged before the task
    was created (CachedReads.sync(after=the task's event)); checked here with the store busy."""
    store = MemoryStore()
    await store.create({"apiVersion": "orloj.dev/v1", "kind": "ModelEndpoint",
                        "metadata": {"name": "m", "namespace": "default"},
                        "spec": {"provider": "mock", "default_model": "x"}})
    count = 30
    for i in range(count):
        await store.create({"apiVersion": "orloj.dev/v1", "kind": "Agent", "metadata": {"name": f"a{i}", "namespace": "default"},
                            "spec": {"model_ref": "m", "tools": [f"tool{i}"], "limits": {"max_steps": 1}}})
        await store.create({"apiVersion": "orloj.dev/v1", "kind": "AgentSystem",
                            "metadata": {"name": f"s{i}", "namespace": "default"}, "spec": {"agents": [f"a{i}"]}})
    controller = Controller(store, LocalAgentRuntime(), worker="race#1",
                            mailbox=Mailbox(MemoryLog(ack_wait_s=5.0), store))
    loop = asyncio.create_task(controller.run())
    try:
        await asyncio.sleep(0.2)
        for i in range(count):
            await store.create({"apiVersion": "orloj.dev/v1", "kind": "Tool", "metadata": {"name": f"tool{i}", "namespace": "default"},
                                "spec": {"type": "http", "endpoint": "http://127.0.0.1:9/x"}})
            await store.create({"apiVersion": "orloj.dev/v1", "kind": "Task", "metadata": {"name": f"t{i}", "namespace": "default"},
                                "spec": {"system": f"s{i}"}, "status": {"phase": "Pending"}})
        async with asyncio.timeout(60):
            while True:
                done = [await store.get("Task", "default", f"t{i}") for i in range(count)]
                if all(t["status"].get("phase") in TERMINAL for t in done):
                    break
                await asyncio.sleep(0.05)
    finally:
        controller.stop()
        await loop
    assert not [t["status"].get("lastError") for t in done if "missing tool" in (t["status"].get("lastError") or "")]

"""Retention: finished tasks lose their per-step records after ``task_retention``; the
JetStream stream is bounded by age and bytes. In-process (MemoryStore, a fake clock) and a
real nats-server; no Ray."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import nats
import pytest

from cluster.nats_server import NatsServer
from orloj_ray.config import ConfigError, ServerConfig
from orloj_ray.engine.controller import Controller
from orloj_ray.engine.retention import (
    due_for_pruning, finished_at, prune_finished, pruned_status, select_for_pruning,
)
from orloj_ray.messaging import Envelope, message_id
from orloj_ray.messaging.jetstream import JetStreamLog, JetStreamSettings
from orloj_ray.store import MemoryStore

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=timezone.utc)
WEEK = timedelta(days=7)


def _ts(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _task(name: str, phase: str, ended: datetime | None, *, records: bool = True) -> dict:
    status: dict = {"phase": phase, "attempts": 1, "output": {"final_output": f"out of {name}"}}
    if ended is not None:
        status["completedAt"] = _ts(ended)
    if records:
        status.update(trace=[{"type": "agent_end", "agent": "a"}] * 3,
                      history=[{"timestamp": _ts(ended or NOW), "type": "succeeded", "message": "ok"}],
                      messages=[{"message_id": "m1", "phase": "Succeeded"}],
                      join_states=[{"node": "j", "attempt": 1}])
    return {"apiVersion": "orloj.dev/v1", "kind": "Task", "metadata": {"name": name, "namespace": "default"},
            "spec": {"system": "s"}, "status": status}


# -- the pure decision ----------------------------------------------------------------------


@pytest.mark.parametrize("phase", ["Succeeded", "Failed", "DeadLetter"])
def test_terminal_task_older_than_retention_is_due(phase):
    assert due_for_pruning(_task("t", phase, NOW - WEEK - timedelta(seconds=1)), NOW, WEEK)


@pytest.mark.parametrize("task", [
    _task("young", "Succeeded", NOW - WEEK + timedelta(minutes=1)),
    _task("exactly", "Succeeded", NOW - WEEK),
    _task("running", "Running", NOW - timedelta(days=30)),
    _task("pending", "Pending", None),
    _task("waiting", "WaitingApproval", NOW - timedelta(days=30)),
    _task("already-pruned", "Succeeded", NOW - timedelta(days=30), records=False),
], ids=lambda t: t["metadata"]["name"])
def test_kept(task):
    assert not due_for_pruning(task, NOW, WEEK)


def test_zero_or_negative_retention_keeps_everything():
    old = _task("old", "Failed", NOW - timedelta(days=365))
    assert not due_for_pruning(old, NOW, timedelta(0))
    assert not due_for_pruning(old, NOW, timedelta(seconds=-1))


def test_finish_time_falls_back_to_the_newest_history_entry():
    task = _task("t", "Failed", None)
    task["status"]["history"] = [{"timestamp": _ts(NOW - timedelta(days=9))},
                                 {"timestamp": _ts(NOW - timedelta(days=8))}]
    assert finished_at(task) == NOW - timedelta(days=8)
    assert due_for_pruning(task, NOW, WEEK)
    task["status"]["history"] = [{"timestamp": "not a time"}]
    assert finished_at(task) is None and not due_for_pruning(task, NOW, WEEK)


def test_selection_is_oldest_first_and_bounded():
    tasks = [_task(f"t{i}", "Succeeded", NOW - timedelta(days=8 + i)) for i in range(5)]
    tasks.append(_task("young", "Succeeded", NOW - timedelta(days=1)))
    assert select_for_pruning(tasks, NOW, WEEK, limit=3) == [("default", "t4"), ("default", "t3"), ("default", "t2")]


def test_pruned_status_keeps_the_outcome_and_says_what_went():
    status = _task("t", "Succeeded", NOW - timedelta(days=8))["status"]
    out = pruned_status(status, NOW)
    assert {"trace", "history", "messages", "join_states"}.isdisjoint(out)
    assert out["phase"] == "Succeeded" and out["output"] == {"final_output": "out of t"}
    assert out["completedAt"] == status["completedAt"] and out["attempts"] == 1
    assert out["retention"] == {"prunedAt": "2026-03-10T12:00:00Z",
                                "removed": {"trace": 3, "history": 1, "messages": 1, "join_states": 1}}
    assert "trace" in status  # the input is not modified


# -- against a store ------------------------------------------------------------------------


async def _seed(store: MemoryStore) -> None:
    await store.create(_task("old-ok", "Succeeded", NOW - timedelta(days=10)))
    await store.create(_task("old-failed", "Failed", NOW - timedelta(days=8)))
    await store.create(_task("young", "Succeeded", NOW - timedelta(days=2)))
    await store.create(_task("running", "Running", NOW - timedelta(days=30)))
    other = _task("old-other-ns", "DeadLetter", NOW - timedelta(days=20))
    other["metadata"]["namespace"] = "team-b"
    await store.create(other)


async def test_prune_finished_rewrites_only_the_due_tasks_in_every_namespace():
    store = MemoryStore()
    await _seed(store)
    assert await prune_finished(store, NOW, WEEK) == 3
    for ns, name in (("default", "old-ok"), ("default", "old-failed"), ("team-b", "old-other-ns")):
        status = (await store.get("Task", ns, name))["status"]
        assert "trace" not in status and "messages" not in status and status["retention"]["removed"]["trace"] == 3
    for name in ("young", "running"):
        assert len((await store.get("Task", "default", name))["status"]["trace"]) == 3
    assert await prune_finished(store, NOW, WEEK) == 0  # idempotent
    assert await prune_finished(store, NOW + timedelta(days=6), WEEK) == 1  # "young" is now due


async def test_prune_skips_a_task_retried_meanwhile():
    store = MemoryStore()
    await store.create(_task("t", "Failed", NOW - timedelta(days=10)))

    class Racing:
        """Wraps the store: the task is put back to Pending right after the listing."""

        def __init__(self, inner):
            self.inner = inner

        async def list(self, *a, **kw):
            page = await self.inner.list(*a, **kw)
            await self.inner.update_status("Task", "default", "t", {"phase": "Pending", "trace": [{"x": 1}]}, "*")
            return page

        def __getattr__(self, name):
            return getattr(self.inner, name)

    assert await prune_finished(Racing(store), NOW, WEEK) == 0
    assert (await store.get("Task", "default", "t"))["status"]["trace"] == [{"x": 1}]


async def test_controller_loop_prunes_on_its_clock_and_not_with_zero_retention():
    clock = {"now": NOW}
    store = MemoryStore()
    await _seed(store)
    ctl = Controller(store, runtime=None, worker="w#1", clock=lambda: clock["now"], task_retention=WEEK,
                     retention_scan_s=0.05, resync_s=3600, lease_scan_s=3600)
    run = asyncio.create_task(ctl.run())
    try:
        for _ in range(100):
            if "retention" in (await store.get("Task", "default", "old-ok"))["status"]:
                break
            await asyncio.sleep(0.05)
        assert "retention" in (await store.get("Task", "default", "old-failed"))["status"]
        assert "retention" not in (await store.get("Task", "default", "young"))["status"]
        clock["now"] = NOW + timedelta(days=6)  # the fake clock moves: "young" becomes due
        for _ in range(100):
            if "retention" in (await store.get("Task", "default", "young"))["status"]:
                break
            await asyncio.sleep(0.05)
        assert "retention" in (await store.get("Task", "default", "young"))["status"]
    finally:
        ctl.stop()
        await asyncio.wait_for(run, 10)

    keep = MemoryStore()
    await _seed(keep)
    ctl = Controller(keep, runtime=None, worker="w#2", clock=lambda: NOW, task_retention=timedelta(0),
                     retention_scan_s=0.05, resync_s=3600, lease_scan_s=3600)
    run = asyncio.create_task(ctl.run())
    await asyncio.sleep(0.5)
    ctl.stop()
    await asyncio.wait_for(run, 10)
    assert "trace" in (await keep.get("Task", "default", "old-ok"))["status"]


def test_server_config_task_retention():
    assert ServerConfig().task_retention_delta() == WEEK
    assert ServerConfig.from_env({"ORLOJ_TASK_RETENTION": "36h"}).task_retention_delta() == timedelta(hours=36)
    assert ServerConfig.from_env({"ORLOJ_TASK_RETENTION": "0"}).task_retention_delta() == timedelta(0)
    with pytest.raises(ConfigError, match="ORLOJ_TASK_RETENTION"):
        ServerConfig.from_env({"ORLOJ_TASK_RETENTION": "7 days"})


# -- the JetStream stream -------------------------------------------------------------------


def test_jetstream_max_bytes_must_be_positive_or_unlimited():
    assert JetStreamSettings().max_bytes == -1
    with pytest.raises(ValueError, match="max_bytes"):
        JetStreamSettings(max_bytes=0)


async def test_jetstream_stream_is_bounded_by_age_and_bytes(tmp_path):
    with NatsServer(tmp_path) as server:
        settings = JetStreamSettings(servers=(server.url,), monitor_url="", stream="ORLOJ_RETENTION",
                                     prefix="orlojret.agentmsg", max_age_s=3600, max_bytes=8192)
        lg = await JetStreamLog.connect(settings)
        try:
            for hop in range(1, 41):
                env = Envelope(message_id("default", "t", 1, hop, "a", "b"), "b", from_agent="a", task="t", hop=hop,
                               payload="x" * 1024)
                await lg.append(env)
        finally:
            await lg.close()
        nc = await nats.connect(server.url)
        try:
            info = await nc.jetstream().stream_info("ORLOJ_RETENTION")
        finally:
            await nc.close()
    assert info.config.max_bytes == 8192 and info.config.max_age == 3600
    assert 0 < info.state.bytes <= 8192
    assert info.state.first_seq > 1 and info.state.last_seq == 40  # the oldest were dropped

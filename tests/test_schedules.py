"""TaskSchedule in-process: a MemoryStore and a fake clock, so no test waits for a real minute."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import pytest

from orloj_ray.engine.controller import Controller
from orloj_ray.engine.runtime import LocalAgentRuntime
from orloj_ray.engine.schedules import (
    NAME_LABEL, NAMESPACE_LABEL, SLOT_LABEL, ScheduleController, latest_slot, next_slot, run_task_name,
)
from orloj_ray.resources import normalize
from orloj_ray.store import MemoryStore
from tests_support import load

UTC = timezone.utc


class FakeClock:
    def __init__(self, start: datetime):
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def set(self, when: datetime) -> None:
        self.now = when


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


async def template(store, name="tmpl", namespace="default", labels=None, annotations=None):
    doc = {"kind": "Task", "metadata": {"name": name, "namespace": namespace, "labels": labels or {"team": "a"},
                                        "annotations": annotations or {}},
           "spec": {"system": "sys", "mode": "template", "input": {"topic": "x"}}}
    return await store.create(normalize(doc, kind="Task"))


async def schedule(store, name="daily", **spec):
    spec.setdefault("task_ref", "tmpl")
    spec.setdefault("schedule", "0 9 * * *")
    return await store.create(normalize({"kind": "TaskSchedule", "metadata": {"name": name}, "spec": spec},
                                        kind="TaskSchedule"))


async def runs(store, name="daily") -> list[dict]:
    page = await store.list("Task", None)
    return [t for t in page.items if (t["metadata"].get("labels") or {}).get(NAME_LABEL) == name]


async def run_names(store, name="daily") -> list[str]:
    return sorted(t["metadata"]["name"] for t in await runs(store, name))


async def status(store, name="daily") -> dict:
    return (await store.get("TaskSchedule", "default", name))["status"]


async def events(store, type_prefix="taskschedule.") -> list:
    return [e for e in await store.events_after(0) if e.type.startswith(type_prefix)]


async def set_phase(store, key: str, phase: str, **extra) -> None:
    ns, name = key.split("/")
    task = await store.get("Task", ns, name)
    await store.update_status("Task", ns, name, {**task["status"], "phase": phase, **extra},
                              task["metadata"]["resourceVersion"])


# ------------------------------------------------------------------------------- slots and names


def test_slots_follow_the_time_zone_across_spring_forward():
    from zoneinfo import ZoneInfo

    berlin = ZoneInfo("Europe/Berlin")
    assert next_slot("0 9 * * *", berlin, utc(2025, 3, 29, 12)) == utc(2025, 3, 30, 7)   # CEST: 09:00 = 07:00Z
    assert next_slot("0 9 * * *", berlin, utc(2025, 3, 28, 12)) == utc(2025, 3, 29, 8)   # CET: 09:00 = 08:00Z
    assert latest_slot("0 9 * * *", berlin, utc(2025, 3, 30, 7)) == utc(2025, 3, 30, 7)  # a slot is <= itself
    # 02:30 does not exist on 2025-03-30 in Berlin: it fires at 03:00 local, once
    assert next_slot("30 2 * * *", berlin, utc(2025, 3, 29, 12)) == utc(2025, 3, 30, 1)


def test_a_repeated_wall_time_fires_once_when_clocks_go_back():
    from zoneinfo import ZoneInfo

    berlin = ZoneInfo("Europe/Berlin")
    first = next_slot("30 2 * * *", berlin, utc(2025, 10, 25, 12))
    assert first == utc(2025, 10, 26, 0, 30)                       # 02:30 CEST
    assert next_slot("30 2 * * *", berlin, first) == utc(2025, 10, 27, 1, 30)  # not 02:30 CET an hour later
    assert latest_slot("30 2 * * *", berlin, utc(2025, 10, 26, 1, 45)) == first


def test_a_date_that_never_comes_has_no_slot():
    assert next_slot("0 0 31 2 *", UTC, utc(2025, 1, 1)) is None
    assert latest_slot("0 0 31 2 *", UTC, utc(2025, 1, 1)) is None


def test_run_names_as_upstream():
    slot = utc(2025, 1, 2, 9, 30)
    assert run_task_name("Nightly Report!!", slot) == "nightly-report-20250102-0930"
    assert run_task_name("--", slot) == "schedule-20250102-0930"
    long = "a" * 39 + "-b" + "c" * 20
    assert run_task_name(long, slot) == "a" * 39 + "-20250102-0930"  # cut to 40, trailing '-' trimmed


# ---------------------------------------------------------------------------------- reconcile


async def test_fires_on_time_across_a_dst_change():
    store, clock = MemoryStore(), FakeClock(utc(2025, 3, 29, 7, 59, 30))
    await template(store)
    await schedule(store, time_zone="Europe/Berlin")
    sched = ScheduleController(store, clock=clock)

    due = await sched.tick()  # yesterday's 09:00 is long past: missed, not run
    assert due == utc(2025, 3, 29, 8) and await run_names(store) == []
    st = await status(store)
    assert st["phase"] == "Ready" and st["nextScheduleTime"] == "2025-03-29T08:00:00Z"
    assert st["lastScheduleTime"] == "2025-03-28T08:00:00Z"

    clock.set(utc(2025, 3, 29, 8, 0, 1))
    assert await sched.tick() == utc(2025, 3, 30, 7)  # after the change, 09:00 Berlin is 07:00Z
    assert await run_names(store) == ["daily-20250329-0800"]

    await set_phase(store, "default/daily-20250329-0800", "Succeeded")
    clock.set(utc(2025, 3, 30, 6, 59, 59))  # 08:59:59 CEST: not yet
    await sched.tick()
    assert await run_names(store) == ["daily-20250329-0800"]
    clock.set(utc(2025, 3, 30, 7, 0, 2))
    await sched.tick()
    assert await run_names(store) == ["daily-20250329-0800", "daily-20250330-0700"]
    st = await status(store)
    assert st["lastScheduleTime"] == "2025-03-30T07:00:00Z" and st["nextScheduleTime"] == "2025-03-31T07:00:00Z"
    assert st["lastTriggeredTask"] == "default/daily-20250330-0700"
    assert st["activeRuns"] == ["default/daily-20250330-0700"]


async def test_run_task_copies_the_template_with_labels_and_mode_run():
    store, clock = MemoryStore(), FakeClock(utc(2025, 1, 1, 9, 0, 5))
    await template(store, "tmpl", namespace="work", labels={"team": "a"},
                   annotations={"orloj.dev/shared-with": "default"})  # a template of another namespace
    await schedule(store, task_ref="work/tmpl", concurrency_policy="allow")
    await ScheduleController(store, clock=clock).tick()
    (run,) = await runs(store)
    assert run["metadata"]["namespace"] == "work"  # the template's namespace
    assert run["metadata"]["labels"] == {"team": "a", NAME_LABEL: "daily", NAMESPACE_LABEL: "default",
                                         SLOT_LABEL: "2025-01-01T09:00:00Z"}
    assert run["spec"]["mode"] == "run" and run["spec"]["input"] == {"topic": "x"}
    assert run["status"]["phase"] == "Pending"
    (triggered,) = [e for e in await events(store) if e.type == "taskschedule.triggered"]
    assert triggered.data["task"] == "work/daily-20250101-0900" and triggered.source == "task-schedule-controller"


async def test_a_template_of_another_namespace_that_is_not_shared_is_refused():
    store, clock = MemoryStore(), FakeClock(utc(2025, 1, 1, 9, 0, 5))
    await template(store, "tmpl", namespace="work", annotations={"orloj.dev/shared-with": "ops, other"})
    await schedule(store, task_ref="work/tmpl", concurrency_policy="allow")
    await ScheduleController(store, clock=clock).tick()
    assert await runs(store) == []
    st = await status(store)
    assert st["phase"] == "Error"
    assert st["lastError"] == ('task template "work/tmpl" is in namespace "work", which does not share it with '
                               'namespace "default": the owner of "work" can annotate it orloj.dev/shared-with: '
                               '"default" (or "*")')


async def test_ticking_again_never_starts_a_slot_twice():
    store, clock = MemoryStore(), FakeClock(utc(2025, 1, 1, 9, 0, 5))
    await template(store)
    await schedule(store, concurrency_policy="replace")
    sched = ScheduleController(store, clock=clock)
    await sched.tick()
    await sched.tick()
    # a status write that was lost: the slot looks due again, and the same run is found, not replaced
    obj = await store.get("TaskSchedule", "default", "daily")
    await store.update_status("TaskSchedule", "default", "daily", {**obj["status"], "lastScheduleTime": ""}, "*")
    await sched.tick()
    (run,) = await runs(store)
    assert run["status"]["phase"] == "Pending"


async def test_suspend_skips_and_resuming_runs_the_latest_slot_within_the_deadline():
    store, clock = MemoryStore(), FakeClock(utc(2025, 1, 1, 9, 0, 5))
    await template(store)
    await schedule(store, suspend=True)
    sched = ScheduleController(store, clock=clock)
    assert await sched.tick() is None
    st = await status(store)
    assert st["phase"] == "Suspended" and st["nextScheduleTime"] == "2025-01-02T09:00:00Z"
    assert "lastScheduleTime" not in st and await run_names(store) == []

    obj = await store.get("TaskSchedule", "default", "daily")
    obj["spec"]["suspend"] = False
    await store.update(obj, obj["metadata"]["resourceVersion"])
    clock.set(utc(2025, 1, 1, 9, 3))
    await sched.tick()
    assert await run_names(store) == ["daily-20250101-0900"]
    assert (await status(store))["phase"] == "Ready"


async def test_forbid_skips_while_a_run_is_active():
    store, clock = MemoryStore(), FakeClock(utc(2025, 1, 1, 9, 0, 1))
    await template(store)
    await schedule(store, schedule="*/10 * * * *")
    sched = ScheduleController(store, clock=clock)
    await sched.tick()
    assert await run_names(store) == ["daily-20250101-0900"]
    await set_phase(store, "default/daily-20250101-0900", "Running")

    clock.set(utc(2025, 1, 1, 9, 10, 1))
    await sched.tick()
    assert await run_names(store) == ["daily-20250101-0900"]
    st = await status(store)
    assert st["lastScheduleTime"] == "2025-01-01T09:10:00Z" and st["activeRuns"] == ["default/daily-20250101-0900"]
    (skipped,) = [e for e in await events(store) if e.type == "taskschedule.skipped_forbid"]
    assert skipped.data["activeRun"] == "default/daily-20250101-0900"

    await set_phase(store, "default/daily-20250101-0900", "Succeeded", completedAt="2025-01-01T09:12:00Z")
    clock.set(utc(2025, 1, 1, 9, 20, 1))
    await sched.tick()
    assert await run_names(store) == ["daily-20250101-0900", "daily-20250101-0920"]
    st = await status(store)
    assert st["lastSuccessfulTime"] == "2025-01-01T09:12:00Z" and st["activeRuns"] == ["default/daily-20250101-0920"]


async def test_replace_cancels_the_running_one():
    store, clock = MemoryStore(), FakeClock(utc(2025, 1, 1, 9, 0, 1))
    await template(store)
    await schedule(store, schedule="*/10 * * * *", concurrency_policy="replace")
    sched = ScheduleController(store, clock=clock)
    await sched.tick()
    await set_phase(store, "default/daily-20250101-0900", "Running", claimedBy="w#1", leaseUntil="2099-01-01T00:00:00Z")
    clock.set(utc(2025, 1, 1, 9, 10, 1))
    await sched.tick()
    old = await store.get("Task", "default", "daily-20250101-0900")
    assert old["status"]["phase"] == "Failed"
    assert old["status"]["lastError"] == "replaced by scheduled run default/daily-20250101-0910"
    assert "claimedBy" not in old["status"] and "leaseUntil" not in old["status"]
    new = await store.get("Task", "default", "daily-20250101-0910")
    assert new["status"]["phase"] == "Pending"
    assert (await status(store))["activeRuns"] == ["default/daily-20250101-0910"]


async def test_allow_runs_beside_an_active_run():
    store, clock = MemoryStore(), FakeClock(utc(2025, 1, 1, 9, 0, 1))
    await template(store)
    await schedule(store, schedule="*/10 * * * *", concurrency_policy="allow")
    sched = ScheduleController(store, clock=clock)
    await sched.tick()
    clock.set(utc(2025, 1, 1, 9, 10, 1))
    await sched.tick()
    assert await run_names(store) == ["daily-20250101-0900", "daily-20250101-0910"]
    assert len((await status(store))["activeRuns"]) == 2


@pytest.mark.parametrize("now,expected_runs", [
    (utc(2025, 1, 1, 12, 4, 59), ["daily-20250101-1200"]),  # 3 slots missed: only the latest, it is in time
    (utc(2025, 1, 1, 12, 5, 1), []),                         # the latest is past its 300 s deadline too
])
async def test_only_the_most_recent_missed_slot_is_considered(now, expected_runs):
    store, clock = MemoryStore(), FakeClock(utc(2025, 1, 1, 9, 0, 1))
    await template(store)
    await schedule(store, schedule="0 * * * *", concurrency_policy="allow")
    sched = ScheduleController(store, clock=clock)
    await sched.tick()
    assert await run_names(store) == ["daily-20250101-0900"]
    clock.set(now)  # the control plane was down from 09:00 to past 12:00
    await sched.tick()
    assert await run_names(store) == ["daily-20250101-0900", *expected_runs]
    assert (await status(store))["lastScheduleTime"] == "2025-01-01T12:00:00Z"
    missed = [e for e in await events(store) if e.type == "taskschedule.missed_deadline"]
    assert len(missed) == (0 if expected_runs else 1)


async def test_custom_starting_deadline():
    store, clock = MemoryStore(), FakeClock(utc(2025, 1, 1, 9, 9, 0))
    await template(store)
    await schedule(store, starting_deadline_seconds=600)
    await ScheduleController(store, clock=clock).tick()
    assert await run_names(store) == ["daily-20250101-0900"]


async def test_retention_keeps_the_newest_finished_runs():
    store, clock = MemoryStore(), FakeClock(utc(2025, 1, 1, 9, 0, 1))
    await template(store)
    await schedule(store, schedule="* * * * *", concurrency_policy="allow", successful_history_limit=1,
                   failed_history_limit=1)
    sched = ScheduleController(store, clock=clock)
    for minute in range(5):
        clock.set(utc(2025, 1, 1, 9, minute, 1))
        await sched.tick()
    names = await run_names(store)
    assert len(names) == 5
    for i, name in enumerate(names[:4]):
        await set_phase(store, f"default/{name}", "Succeeded" if i < 2 else "DeadLetter",
                        completedAt=f"2025-01-01T10:0{i}:00Z")
    await sched.tick()
    assert await run_names(store) == ["daily-20250101-0901", "daily-20250101-0903", "daily-20250101-0904"]
    assert [e.data["deleted"] for e in await events(store) if e.type == "taskschedule.retention_pruned"] == [2]


async def test_a_missing_template_is_an_error_in_status():
    store, clock = MemoryStore(), FakeClock(utc(2025, 1, 1, 9, 0, 1))
    await schedule(store, task_ref="ghost")
    await ScheduleController(store, clock=clock).tick()
    st = await status(store)
    assert st["phase"] == "Error" and st["lastError"] == 'task template "ghost" not found'
    assert await run_names(store) == []


async def test_a_run_template_is_refused():
    store, clock = MemoryStore(), FakeClock(utc(2025, 1, 1, 9, 0, 1))
    await store.create(normalize({"kind": "Task", "metadata": {"name": "tmpl"}, "spec": {"system": "s"}}, kind="Task"))
    await schedule(store)
    await ScheduleController(store, clock=clock).tick()
    assert (await status(store))["lastError"] == 'task template "tmpl" must set spec.mode=template'


async def test_an_unchanged_schedule_is_not_rewritten():
    store, clock = MemoryStore(), FakeClock(utc(2025, 1, 1, 9, 30))
    await template(store)
    await schedule(store)
    sched = ScheduleController(store, clock=clock)
    await sched.tick()
    rv = (await store.get("TaskSchedule", "default", "daily"))["metadata"]["resourceVersion"]
    clock.set(utc(2025, 1, 1, 9, 31))
    await sched.tick()
    assert (await store.get("TaskSchedule", "default", "daily"))["metadata"]["resourceVersion"] == rv


# ----------------------------------------------------------------------------- in the controller


async def test_the_controller_fires_a_schedule_and_the_run_succeeds():
    store = MemoryStore()
    await load(store, "pipeline")
    task = await store.get("Task", "default", "bp-pipeline-task")
    await store.create(normalize({"kind": "Task", "metadata": {"name": "pipeline-template"},
                                  "spec": {**task["spec"], "mode": "template"}}, kind="Task"))
    clock = FakeClock(utc(2025, 6, 1, 5, 59, 58))
    controller = Controller(store, LocalAgentRuntime(), worker="test-worker", clock=clock, schedule_max_sleep_s=0.05)
    loop = asyncio.create_task(controller.run())
    try:
        await schedule(store, "hourly", task_ref="pipeline-template", schedule="0 * * * *")
        async with asyncio.timeout(10):  # the schedule event wakes the controller at once
            while (await status(store, "hourly")).get("nextScheduleTime") != "2025-06-01T06:00:00Z":
                await asyncio.sleep(0.02)
        assert await run_names(store, "hourly") == []  # 05:00 was missed long ago
        clock.set(utc(2025, 6, 1, 6, 0, 1))
        async with asyncio.timeout(10):
            while True:
                found = await runs(store, "hourly")
                if found and found[0]["status"].get("phase") in ("Succeeded", "Failed", "DeadLetter"):
                    break
                await asyncio.sleep(0.02)
        (run,) = found
        assert run["metadata"]["name"] == "hourly-20250601-0600"
        assert run["status"]["phase"] == "Succeeded", run["status"].get("lastError")
        async with asyncio.timeout(10):  # the run's phase change refreshes the schedule's status
            while (await status(store, "hourly")).get("activeRuns") != []:
                await asyncio.sleep(0.02)
        assert (await status(store, "hourly"))["lastSuccessfulTime"]
    finally:
        controller.stop()
        await loop

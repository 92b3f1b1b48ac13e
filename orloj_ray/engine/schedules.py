"""TaskSchedule: turn cron slots into run tasks made from a template task (execution.md section 13).

Each ``tick`` reconciles every schedule against "now" from an injected clock, as upstream's
2-second loop does, and returns when the next slot is due, so the controller can sleep
until then (bounded) instead of polling. Per schedule:

* suspended: phase ``Suspended``; only ``nextScheduleTime`` and ``activeRuns`` are kept fresh.
* otherwise take the most recent slot <= now. If it is later than ``lastScheduleTime`` it is
  recorded there, then: older than ``starting_deadline_seconds`` -> skipped
  (``taskschedule.missed_deadline``); only that latest missed slot is ever considered, never
  a backfill. Else the concurrency policy decides with the schedule's active runs
  (phase empty, Pending, Running, WaitingApproval): ``forbid`` skips
  (``taskschedule.skipped_forbid``), ``replace`` cancels them (phase Failed, like ``orloj
  cancel``) and starts the new run, ``allow`` starts it beside them.
* the run task: ``<schedule name, sanitized, <= 40 chars>-<slot UTC YYYYMMDD-HHMM>`` in the
  template's namespace, template spec with ``mode: run``, template labels plus the
  ``orloj.dev/task-schedule*`` labels. Creating it is idempotent (same name and labels = the
  same run), so a tick repeated after a lost status write never starts a slot twice.
* retention keeps the newest ``successful_history_limit`` succeeded and
  ``failed_history_limit`` failed / dead-lettered runs.

Cron is croniter over upstream's numeric 5-field dialect (validated at apply), evaluated in
``spec.time_zone``. Daylight-saving changes: a wall-clock time that happens twice (clocks
turned back) fires once, at its first occurrence; a time that does not exist (clocks turned
forward) fires at the first minute that does.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from datetime import datetime, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo

from croniter import CroniterBadDateError, croniter

from orloj_ray import lifecycle
from orloj_ray.errors import Conflict, InvalidResource, NotFound
from orloj_ray.resources import normalize
from orloj_ray.store.base import Event, LabelSelector
from orloj_ray.store.util import clone, list_all, rfc3339nano, utcnow
from orloj_ray.tenancy import not_shared, shared_with

log = logging.getLogger("orloj_ray.schedules")

SOURCE = "task-schedule-controller"
NAME_LABEL = "orloj.dev/task-schedule"
NAMESPACE_LABEL = "orloj.dev/task-schedule-namespace"
SLOT_LABEL = "orloj.dev/task-schedule-slot"

ACTIVE_PHASES = frozenset({"", "pending", "running", "waitingapproval"})
STATUS_RETRIES = 3

Clock = Callable[[], datetime]


def parse_time(value: str) -> datetime:
    ts = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    if ts.tzinfo is None:
        raise ValueError(f"timestamp {value!r} has no time zone")
    return ts.astimezone(timezone.utc)


def zone(name: str) -> tzinfo:
    """An IANA zone; ``Local`` is this machine's zone (``/etc/localtime``), else UTC."""
    name = (name or "").strip() or "UTC"
    if name == "Local":
        try:
            with open("/etc/localtime", "rb") as fh:
                return ZoneInfo.from_file(fh, key="localtime")
        except OSError:
            return timezone.utc
    return ZoneInfo(name)


def _repeated(local: datetime) -> bool:
    """The second occurrence of a wall-clock time that happens twice (clocks turned back)."""
    if local.fold != 1:
        return False
    return local.utcoffset() != local.replace(fold=0).utcoffset()


def latest_slot(schedule: str, tz: tzinfo, now: datetime) -> datetime | None:
    """The most recent slot at or before ``now`` (UTC), or None."""
    floor = now.astimezone(tz).replace(second=0, microsecond=0)
    it = croniter(schedule, floor + timedelta(seconds=1))
    try:
        for _ in range(4):  # at most one repeated wall time in a row
            local = it.get_prev(datetime)
            if not _repeated(local):
                return local.astimezone(timezone.utc)
    except CroniterBadDateError:  # a date that never comes (``0 0 31 2 *``)
        pass
    return None


def next_slot(schedule: str, tz: tzinfo, now: datetime) -> datetime | None:
    """The first slot strictly after ``now`` (UTC), or None."""
    it = croniter(schedule, now.astimezone(tz))
    try:
        for _ in range(4):
            local = it.get_next(datetime)
            if not _repeated(local):
                return local.astimezone(timezone.utc)
    except CroniterBadDateError:
        pass
    return None


def sanitize(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.strip().lower()).strip("-")


def run_task_name(schedule_name: str, slot: datetime) -> str:
    """Upstream's ``scheduledTaskName``: ``<sanitized name, <= 40>-<YYYYMMDD-HHMM UTC>``."""
    base = sanitize(schedule_name) or "schedule"
    if len(base) > 40:
        base = base[:40].strip("-")
    return f"{base}-{slot.astimezone(timezone.utc).strftime('%Y%m%d-%H%M')}"


def split_ref(default_namespace: str, ref: str) -> tuple[str, str]:
    ref = ref.strip()
    if "/" in ref:
        ns, _, name = ref.partition("/")
        return ns.strip() or "default", name.strip()
    return default_namespace or "default", ref


def _key(obj: dict) -> str:
    return f'{obj["metadata"].get("namespace") or "default"}/{obj["metadata"]["name"]}'


def _phase(task: dict) -> str:
    return str((task.get("status") or {}).get("phase") or "").strip().lower()


def _terminal_time(task: dict) -> datetime:
    status = task.get("status") or {}
    for value in (status.get("completedAt"), status.get("startedAt"), task["metadata"].get("createdAt")):
        if value:
            try:
                return parse_time(str(value))
            except ValueError:
                continue
    return datetime.min.replace(tzinfo=timezone.utc)


class ScheduleController:
    """Reconciles every TaskSchedule; ``tick()`` returns the next due time (UTC) or None."""

    def __init__(self, store, *, clock: Clock = utcnow):
        self.store = store
        self.clock = clock

    async def tick(self) -> datetime | None:
        soonest: datetime | None = None
        for schedule in await self._list("TaskSchedule"):
            try:
                due = await self.reconcile_with_retry(schedule)
            except Exception:
                log.exception("task schedule %s failed to reconcile", _key(schedule))
                continue
            if due is not None and (soonest is None or due < soonest):
                soonest = due
        return soonest

    async def reconcile_with_retry(self, schedule: dict) -> datetime | None:
        for attempt in range(STATUS_RETRIES):
            try:
                return await self.reconcile(schedule)
            except Conflict:
                if attempt == STATUS_RETRIES - 1:
                    raise
                meta = schedule["metadata"]
                try:
                    schedule = await self.store.get("TaskSchedule", meta.get("namespace") or "default", meta["name"])
                except NotFound:
                    return None
        return None

    async def reconcile(self, schedule: dict) -> datetime | None:
        """One schedule, at ``clock()``; returns its next slot when not suspended."""
        now = self.clock().astimezone(timezone.utc)
        spec = schedule.get("spec") or {}
        status = clone(schedule.get("status") or {})
        before = clone(status)
        status["lastError"] = ""
        try:
            tz = zone(str(spec.get("time_zone") or "UTC"))
            expr = str(spec.get("schedule") or "")
            croniter(expr)  # validated at apply; a stored object may predate that
        except Exception as exc:
            status.update(phase="Error", lastError=f"invalid schedule: {exc}")
            await self._write(schedule, status, before)
            return None

        nxt = next_slot(expr, tz, now)
        status["nextScheduleTime"] = rfc3339nano(nxt) if nxt else ""
        if spec.get("suspend"):
            await self._refresh(schedule, status, before)
            return None

        slot = latest_slot(expr, tz, now)
        last = str(status.get("lastScheduleTime") or "").strip()
        due = slot is not None
        if due and last:
            try:
                due = slot > parse_time(last)
            except ValueError:
                status.update(phase="Error", lastError=f"invalid status.lastScheduleTime {last!r}")
                await self._write(schedule, status, before)
                return nxt
        if due:
            await self._fire(schedule, status, slot, now)
        await self._prune(schedule)
        await self._refresh(schedule, status, before)
        return nxt

    async def _fire(self, schedule: dict, status: dict, slot: datetime, now: datetime) -> None:
        spec = schedule.get("spec") or {}
        status["lastScheduleTime"] = rfc3339nano(slot)
        slot_text = rfc3339nano(slot)
        deadline = int(spec.get("starting_deadline_seconds") or 0) or 300
        if (now - slot).total_seconds() > deadline:
            await self._event(schedule, status, "taskschedule.missed_deadline", "missed run window; skipped",
                              {"slot": slot_text})
            return
        policy = str(spec.get("concurrency_policy") or "forbid").strip().lower()
        others = [t for t in await self._generated(schedule)
                  if _phase(t) in ACTIVE_PHASES and (t["metadata"].get("labels") or {}).get(SLOT_LABEL) != slot_text]
        if others and policy == "forbid":
            await self._event(schedule, status, "taskschedule.skipped_forbid",
                              "active run present; skipped due to concurrency policy",
                              {"slot": slot_text, "activeRun": sorted(_key(t) for t in others)[0]})
            return
        try:
            run = await self._ensure_run(schedule, slot)
        except (ValueError, InvalidResource) as exc:
            status.update(phase="Error", lastError=str(exc))
            return
        if others and policy == "replace":
            for task in others:
                await self._cancel(task, f"replaced by scheduled run {run}")
            await self._event(schedule, status, "taskschedule.replaced", "active runs canceled for the new run",
                              {"slot": slot_text, "task": run, "canceled": sorted(_key(t) for t in others)})
        status["lastTriggeredTask"] = run
        await self._event(schedule, status, "taskschedule.triggered", "scheduled run task created",
                          {"slot": slot_text, "task": run})

    async def _ensure_run(self, schedule: dict, slot: datetime) -> str:
        meta, spec = schedule["metadata"], schedule.get("spec") or {}
        ns = meta.get("namespace") or "default"
        ref = str(spec.get("task_ref") or "")
        tns, tname = split_ref(ns, ref)
        try:
            template = await self.store.get("Task", tns, tname)
        except NotFound:
            raise ValueError(f'task template "{ref}" not found') from None
        if not shared_with(template, ns):
            raise ValueError(not_shared("task template", template, ns))
        if str((template.get("spec") or {}).get("mode") or "").strip().lower() != "template":
            raise ValueError(f'task template "{ref}" must set spec.mode=template')
        labels = dict(template["metadata"].get("labels") or {})
        labels.update({NAME_LABEL: meta["name"], NAMESPACE_LABEL: ns, SLOT_LABEL: rfc3339nano(slot)})
        run_spec = clone(template.get("spec") or {})
        run_spec["mode"] = "run"
        run = normalize({"apiVersion": "orloj.dev/v1", "kind": "Task",
                         "metadata": {"name": run_task_name(meta["name"], slot),
                                      "namespace": template["metadata"].get("namespace") or "default",
                                      "labels": labels},
                         "spec": run_spec}, kind="Task")
        key = _key(run)
        try:
            await self.store.create(run, source=SOURCE)
        except Conflict:
            existing = await self.store.get("Task", run["metadata"]["namespace"], run["metadata"]["name"])
            have = existing["metadata"].get("labels") or {}
            if any(have.get(k) != labels[k] for k in (NAME_LABEL, NAMESPACE_LABEL, SLOT_LABEL)):
                raise ValueError(f'scheduled run task name conflict for "{key}"') from None
        return key

    async def _cancel(self, task: dict, reason: str) -> None:
        """Mark an active run Failed (as ``orloj cancel``); its executor stops at its next write."""
        ns, name = task["metadata"].get("namespace") or "default", task["metadata"]["name"]
        for _ in range(STATUS_RETRIES):
            try:
                current = await self.store.get("Task", ns, name)
            except NotFound:
                return
            if _phase(current) not in ACTIVE_PHASES:
                return
            status = lifecycle.cancel(current.get("status") or {}, reason=reason, worker=SOURCE, now=self.clock())
            try:
                await self.store.update_status("Task", ns, name, status, current["metadata"]["resourceVersion"],
                                               source=SOURCE)
                return
            except Conflict:
                continue
        log.warning("could not cancel %s/%s for its schedule: kept conflicting", ns, name)

    async def _prune(self, schedule: dict) -> None:
        spec = schedule.get("spec") or {}
        done = {"succeeded": [], "failed": []}
        for task in await self._generated(schedule):
            phase = _phase(task)
            if phase == "succeeded":
                done["succeeded"].append(task)
            elif phase in ("failed", "deadletter"):
                done["failed"].append(task)
        limits = {"succeeded": int(spec.get("successful_history_limit") or 0) or 10,
                  "failed": int(spec.get("failed_history_limit") or 0) or 3}
        deleted = 0
        for group, tasks in done.items():
            tasks.sort(key=_terminal_time, reverse=True)
            for task in tasks[limits[group]:]:
                try:
                    await self.store.delete("Task", task["metadata"].get("namespace") or "default",
                                            task["metadata"]["name"], source=SOURCE)
                    deleted += 1
                except NotFound:
                    pass
        if deleted:
            await self._event(schedule, schedule.get("status") or {}, "taskschedule.retention_pruned",
                              "retention policy pruned historical runs", {"deleted": deleted})

    async def _refresh(self, schedule: dict, status: dict, before: dict) -> None:
        generated = await self._generated(schedule)
        status["activeRuns"] = sorted(_key(t) for t in generated if _phase(t) in ACTIVE_PHASES)
        succeeded = [_terminal_time(t) for t in generated if _phase(t) == "succeeded"]
        status["lastSuccessfulTime"] = rfc3339nano(max(succeeded)) if succeeded else ""
        suspended = bool((schedule.get("spec") or {}).get("suspend"))
        status["phase"] = "Error" if status.get("lastError") else "Suspended" if suspended else "Ready"
        await self._write(schedule, status, before)

    async def _write(self, schedule: dict, status: dict, before: dict) -> None:
        meta = schedule["metadata"]
        status["observedGeneration"] = meta.get("generation") or status.get("observedGeneration") or 1
        if status == before:
            return  # nothing changed: no write, no event
        stored = await self.store.update_status("TaskSchedule", meta.get("namespace") or "default", meta["name"],
                                                status, meta["resourceVersion"], source=SOURCE)
        schedule["metadata"], schedule["status"] = stored["metadata"], stored["status"]

    async def _generated(self, schedule: dict) -> list[dict]:
        meta = schedule["metadata"]
        selector = LabelSelector({NAME_LABEL: meta["name"], NAMESPACE_LABEL: meta.get("namespace") or "default"})
        return await self._list("Task", selector)

    async def _list(self, kind: str, selector: LabelSelector | None = None) -> list[dict]:
        return await list_all(self.store, kind, None, selector)

    async def _event(self, schedule: dict, status: dict, type_: str, message: str, data: dict) -> None:
        meta = schedule["metadata"]
        payload = {**data, "message": message, "phase": status.get("phase", ""), "lastError": status.get("lastError", "")}
        try:
            await self.store.publish(Event(id=0, timestamp="", source=SOURCE, type=type_, kind="TaskSchedule",
                                           name=meta["name"], namespace=meta.get("namespace") or "default",
                                           action=type_.rsplit(".", 1)[-1], data=payload))
        except Exception:
            log.warning("publishing %s failed", type_, exc_info=True)

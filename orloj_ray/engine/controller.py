"""The control loop behind the Supervisor: claim due tasks, run them, reconcile resources.

Built like Ray Serve's controller loop: each step has its own ``try`` so one failure never
starves the others, and the loop wakes on store events instead of polling hard.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from orloj_ray.store.util import list_all
from orloj_ray.engine.claims import claim
from orloj_ray.engine.executor import TaskExecutor
from orloj_ray.engine.mailbox import Mailbox
from orloj_ray.engine.mcp_sync import McpSync
from orloj_ray.mcp import McpPolicy
from orloj_ray.engine.owned import delete_owned
from orloj_ray.engine.reconcile import SOURCE as RECONCILER, reconcile
from orloj_ray.engine.shards import Shards
from orloj_ray.engine.resolve import CONFIG_KINDS
from orloj_ray.engine.retention import DEFAULT_TASK_RETENTION, prune_finished
from orloj_ray.engine.runtime import AgentRuntime
from orloj_ray.engine.approvals import approval_outcome
from orloj_ray.engine.schedules import NAME_LABEL as SCHEDULE_LABEL, SOURCE as SCHEDULER, ScheduleController
from orloj_ray.store.cache import CachedReads
from orloj_ray.store.util import utcnow
from orloj_ray.errors import NotFound
from orloj_ray.lifecycle import ENGINE_SOURCE, LEASE_S, TERMINAL, claimable, parse_time, phase_of, utc

log = logging.getLogger("orloj_ray.controller")

RECONCILED = ("Agent", "AgentSystem", "ModelEndpoint", "Tool", "Secret", "Memory", "Worker", "McpServer")
DEPENDENTS = {"ModelEndpoint": ("Agent",), "Agent": ("AgentSystem",), "Secret": ("Agent",)}


def _stuck(task: dict, lease_s: float) -> bool:
    """A Running task whose lease ran out more than one lease period ago: whatever shard it is
    in, its owner is alive (else its shard would have moved) but not running it. The leader
    takes it over (the safety net of the sharding)."""
    status = task.get("status") or {}
    expiry = parse_time(status.get("leaseUntil") or "")
    return (phase_of(status) == "Running" and expiry is not None
            and (utc() - expiry).total_seconds() > lease_s)


class Controller:
    def __init__(self, store, runtime: AgentRuntime, *, worker: str, shards: Shards | None = None,
                 mode: str = "message-driven",
                 max_concurrent_tasks: int = 256, resync_s: float = 30.0, lease_scan_s: float = 5.0,
                 lease_s: float = LEASE_S, max_parallel_turns: int | None = None, mailbox: Mailbox | None = None,
                 clock: Callable[[], datetime] = utcnow, schedule_max_sleep_s: float = 30.0,
                 task_retention: timedelta = DEFAULT_TASK_RETENTION, retention_scan_s: float = 300.0,
                 mcp_policy: McpPolicy | None = None):
        self.store = store
        self.runtime = runtime
        self.worker = worker
        self.mode = mode
        """``message-driven`` or ``sequential``: recorded in each task's ``output["runtime.mode"]``."""
        self.shards = shards or Shards()
        """Which tasks this supervisor claims (all, when it is the only one)."""
        self.max_concurrent = max_concurrent_tasks
        self.resync_s = resync_s
        self.lease_scan_s = lease_scan_s
        self.lease_s = lease_s
        self.max_parallel_turns = max_parallel_turns
        self.mailbox = mailbox
        """The message log as every agent's mailbox (message-driven); None: turns are handed over directly."""
        self.reads = CachedReads(store, CONFIG_KINDS)
        """The configuration every task and turn reads, shared so concurrent turns share its syncs."""
        self.retry_at: dict[tuple[str, str], datetime] = {}
        """Pending tasks whose next attempt is scheduled (``nextAttemptAt``): the loop wakes then."""
        self.open_tasks: dict[tuple[str, str], str] = {}
        """Unfinished tasks (namespace, name) -> phase, as the event stream tells: what the lease
        scan reads, so it never lists the (many) finished tasks; each resync rebuilds it."""
        self.running: dict[str, asyncio.Task] = {}
        self._executors: dict[str, TaskExecutor] = {}
        self._stop = asyncio.Event()
        self._cursor = 0
        self.mcp = McpSync(store, policy=mcp_policy)
        self.clock = clock
        self.schedules = ScheduleController(store, clock=clock)
        self.schedule_max_sleep_s = schedule_max_sleep_s
        """Longest sleep between TaskSchedule ticks: a bound, since clocks jump."""
        self.task_retention = task_retention
        """Finished tasks older than this lose their trace/history/messages (0: kept); ``ServerConfig.task_retention``."""
        self.retention_scan_s = retention_scan_s
        """Seconds between retention sweeps."""

    def stop(self) -> None:
        self._stop.set()

    async def drain(self, timeout_s: float = 30.0) -> int:
        """Graceful shutdown: stop claiming, let running turns finish and record, start no new
        turn, and release every lease so the next supervisor resumes at once. Runs still going
        after ``timeout_s`` are cancelled (their leases then expire). Returns the tasks drained."""
        self.stop()
        executors = list(self._executors.values())
        for executor in executors:
            executor.drain()
        runs = [t for t in self.running.values() if not t.done()]
        if runs:
            _, pending = await asyncio.wait(runs, timeout=timeout_s)
            for run in pending:
                run.cancel()
            if pending:
                await asyncio.wait(pending, timeout=5.0)
        return len(executors)

    async def run(self) -> None:
        if self.mailbox is None:
            await self._loop()
            return
        deliveries = asyncio.create_task(self.mailbox.run(self._stop, lambda: self.shards.owned), name="mailbox")
        try:
            await self._loop()
        finally:
            self._stop.set()
            await deliveries

    async def _loop(self) -> None:
        self._cursor = await self.store.last_event_id()
        await self._safely(self.resync)
        loop = asyncio.get_running_loop()
        next_resync = loop.time() + self.resync_s
        next_scan = loop.time() + self.lease_scan_s
        next_schedule = loop.time()
        next_retention = loop.time()
        while not self._stop.is_set():
            events = []
            try:  # also wake for the next schedule slot and the next scheduled task retry
                wait_s = max(0.0, min(1.0, next_schedule - loop.time(), self._until_retry()))
                events = await self.store.events_after(self._cursor, timeout_s=wait_s)
            except Exception:
                log.exception("reading store events failed")
                await asyncio.sleep(1.0)
            if events:
                self._cursor = events[-1].id
                self._track(events)
            await self._safely(self.claim_due, events)
            await self._safely(self.claim_retries)
            await self._safely(self.resume_approvals, events)
            leader = self.shards.leader  # the cluster-wide loops run on one supervisor only
            if leader:
                await self._safely(self.reconcile_changed, events)
            next_schedule = self._schedule_wakeup(events, next_schedule, loop.time())
            if leader and loop.time() >= next_schedule:
                next_schedule = loop.time() + await self.schedule_tick()
            if loop.time() >= next_scan:  # expired leases produce no event: look for them
                next_scan = loop.time() + self.lease_scan_s
                await self._safely(self.claim_due, None)
                await self._safely(self.resume_approvals, None)
            if loop.time() >= next_resync:
                next_resync = loop.time() + self.resync_s
                await self._safely(self.resync)
            if leader and loop.time() >= next_retention:
                next_retention = loop.time() + self.retention_scan_s
                await self._safely(self.prune_retention)
        await self.mcp.aclose()

    async def prune_retention(self) -> int:
        """Drop the per-step records of tasks finished longer than ``task_retention`` ago."""
        return await prune_finished(self.store, self.clock(), self.task_retention)

    async def schedule_tick(self) -> float:
        """Reconcile every TaskSchedule; returns the seconds until the next slot (bounded)."""
        try:
            due = await self.schedules.tick()
        except Exception:
            log.exception("controller step schedule_tick failed")
            return self.schedule_max_sleep_s
        if due is None:
            return self.schedule_max_sleep_s
        return min(self.schedule_max_sleep_s, max(0.05, (due - self.clock()).total_seconds()))

    @staticmethod
    def _schedule_wakeup(events, at: float, now: float) -> float:
        """Tick now when a schedule changed, within a second when one of its runs did."""
        for e in events:
            if e.source == SCHEDULER:
                continue
            if e.kind == "TaskSchedule":
                return now
            if e.kind == "Task" and SCHEDULE_LABEL in (((e.data or {}).get("metadata") or {}).get("labels") or {}):
                at = min(at, now + 1.0)
        return at

    async def _safely(self, step, *args) -> None:
        try:
            await step(*args)
        except Exception:
            log.exception("controller step %s failed", step.__name__)

    def _track(self, events) -> None:
        for e in events:
            if e.kind != "Task" or not e.type.startswith("resource."):
                continue
            key = (e.namespace or "default", e.name)
            data = e.data or {}
            phase = phase_of(data)
            if e.type == "resource.deleted" or phase in TERMINAL:
                self.open_tasks.pop(key, None)
            else:
                self.open_tasks[key] = phase
            due = parse_time(((data.get("status") or {}) if "metadata" in data else data).get("nextAttemptAt") or "")
            if phase == "Pending" and due is not None and self.shards.owns(*key):
                self.retry_at[key] = due
            else:
                self.retry_at.pop(key, None)

    def _until_retry(self) -> float:
        """Seconds until the next scheduled task retry is due (1 when none is)."""
        if not self.retry_at:
            return 1.0
        return (min(self.retry_at.values()) - self.clock()).total_seconds()

    async def claim_retries(self) -> int:
        """Claim the tasks whose scheduled retry (``nextAttemptAt``) has come."""
        now = self.clock()
        due = [k for k, at in self.retry_at.items() if at <= now]
        for key in due:
            del self.retry_at[key]
        return await self._claim_all(await self._get_tasks(due)) if due else 0

    async def _get_tasks(self, keys) -> list[dict]:
        """The tasks named by (namespace, name) ``keys`` that still exist."""
        tasks = []
        for ns, name in keys:
            try:
                tasks.append(await self.store.get("Task", ns, name))
            except NotFound:
                continue
        return tasks

    async def claim_due(self, events=None) -> int:
        """Claim every due task: those ``events`` name, or (None) every unfinished one."""
        if events is not None:  # the events carry the task: no read (the store decides on the row itself)
            latest = {(e.namespace, e.name): e for e in events  # our own writes never make a task due
                      if e.kind == "Task" and e.source != ENGINE_SOURCE
                      and e.type in ("resource.created", "resource.updated", "resource.status")}
            tasks = [e.data for e in latest.values() if isinstance(e.data, dict) and "metadata" in e.data
                     and self.shards.owns(e.namespace, e.name)]
            return await self._claim_all(tasks, config_as_of=max((e.id for e in latest.values()), default=None))
        tasks = await self._get_tasks(sorted(k for k in self.open_tasks if f"{k[0]}/{k[1]}" not in self.running
                                             and self.shards.owns(*k)))
        return await self._claim_all(tasks)

    async def _claim_all(self, tasks: list[dict], config_as_of: int | None = None) -> int:
        """Claim ``tasks`` that are claimable, up to capacity; the claims go out together.

        ``config_as_of``: the store event that made them due; their runs resolve the
        configuration committed up to it, synced into the cache (when it is not there yet)
        while the claims are out."""
        picked: dict[str, dict] = {}
        for task in tasks:
            key = f'{task["metadata"]["namespace"]}/{task["metadata"]["name"]}'
            if (key in self.running or key in picked or len(self.running) + len(picked) >= self.max_concurrent
                    or not claimable(task, self.worker, dead=self.shards.dead)):
                continue
            picked[key] = task
        if not picked:
            return 0
        synced = None if config_as_of is None else self.reads.sync_soon(after=config_as_of)
        dead = self.shards.dead
        results = await asyncio.gather(*(claim(self.store, task, self.worker, lease_s=self.lease_s, dead=dead)
                                         for task in picked.values()), return_exceptions=True)
        claimed = 0
        for key, owned in zip(picked, results):
            if isinstance(owned, BaseException):
                log.error("claiming task %s failed: %s", key, owned, exc_info=owned)
            elif owned is not None:
                claimed += 1
                self._launch(key, owned, synced)
        return claimed

    async def resume_approvals(self, events=None) -> int:
        """Resume ``WaitingApproval`` tasks whose approval was decided or has expired (those the
        ToolApproval ``events`` name, or all of them when ``events`` is None). The resumed run
        re-runs only the interrupted turn; a denied or expired approval fails it there."""
        if events is not None:
            refs = set()
            for e in events:
                if e.kind != "ToolApproval" or e.type == "resource.deleted":
                    continue
                try:
                    approval = await self.store.get("ToolApproval", e.namespace, e.name)
                except NotFound:
                    continue
                ref = str((approval.get("spec") or {}).get("task_ref") or "")
                refs.add(tuple(ref.split("/", 1)) if "/" in ref else (e.namespace, ref))
            tasks = await self._get_tasks(sorted(k for k in refs if self.shards.owns(*k)))
        else:
            tasks = await self._get_tasks(sorted(k for k, phase in self.open_tasks.items()
                                                 if phase == "WaitingApproval" and self.shards.owns(*k)))
        resumed = 0
        for task in tasks:
            status, meta = task.get("status") or {}, task["metadata"]
            key = f'{meta["namespace"]}/{meta["name"]}'
            if status.get("phase") != "WaitingApproval" or key in self.running or len(self.running) >= self.max_concurrent:
                continue
            why = await approval_outcome(self.store, meta["namespace"], status.get("pendingApproval") or "")
            if why is None:
                continue
            owned = await claim(self.store, task, self.worker, lease_s=self.lease_s, resume=why)
            if owned is not None:
                resumed += 1
                self._launch(key, owned)
        return resumed

    def _launch(self, key: str, owned: dict, synced: asyncio.Future | None = None) -> None:
        run = asyncio.create_task(self._run_task(owned, synced), name=f"task:{key}")
        self.running[key] = run
        run.add_done_callback(lambda _t, key=key: self.running.pop(key, None))

    async def _run_task(self, task: dict, synced: asyncio.Future | None = None) -> None:
        meta = task["metadata"]
        executor = TaskExecutor(self.store, self.runtime, task, worker=self.worker, lease_s=self.lease_s,
                                max_parallel_turns=self.max_parallel_turns, mailbox=self.mailbox, reads=self.reads,
                                synced=synced, shard=self.shards.shard_of(meta["namespace"], meta["name"]),
                                mode=self.mode)
        key = f'{meta["namespace"]}/{meta["name"]}'
        self._executors[key] = executor
        try:
            await executor.run()
        except Exception:
            log.exception("task %s/%s crashed the executor", meta["namespace"], meta["name"])
        finally:
            self._executors.pop(key, None)

    async def _refresh(self, kind: str, namespace: str, name: str) -> None:
        try:
            obj = await self.store.get(kind, namespace, name)
        except NotFound:
            return  # deleted meanwhile
        await self._reconcile(obj)

    async def _reconcile(self, obj: dict) -> None:
        if obj["kind"] == "McpServer":  # connects in the background: a slow server never stalls the loop
            self.mcp.kick(obj)
            return
        await reconcile(self.store, obj)

    async def reconcile_changed(self, events) -> None:
        todo: set[tuple[str, str, str]] = set()
        for e in events:
            if e.source == RECONCILER or e.kind not in RECONCILED or e.type == "resource.status":
                continue
            if e.type != "resource.deleted":
                todo.add((e.kind, e.namespace, e.name))
            elif e.kind == "Agent":
                await delete_owned(self.store, e.namespace, e.name)
            elif e.kind == "McpServer":
                await self.mcp.server_deleted(e.namespace, e.name)
            for dependent in DEPENDENTS.get(e.kind, ()):
                for item in (await self.store.list(dependent, e.namespace)).items:
                    todo.add((dependent, e.namespace, item["metadata"]["name"]))
        for kind, ns, name in sorted(todo):
            await self._safely(self._refresh, kind, ns, name)

    async def resync(self) -> None:
        """The full pass: list every task (rebuilding ``open_tasks``) and every reconciled kind."""
        tasks = await list_all(self.store, "Task")
        self.open_tasks = {(t["metadata"]["namespace"], t["metadata"]["name"]): phase_of(t)
                           for t in tasks if phase_of(t) not in TERMINAL}
        await self._claim_all([t for t in tasks if self.shards.owns(t["metadata"]["namespace"], t["metadata"]["name"])
                               or (self.shards.leader and _stuck(t, self.lease_s))])
        if not self.shards.leader:
            return
        for kind in RECONCILED:
            for obj in await list_all(self.store, kind):
                await self._reconcile(obj)

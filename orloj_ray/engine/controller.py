"""The control loop behind the Supervisor: claim due tasks, run them, reconcile resources.

Built like Ray Serve's controller loop: each step has its own ``try`` so one failure never
starves the others, and the loop wakes on store events instead of polling hard.
"""

from __future__ import annotations

import asyncio
import logging

from orloj_ray.engine.claims import LEASE_S, claim, claimable
from orloj_ray.engine.executor import TaskExecutor
from orloj_ray.engine.owned import delete_owned
from orloj_ray.engine.reconcile import SOURCE as RECONCILER, AgentProbe, reconcile
from orloj_ray.engine.runtime import AgentRuntime
from orloj_ray.errors import NotFound

log = logging.getLogger("orloj_ray.controller")

RECONCILED = ("Agent", "AgentSystem", "ModelEndpoint", "Tool", "Secret", "Memory", "Worker")
DEPENDENTS = {"ModelEndpoint": ("Agent",), "Agent": ("AgentSystem",), "Secret": ("Agent",)}


async def list_all(store, kind: str, namespace: str | None = None) -> list[dict]:
    items, after = [], None
    while True:
        page = await store.list(kind, namespace, after=after)
        items += page.items
        if not page.continue_:
            return items
        after = page.continue_


class Controller:
    def __init__(self, store, runtime: AgentRuntime, *, worker: str, probe: AgentProbe | None = None,
                 max_concurrent_tasks: int = 256, resync_s: float = 30.0, lease_scan_s: float = 5.0,
                 lease_s: float = LEASE_S, max_parallel_turns: int | None = None):
        self.store = store
        self.runtime = runtime
        self.worker = worker
        self.probe = probe
        self.max_concurrent = max_concurrent_tasks
        self.resync_s = resync_s
        self.lease_scan_s = lease_scan_s
        self.lease_s = lease_s
        self.max_parallel_turns = max_parallel_turns
        self.running: dict[str, asyncio.Task] = {}
        self._stop = asyncio.Event()
        self._cursor = 0

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        self._cursor = await self.store.last_event_id()
        await self._safely(self.resync)
        loop = asyncio.get_running_loop()
        next_resync = loop.time() + self.resync_s
        next_scan = loop.time() + self.lease_scan_s
        while not self._stop.is_set():
            events = []
            try:
                events = await self.store.events_after(self._cursor, timeout_s=1.0)
            except Exception:
                log.exception("reading store events failed")
                await asyncio.sleep(1.0)
            if events:
                self._cursor = events[-1].id
            await self._safely(self.claim_due, events)
            await self._safely(self.reconcile_changed, events)
            if loop.time() >= next_scan:  # expired leases produce no event: look for them
                next_scan = loop.time() + self.lease_scan_s
                await self._safely(self.claim_due, None)
            if loop.time() >= next_resync:
                next_resync = loop.time() + self.resync_s
                await self._safely(self.resync)

    async def _safely(self, step, *args) -> None:
        try:
            await step(*args)
        except Exception:
            log.exception("controller step %s failed", step.__name__)

    async def claim_due(self, events=None) -> int:
        """Claim every due task (all of them when ``events`` is None, else those events name)."""
        if events is not None:
            names = {(e.namespace, e.name) for e in events  # our own writes never make a task due
                     if e.kind == "Task" and e.source != "task-controller"
                     and e.type in ("resource.created", "resource.updated", "resource.status")}
            tasks = []
            for ns, name in names:
                try:
                    tasks.append(await self.store.get("Task", ns, name))
                except Exception:
                    continue
        else:
            tasks = await list_all(self.store, "Task")
        claimed = 0
        for task in tasks:
            key = f'{task["metadata"]["namespace"]}/{task["metadata"]["name"]}'
            if key in self.running or len(self.running) >= self.max_concurrent or not claimable(task, self.worker):
                continue
            owned = await claim(self.store, task, self.worker, lease_s=self.lease_s)
            if owned is None:
                continue
            claimed += 1
            run = asyncio.create_task(self._run_task(owned), name=f"task:{key}")
            self.running[key] = run
            run.add_done_callback(lambda _t, key=key: self.running.pop(key, None))
        return claimed

    async def _run_task(self, task: dict) -> None:
        executor = TaskExecutor(self.store, self.runtime, task, worker=self.worker, lease_s=self.lease_s,
                                max_parallel_turns=self.max_parallel_turns)
        try:
            await executor.run()
        except Exception:
            log.exception("task %s/%s crashed the executor", task["metadata"]["namespace"], task["metadata"]["name"])
        if executor.resolved is not None:  # its agents' actors may have just started: refresh their status
            for agent in executor.resolved.agents.values():
                await self._safely(self._refresh, "Agent", agent["metadata"]["namespace"], agent["metadata"]["name"])

    async def _refresh(self, kind: str, namespace: str, name: str) -> None:
        try:
            obj = await self.store.get(kind, namespace, name)
        except NotFound:
            return  # deleted meanwhile
        await reconcile(self.store, obj, self.probe)

    async def reconcile_changed(self, events) -> None:
        todo: set[tuple[str, str, str]] = set()
        for e in events:
            if e.source == RECONCILER or e.kind not in RECONCILED or e.type == "resource.status":
                continue
            if e.type != "resource.deleted":
                todo.add((e.kind, e.namespace, e.name))
            elif e.kind == "Agent":
                await delete_owned(self.store, e.namespace, e.name)
            for dependent in DEPENDENTS.get(e.kind, ()):
                for item in (await self.store.list(dependent, e.namespace)).items:
                    todo.add((dependent, e.namespace, item["metadata"]["name"]))
        for kind, ns, name in sorted(todo):
            await self._safely(self._refresh, kind, ns, name)

    async def resync(self) -> None:
        await self.claim_due(None)
        for kind in RECONCILED:
            for obj in await list_all(self.store, kind):
                await reconcile(self.store, obj, self.probe)

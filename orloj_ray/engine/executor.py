"""Run one claimed Task through its AgentSystem graph and record everything in the Store.

Messages flow along graph edges the way upstream's message-driven mode describes
(execution.md section 6): kickoff messages from ``system`` to the entry agents, one turn per
arriving message, fan-out with child branch ids, joins that gate a node until enough
upstream agents have arrived, and loops bounded by ``max_turns`` per branch. Turns of
independent branches run concurrently.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from orloj_ray.engine.resolve import ResolvedTask, TaskInvalid, resolve_task
from orloj_ray.engine.runtime import AgentRuntime
from orloj_ray.engine.status import TaskRecorder, TaskStopped
from orloj_ray.engine.turn import TurnRequest, TurnResult


@dataclass
class Envelope:
    message_id: str
    from_agent: str
    to_agent: str
    branch_id: str
    content: str
    hop: int
    parent_branch_id: str = ""
    parent_id: str = ""
    type: str = "task_handoff"


@dataclass
class _JoinState:
    required: int
    sources: list[Envelope] = field(default_factory=list)
    activated: bool = False


class TaskFailed(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


class TaskExecutor:
    """Executes one task attempt. Create one per run; not reusable."""

    def __init__(self, store, runtime: AgentRuntime, task: dict, *, worker: str):
        self.store = store
        self.runtime = runtime
        self.task = task
        self.namespace = task["metadata"]["namespace"]
        self.name = task["metadata"]["name"]
        self.spec = task.get("spec") or {}
        self.attempt = int((task.get("status") or {}).get("attempts") or 1)
        self.recorder = TaskRecorder(store, task, worker=worker)
        self.resolved: ResolvedTask | None = None
        self._joins: dict[str, _JoinState] = {}
        self._branch_turns: dict[str, int] = {}
        self._order: list[str] = []

    @property
    def task_id(self) -> str:
        return f"{self.namespace}/{self.name}"

    def _message_id(self, hop: int, src: str, dst: str) -> str:
        return f"{self.task_id}/a{self.attempt:03d}/h{hop:03d}/{src.lower()}/{dst.lower()}"

    async def run(self) -> None:
        started = time.monotonic()
        try:
            self.resolved = await resolve_task(self.store, self.task)
        except TaskInvalid as exc:
            await self.recorder.fail("task_invalid", str(exc))
            return
        graph = self.resolved.graph
        entries = graph.entry_agents()
        await self.recorder.start(self.resolved, entries)
        kickoff = self.spec.get("input", {}).get("topic") or f"task={self.name} attempt={self.attempt}"
        envelopes = [
            Envelope(self._message_id(i + 1, "system", agent), "system", agent, f"b{i + 1:03d}", kickoff,
                     hop=i + 1, type="task_start")
            for i, agent in enumerate(entries)
        ]
        failure: TaskFailed | None = None
        stopped = False
        try:
            async with asyncio.TaskGroup() as group:
                for env in envelopes:
                    await self.recorder.message_queued(env)
                    group.create_task(self._deliver(env, group))
        except* TaskStopped:
            stopped = True  # canceled from outside: its phase is already decided
        except* TaskFailed as failures:
            failure = failures.exceptions[0]
        if stopped:
            return
        if failure is not None:
            await self.recorder.fail(failure.code, failure.message)
            return
        await self.recorder.succeed(self._order, int((time.monotonic() - started) * 1000))

    async def _deliver(self, env: Envelope, group: asyncio.TaskGroup) -> None:
        graph = self.resolved.graph
        node = env.to_agent
        inbox = [env]
        join = graph.join_for(node)
        if join is not None and env.from_agent != "system":
            state = self._joins.setdefault(node, _JoinState(join.required(len(graph.predecessors[node]))))
            if state.activated:
                await self.recorder.message_done(env, "join_already_activated")
                return
            state.sources.append(env)
            if len(state.sources) < state.required:
                await self.recorder.join_wait(env, node, state.required, len(state.sources))
                return
            state.activated = True
            inbox = list(state.sources)
            await self.recorder.join_activated(env, node, join.mode, state.required, inbox)

        max_turns = int(self.spec.get("max_turns") or 0)
        turns = self._branch_turns.get(env.branch_id, 0) + 1
        self._branch_turns[env.branch_id] = turns
        if max_turns and turns > max_turns:
            await self.recorder.message_done(env, "turn_limit_reached")
            return

        result = await self._turn(node, env, inbox)
        self._order.append(node)
        targets = graph.successors[node]
        if max_turns and turns >= max_turns:
            targets = []
        children = []
        for i, target in enumerate(targets):
            branch = env.branch_id if len(targets) == 1 else f"{env.branch_id}.{i + 1:03d}"
            hop = env.hop + 1 if env.hop >= 1 else 2
            children.append(Envelope(
                self._message_id(max(hop, 2), node, target), node, target, branch, result.output,
                hop=max(hop, 2), parent_branch_id=env.branch_id if len(targets) > 1 else env.parent_branch_id,
                parent_id=env.message_id,
            ))
        await self.recorder.turn_done(env, inbox, result, children)
        for child in children:
            group.create_task(self._deliver(child, group))

    async def _turn(self, node: str, env: Envelope, inbox: list[Envelope]) -> TurnResult:
        resolved = self.resolved
        request = TurnRequest(
            namespace=self.namespace,
            task=self.name,
            attempt=self.attempt,
            agent=resolved.agents[node],
            endpoint=resolved.endpoints[node],
            tools=resolved.tools.get(node, []),
            input=dict(self.spec.get("input") or {}),
            inbox=[{"from": e.from_agent, "content": e.content, "message_id": e.message_id}
                   for e in inbox if e.from_agent != "system"],
            key=f"{self.task_id}/a{self.attempt:03d}/{node}/{env.branch_id}",
        )
        await self.recorder.message_running(env)
        try:
            result = await self.runtime.run_turn(request)
        except Exception as exc:  # the runtime itself broke (actor died, placement failed)
            code = getattr(exc, "code", "agent_runtime_error")
            await self.recorder.message_failed(env, f"{type(exc).__name__}: {exc}")
            raise TaskFailed(code, f'agent "{node}" could not run: {exc}') from exc
        if not result.ok:
            await self.recorder.turn_failed(env, result)
            raise TaskFailed(result.error_code, result.error)
        return result

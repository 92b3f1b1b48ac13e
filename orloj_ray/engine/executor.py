"""Run one claimed Task through its AgentSystem graph and record everything in the Store.

Messages flow along graph edges the way upstream's message-driven mode describes
(execution.md section 6): kickoff messages from ``system`` to the entry agents, one turn per
arriving message, fan-out with child branch ids, joins that gate a node until enough
upstream agents have arrived, and loops bounded by ``max_turns`` per branch. Turns of
independent branches run concurrently.

The task's recorded messages are the source of truth: a run that takes over a task (after a
supervisor crash or an expired lease) resumes from the messages that were not finished, so a
finished step is never executed again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from orloj_ray.engine.claims import LEASE_S, LeaseLost
from orloj_ray.engine.retry import RetryPolicy, decide
from orloj_ray.engine.resolve import ResolvedTask, TaskInvalid, resolve_task
from orloj_ray.engine.runtime import AgentRuntime
from orloj_ray.engine.status import TaskRecorder, TaskStopped
from orloj_ray.engine.turn import TurnRequest, TurnResult
from orloj_ray.errors import Unavailable
from orloj_ray.messaging import message_id

log = logging.getLogger("orloj_ray.executor")
UNFINISHED = ("Queued", "Running", "RetryPending")
REDELIVERIES = 5
"""Times a turn is redelivered when its agent's runtime is unavailable (an actor restarting)."""
REDELIVERY_BASE_S = 0.5


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

    @classmethod
    def from_record(cls, record: dict) -> "Envelope":
        hop = record["message_id"].split("/h", 1)[-1].split("/", 1)[0]
        return cls(record["message_id"], record["from_agent"], record["to_agent"], record.get("branch_id", ""),
                   record.get("content", ""), int(hop) if hop.isdigit() else 1, record.get("parent_branch_id", ""),
                   record.get("parent_id", ""), record.get("type", "task_handoff"))


@dataclass
class _JoinState:
    required: int
    sources: list[Envelope] = field(default_factory=list)
    activated_by: str = ""


class TaskFailed(Exception):
    def __init__(self, code: str, message: str, *, phase: str = "Failed"):
        super().__init__(message)
        self.code = code
        self.message = message
        self.phase = phase


def _spawn(group: asyncio.TaskGroup, coro) -> None:
    """Start a delivery, unless the group is already failing (then the task is ending anyway)."""
    try:
        group.create_task(coro)
    except RuntimeError:
        coro.close()


class TaskExecutor:
    """Executes (or resumes) one task attempt. Create one per run; not reusable."""

    def __init__(self, store, runtime: AgentRuntime, task: dict, *, worker: str, lease_s: float = LEASE_S,
                 max_parallel_turns: int | None = None):
        self.store = store
        self.runtime = runtime
        self.task = task
        self.namespace = task["metadata"]["namespace"]
        self.name = task["metadata"]["name"]
        self.spec = task.get("spec") or {}
        self.attempt = int((task.get("status") or {}).get("attempts") or 1)
        self.lease_s = lease_s
        self.recorder = TaskRecorder(store, task, worker=worker)
        self.resolved: ResolvedTask | None = None
        self._joins: dict[str, _JoinState] = {}
        self._branch_turns: dict[str, int] = {}
        self._turn_slots = asyncio.Semaphore(max_parallel_turns) if max_parallel_turns else None

    @property
    def task_id(self) -> str:
        return f"{self.namespace}/{self.name}"

    def _message_id(self, hop: int, src: str, dst: str) -> str:
        return message_id(self.namespace, self.name, self.attempt, hop, src, dst)

    async def run(self) -> None:
        started = time.monotonic()
        heartbeat = asyncio.create_task(self._heartbeat())
        try:
            await self._run(started)
        except (LeaseLost, TaskStopped) as exc:
            log.info("task %s stopped: %s", self.task_id, exc)
        finally:
            heartbeat.cancel()

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.lease_s / 3)
            try:
                await self.recorder.renew(self.lease_s)
            except (LeaseLost, TaskStopped):
                return
            except Exception:
                log.warning("lease renewal of %s failed", self.task_id, exc_info=True)

    async def _run(self, started: float) -> None:
        try:
            self.resolved = await resolve_task(self.store, self.task)
        except TaskInvalid as exc:
            await self.recorder.fail("task_invalid", str(exc))
            return
        envelopes = self._restore()
        if envelopes is None:
            entries = self.resolved.graph.entry_agents()
            await self.recorder.start(self.resolved, entries)
            kickoff = self.spec.get("input", {}).get("topic") or f"task={self.name} attempt={self.attempt}"
            envelopes = [
                Envelope(self._message_id(i + 1, "system", agent), "system", agent, f"b{i + 1:03d}", kickoff,
                         hop=i + 1, type="task_start")
                for i, agent in enumerate(entries)
            ]
            for env in envelopes:
                await self.recorder.message_queued(env)
        else:
            await self.recorder.resumed(len(envelopes))
        failure: TaskFailed | None = None
        stop: Exception | None = None
        try:
            async with asyncio.TaskGroup() as group:
                for env in envelopes:
                    group.create_task(self._deliver(env, group))
        except* (LeaseLost, TaskStopped) as stopped:
            stop = stopped.exceptions[0]
        except* TaskFailed as failures:
            failure = failures.exceptions[0]
        if stop is not None:
            raise stop
        if failure is not None:
            await self.recorder.fail(failure.code, failure.message, phase=failure.phase)
            return
        await self.recorder.succeed(int((time.monotonic() - started) * 1000))

    def _restore(self) -> list[Envelope] | None:
        """Unfinished messages of this attempt, with join and branch state; None for a fresh start."""
        status = self.task.get("status") or {}
        records = [m for m in status.get("messages") or [] if m.get("attempt") == self.attempt]
        if not records:
            return None
        by_id = {m["message_id"]: m for m in records}
        for state in status.get("join_states") or []:
            if state.get("attempt") != self.attempt:
                continue
            sources = [Envelope.from_record(by_id[s["message_id"]]) for s in state.get("sources") or []
                       if s["message_id"] in by_id]
            self._joins[state["node"]] = _JoinState(int(state.get("quorum_required") or 1), sources,
                                                    state.get("activated_by", "") if state.get("activated") else "")
        for record in records:
            if record.get("outcome") == "turn":
                branch = record.get("branch_id", "")
                self._branch_turns[branch] = self._branch_turns.get(branch, 0) + 1
        return [Envelope.from_record(m) for m in records if m.get("phase") in UNFINISHED]

    async def _deliver(self, env: Envelope, group: asyncio.TaskGroup) -> None:
        graph = self.resolved.graph
        node = env.to_agent
        inbox = [env]
        join = graph.join_for(node)
        if join is not None and env.from_agent != "system":
            state = self._joins.setdefault(node, _JoinState(join.required(len(graph.predecessors[node]))))
            if state.activated_by and state.activated_by != env.message_id:
                await self.recorder.message_done(env, "join_already_activated")
                return
            if not state.activated_by:
                if all(s.message_id != env.message_id for s in state.sources):
                    state.sources.append(env)
                if len(state.sources) < state.required:
                    await self.recorder.join_wait(env, node, state.required, len(state.sources))
                    return
                state.activated_by = env.message_id
                await self.recorder.join_activated(env, node, join.mode, state.required, state.sources)
            # declaration order of the upstream agents, not arrival order: same input in every mode
            rank = {a: i for i, a in enumerate(graph.predecessors[node])}
            inbox = sorted(state.sources, key=lambda e: (rank.get(e.from_agent, len(rank)), e.branch_id))

        max_turns = int(self.spec.get("max_turns") or 0)
        turns = self._branch_turns.get(env.branch_id, 0) + 1
        if max_turns and turns > max_turns:
            await self.recorder.message_done(env, "turn_limit_reached")
            return
        self._branch_turns[env.branch_id] = turns

        try:
            result = await self._turn(node, env, inbox)
        except TaskFailed as failure:
            if not await self._branch_failed(node, env, failure, group):
                raise
            return
        targets = [] if max_turns and turns >= max_turns else graph.successors[node]
        hop = max(env.hop + 1, 2)
        children = [
            Envelope(
                self._message_id(hop, node, target), node, target,
                env.branch_id if len(targets) == 1 else f"{env.branch_id}.{i + 1:03d}", result.output, hop=hop,
                parent_branch_id=env.branch_id if len(targets) > 1 else env.parent_branch_id,
                parent_id=env.message_id,
            )
            for i, target in enumerate(targets)
        ]
        await self.recorder.turn_done(env, inbox, result, children)
        for child in children:
            _spawn(group, self._deliver(child, group))

    async def _branch_failed(self, node: str, env: Envelope, failure: TaskFailed, group: asyncio.TaskGroup) -> bool:
        """Let the nearest downstream join absorb a dead branch when its ``on_failure`` says so.

        ``skip``: the join stops waiting for the dead branch; ``continue_partial``: the join runs
        at once with what has arrived. False (the task fails) for ``deadletter``, the default.
        """
        graph = self.resolved.graph
        target = self._tolerant_join(node)
        if target is None:
            return False
        join = graph.join_for(target)
        state = self._joins.setdefault(target, _JoinState(join.required(len(graph.predecessors[target]))))
        await self.recorder.branch_failed(env, target, join.on_failure, failure.message)
        if state.activated_by:
            return True
        if not (join.on_failure == "continue_partial" and state.sources):  # else: run now with what arrived
            state.required -= 1  # stop waiting for the dead branch
            if state.required <= 0:
                raise TaskFailed(failure.code, f'every branch into join "{target}" failed; last: {failure.message}',
                                 phase=failure.phase)
            if len(state.sources) < state.required:
                return True
        trigger = state.sources[-1]
        state.activated_by = trigger.message_id
        await self.recorder.join_activated(trigger, target, join.mode, state.required, state.sources)
        _spawn(group, self._deliver(trigger, group))
        return True

    def _tolerant_join(self, node: str) -> str | None:
        """The nearest join downstream of ``node`` whose ``on_failure`` lets the task go on."""
        graph, seen, frontier = self.resolved.graph, {node}, list(self.resolved.graph.successors[node])
        while frontier:
            current = frontier.pop(0)
            if current in seen:
                continue
            seen.add(current)
            join = graph.join_for(current)
            if join is not None and join.on_failure in ("skip", "continue_partial"):
                return current
            frontier += graph.successors[current]
        return None

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
            requirements=dict(self.spec.get("requirements") or {}),
        )
        policy = RetryPolicy.for_messages(self.spec)
        attempts = redeliveries = 0
        while True:
            attempts += 1
            await self.recorder.message_running(env, max_attempts=policy.max_attempts)
            try:
                if self._turn_slots is None:
                    result = await self.runtime.run_turn(request)
                else:
                    async with self._turn_slots:
                        result = await self.runtime.run_turn(request)
                if result.ok:
                    return result
                error = result
            except Exception as exc:  # the runtime broke: actor died or restarting, placement failed
                if isinstance(exc, Unavailable) and redeliveries < REDELIVERIES:
                    redeliveries += 1  # not the agent's fault: redeliver without spending an attempt
                    attempts -= 1
                    delay = min(REDELIVERY_BASE_S * 2 ** (redeliveries - 1), 10.0)
                    await self.recorder.message_retry(env, f"{type(exc).__name__}: {exc}", delay)
                    await asyncio.sleep(delay)
                    continue
                error = exc
            outcome = decide(policy, attempts, error, key=env.message_id)
            if not outcome.final:
                await self.recorder.message_retry(env, outcome.error, outcome.delay_s)
                await asyncio.sleep(outcome.delay_s)
                continue
            await self.recorder.turn_failed(env, error if isinstance(error, TurnResult) else None, outcome.error)
            message = f"message {env.message_id} dead-lettered after {attempts} attempts: {outcome.error}"
            raise TaskFailed(outcome.code, message, phase="DeadLetter" if outcome.retryable else "Failed")

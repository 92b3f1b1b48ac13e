"""TaskRecorder: every write an execution makes to a Task's status, in one place.

Writes are read-modify-write with optimistic concurrency (``mutate_status``) and serialized
per task in this process. Each write first checks that this run still holds the lease (owner
and epoch, ``LeaseLost`` otherwise) and that the task is not terminal (``orloj cancel``:
``TaskStopped``), so a deposed or canceled run never overwrites a newer decision. A turn's
result, its message's completion and the messages it sends are one write: after a crash the
task resumes from exactly the messages that were not finished. That write also marks the
sent messages Running when their turns start on delivery, and a task's last turn records its
success: a pipeline agent costs one write, not three.

A write is one Store call when it can be: the recorder remembers the object its last write
stored and writes the next status against that ``resourceVersion`` without reading it first.
A ``Conflict`` (someone else wrote the task meanwhile) falls back to a fresh read-modify-write,
so the checks above always run against what is stored. A task's kickoff messages are written
with its start (docs/benchmarks.md has the figures).

Every secret value resolved for the task (``mask_secrets``) is masked in everything the
recorder writes: the status (output, trace, history, messages, join states, lastError), the
task events, the audit records handed to ``persist_audit`` with ``self.mask``, and the payload
of every message it records, which is then the payload the executor sends on (a model that
echoes its key passes it neither to the next agent nor to the message log).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Collection
from datetime import timedelta
from typing import TYPE_CHECKING

from orloj_ray import lifecycle
from orloj_ray.errors import Conflict
from orloj_ray.lifecycle import ENGINE_SOURCE as SOURCE, LEASE_S, TERMINAL, LeaseLost, TaskStopped
from orloj_ray.observability import TaskMetrics, default_task_metrics
from orloj_ray.redact import RecordMask
from orloj_ray.store.base import Event
from orloj_ray.store.util import clone, mutate_status, now_rfc3339_nano, rfc3339nano, utcnow

if TYPE_CHECKING:
    from orloj_ray.messaging import Envelope
    from orloj_ray.engine.resolve import ResolvedTask
    from orloj_ray.engine.turn import TurnResult

TRACE_CAP, HISTORY_CAP, MESSAGES_CAP = 1000, 200, 500
__all__ = ["ApprovalPause", "LeaseLost", "SOURCE", "TERMINAL", "TaskRecorder", "TaskStopped"]


class ApprovalPause(TaskStopped):
    """A tool call waits for a ToolApproval: the task is ``WaitingApproval`` and this run ends;
    the controller resumes the task once the approval is decided or expires."""

    def __init__(self, message: str):
        super().__init__("pause_for_approval", lifecycle.Phase.WAITING_APPROVAL.value, message)


class TaskRecorder:
    def __init__(self, store, task: dict, *, worker: str, metrics: TaskMetrics | None = None,
                 mode: str = "message-driven"):
        self.store = store
        self.metrics = metrics or default_task_metrics()
        """Told of each event once its write is stored (``orloj_ray/observability/task_metrics.py``)."""
        self.namespace = task["metadata"]["namespace"]
        self.name = task["metadata"]["name"]
        self.system = (task.get("spec") or {}).get("system", "")
        status = task.get("status") or {}
        self.attempt = int(status.get("attempts") or 1)
        self.epoch = status.get("leaseEpoch")
        self.worker = worker
        self._lock = asyncio.Lock()
        self._seq = sum(1 for row in status.get("trace") or [] if row.get("attempt") == self.attempt)
        self._stored: dict | None = clone(task) if (task.get("metadata") or {}).get("resourceVersion") else None
        """The object as this recorder's last write stored it (None: read it first)."""
        self.mode = mode
        history = status.get("history") or []
        self._taken_by = history[-1].get("type", "") if history else ""
        """How this run got the task (``claim``, ``takeover``, ``running``: a resumed approval)."""
        self.mask = RecordMask()
        """The task's secret values, masked in every record (set by ``mask_secrets``)."""

    def mask_secrets(self, resolved: ResolvedTask) -> None:
        """Mask, from now on, every secret value the task's resolution handed out."""
        self.mask = RecordMask(resolved.secret_values)
        self._sent: dict[str, float] = {}
        """``time.monotonic()`` when each message's turn was marked Running here, for ``elapsed_ms``."""

    # -- plumbing -------------------------------------------------------------------------

    async def _write(self, change) -> dict:
        """``change(status)`` edits the status in place or returns the next one (a lifecycle
        transition); it runs only while this run holds the lease of a task that is not finished."""
        def apply(status: dict) -> dict:
            if status.get("phase") in TERMINAL:
                raise TaskStopped("write", status["phase"], f"task is {status['phase']}")
            lifecycle.check_owner(status, self.worker, self.epoch, "write")
            status = change(status) or status
            status = self.mask.record(status)
            for key, cap in (("trace", TRACE_CAP), ("history", HISTORY_CAP), ("messages", MESSAGES_CAP)):
                if len(status.get(key) or []) > cap:
                    status[key] = status[key][-cap:]
            return status

        async with self._lock:
            try:
                self._stored = await self._commit(apply)
            except BaseException:
                self._stored = None
                raise
            return self._stored

    def tokens_used(self) -> int | None:
        """``tokens_used_total`` as this run last stored it; None while unknown (a write is under way)."""
        if self._stored is None or self._lock.locked():
            return None
        return int(((self._stored.get("status") or {}).get("output") or {}).get("tokens_used_total") or 0)

    async def _commit(self, apply) -> dict:
        """One write against the remembered resourceVersion; on Conflict, read-modify-write."""
        stored, seq = self._stored, self._seq
        if stored is not None:
            self._stored = None
            status = apply(stored.get("status") or {})
            try:
                return await self.store.update_status("Task", self.namespace, self.name, status,
                                                      stored["metadata"]["resourceVersion"], source=SOURCE)
            except Conflict:
                self._seq = seq  # applied again below, to what is stored now
        return await mutate_status(self.store, "Task", self.namespace, self.name, apply, source=SOURCE)

    def _trace(self, status: dict, kind: str, **fields) -> None:
        self._seq += 1
        row = {"timestamp": now_rfc3339_nano(), "step_id": f"a{self.attempt:03d}.s{self._seq:04d}",
               "attempt": self.attempt, "type": kind}
        row.update({k: v for k, v in fields.items() if v not in (None, "")})
        status.setdefault("trace", []).append(row)

    async def _event(self, transition: lifecycle.Transition, status: dict) -> None:
        await self.store.publish(Event(
            id=0, timestamp="", source=SOURCE, type=f"task.{transition.event}", kind="Task", name=self.name,
            namespace=self.namespace, action=str(status.get("phase", "")).lower(),
            data={**lifecycle.event_data(status), "claimedBy": self.worker,
                  "lastError": self.mask.text(status.get("lastError", ""))},
        ))

    def _message(self, status: dict, env: Envelope, **fields) -> None:
        messages = status.setdefault("messages", [])
        record = next((m for m in messages if m.get("message_id") == env.message_id), None)
        if record is None:
            env.payload = self.mask.record(env.payload)  # what is sent on is what is recorded
            record = {
                "timestamp": now_rfc3339_nano(), "message_id": env.message_id, "idempotency_key": env.message_id,
                "task_id": f"{self.namespace}/{self.name}", "attempt": self.attempt, "system": self.system,
                "from_agent": env.from_agent, "to_agent": env.to_agent, "branch_id": env.branch_id,
                "parent_branch_id": env.parent_branch_id, "type": env.type, "content": env.content,
                "trace_id": f"{self.namespace}/{self.name}/a{self.attempt:03d}", "parent_id": env.parent_id,
                "phase": "Queued", "attempts": 0, "max_attempts": 1,
            }
            messages.append(record)
        record.update({k: v for k, v in fields.items() if v is not None})

    # -- lifecycle ------------------------------------------------------------------------

    async def renew(self, lease_s: float = LEASE_S) -> None:
        await self._write(lambda status: lifecycle.renew(status, lease_s=lease_s))

    async def release(self) -> None:
        """Give the lease up now (a drain): the next supervisor claims the task without waiting."""
        await self._write(lambda status: lifecycle.release(status, worker=self.worker))

    async def claimed(self) -> None:
        """Publish the claim (``task.claimed``, with the worker; ``task.running`` for a resumed
        approval), as upstream's TaskController does: watchers see who took the task."""
        transition = lifecycle.RESUME if self._taken_by == "running" else lifecycle.CLAIM
        status = (self._stored or {}).get("status") or {"phase": "Running", "attempts": self.attempt,
                                                         "claimedBy": self.worker, "assignedWorker": self.worker}
        await self._event(transition, status)

    async def resumed(self, pending: int) -> None:
        await self._write(lambda s: self._trace(s, "task_resumed", message=f"resuming with {pending} unfinished messages"))

    async def start(self, resolved: ResolvedTask, entries: list[str], queued: list[Envelope] = (), *,
                    running: Collection[str] = (), max_attempts: int = 1) -> None:
        """The task starts; ``queued``: its kickoff messages, recorded in the same write, those in
        ``running`` (ids) as Running (see ``turn_done``)."""
        def change(status: dict) -> None:
            output = status.setdefault("output", {})
            output.update({"system": self.system, "runtime.mode": self.mode, "runtime.entry_agent": ",".join(entries)})
            self._trace(status, "task_start", message=f"system={self.system} agents={len(resolved.graph.agents)}")
            for env in queued:
                self._message(status, env)
                if env.message_id in running:
                    self._running(status, env, max_attempts)

        await self._write(change)
        self.metrics.started(list(queued), running)

    async def message_queued(self, env: Envelope) -> None:
        await self._write(lambda s: self._message(s, env))
        self.metrics.message(env, "queued")

    async def message_running(self, env: Envelope, *, max_attempts: int = 1) -> None:
        await self._write(lambda status: self._running(status, env, max_attempts))
        self.metrics.message(env, "running")

    def _running(self, status: dict, env: Envelope, max_attempts: int) -> None:
        """A delivery of ``env`` starts: counted in its ``attempts`` before the turn runs."""
        record = next((m for m in status.get("messages") or [] if m.get("message_id") == env.message_id), None)
        self._message(status, env, phase="Running", worker=self.worker, max_attempts=max_attempts,
                      attempts=(record or {}).get("attempts", 0) + 1)
        self._trace(status, "agent_start", agent=env.to_agent, message=f"from={env.from_agent} branch={env.branch_id}")
        self._sent[env.message_id] = time.monotonic()

    async def message_done(self, env: Envelope, why: str) -> None:
        def change(status: dict) -> None:
            self._message(status, env, phase="Succeeded", processed_at=now_rfc3339_nano(), outcome=why)
            self._trace(status, "agent_message_processed", agent=env.to_agent,
                        message=f"message_id={env.message_id} status={why}")

        await self._write(change)
        self.metrics.message(env, "succeeded")

    async def message_retry(self, env: Envelope, error: str, delay_s: float) -> None:
        def change(status: dict) -> None:
            due = rfc3339nano(utcnow() + timedelta(seconds=max(0.0, delay_s)))
            self._message(status, env, phase="RetryPending", last_error=error, next_attempt_at=due)
            self._trace(status, "agent_message_retry_scheduled", agent=env.to_agent, retryable=True,
                        message=f"redelivery of {env.message_id} in {delay_s:g}s: {error}")

        await self._write(change)
        self.metrics.retry(env)

    async def turn_waiting(self, env: Envelope, reason: str) -> None:
        """The turn waits for an agent actor slot (every node the agent may use is at its cap)."""
        await self._write(lambda s: self._trace(s, "agent_capacity_wait", agent=env.to_agent,
                                                error_code="agent_capacity", message=reason))

    async def join_wait(self, env: Envelope, node: str, required: int, received: int, *,
                        mode: str = "wait_for_all") -> None:
        def change(status: dict) -> None:
            self._message(status, env, phase="Succeeded", processed_at=now_rfc3339_nano(), outcome="join_wait")
            self._join_state(status, node, env, required, mode=mode)
            self._trace(status, "agent_message_join_wait", agent=node,
                        message=f"join waiting: received={received} required={required}")
            self._trace(status, "agent_message_processed", agent=node,
                        message=f"message_id={env.message_id} status=join_wait")

        await self._write(change)
        self.metrics.message(env, "succeeded")

    async def branch_failed(self, env: Envelope, join_node: str, policy: str, error: str) -> None:
        await self._write(lambda s: self._trace(
            s, "join_branch_failed", agent=env.to_agent,
            message=f"branch {env.branch_id} failed before join {join_node} (on_failure={policy}): {error}"))

    async def join_activated(self, env: Envelope, node: str, mode: str, required: int, sources: list) -> None:
        def change(status: dict) -> None:
            state = self._join_state(status, node, env, required, mode=mode)
            state.update({"activated": True, "activated_at": now_rfc3339_nano(), "activated_by": env.message_id})

        await self._write(change)

    def _join_state(self, status: dict, node: str, env: Envelope, required: int, mode: str = "wait_for_all") -> dict:
        states = status.setdefault("join_states", [])
        state = next((s for s in states if s["node"] == node and s["attempt"] == self.attempt), None)
        if state is None:
            state = {"attempt": self.attempt, "node": node, "mode": mode, "expected": required,
                     "quorum_required": required, "sources": []}
            states.append(state)
        if all(src["message_id"] != env.message_id for src in state["sources"]):
            state["sources"].append({"message_id": env.message_id, "from_agent": env.from_agent,
                                     "branch_id": env.branch_id, "timestamp": now_rfc3339_nano(),
                                     "payload": env.content[:1024]})
        return state

    async def turn_done(self, env: Envelope, inbox: list, result: TurnResult, children: list, *,
                        running: Collection[str] = (), max_attempts: int = 1,
                        finished_ms: int | None = None) -> None:
        """A turn's result, its message's completion and the messages it sends, in one write.

        Children whose ids are in ``running`` are recorded as Running at once (their delivery
        follows this write; a turn that starts at once needs no write of its own), and with
        ``finished_ms`` (the last turn of a task with nothing else in flight) the task's success
        is part of the same write: two fewer writes per pipeline agent, the states in between
        skipped, none added.

        ``agent_end`` carries ``latency_ms`` (the turn inside the agent's process) and, when this
        run started the turn, ``elapsed_ms``: from the message going Running to its result,
        which adds the actor's start, placement and the mailbox to the turn itself."""
        sent = self._sent.pop(env.message_id, None)
        elapsed_ms = int((time.monotonic() - sent) * 1000) if sent is not None else None

        def change(status: dict) -> None:
            for row in result.trace:
                self._trace(status, row["type"], **{k: v for k, v in row.items() if k not in ("type", "timestamp")})
            self._trace(
                status, "agent_end", agent=result.agent, model=result.model, tokens=result.tokens,
                input_tokens=result.input_tokens, output_tokens=result.output_tokens,
                token_usage_source=result.token_source, latency_ms=result.duration_ms, elapsed_ms=elapsed_ms,
                tool_calls=result.tool_calls, branch_id=env.branch_id,
                input="\n\n".join(e.content for e in inbox), output=result.output,
                message=f"steps={result.steps} tool_calls={result.tool_calls} tokens={result.tokens}",
            )
            self._message(status, env, phase="Succeeded", processed_at=now_rfc3339_nano(), outcome="turn")
            self._trace(status, "agent_message_processed", agent=result.agent,
                        message=f"message_id={env.message_id} status={'forwarded' if children else 'succeeded'}")
            for child in children:
                self._message(status, child)
                self._trace(status, "agent_message", agent=child.from_agent,
                            message=f"agent message published: id={child.message_id} to={child.to_agent}")
            for child in children:
                if child.message_id in running:
                    self._running(status, child, max_attempts)
            output = status.setdefault("output", {})
            index = int(output.get("agents_executed") or 0) + 1
            prefix = f"agent.{index}"
            order = output.get("execution_order")
            output.update({
                f"{prefix}.name": result.agent, f"{prefix}.model": result.model,
                f"{prefix}.steps": str(result.steps), f"{prefix}.tool_calls": str(result.tool_calls),
                f"{prefix}.duration_ms": str(result.duration_ms), f"{prefix}.tokens_used": str(result.tokens),
                f"{prefix}.token_usage_source": result.token_source,
                "agents_executed": str(index),
                "execution_order": f"{order} -> {result.agent}" if order else result.agent,
                "last_agent": result.agent, "last_output": result.output, "last_event": _last_event(result),
                "last_duration_ms": str(result.duration_ms), "last_tool_calls": str(result.tool_calls),
                "last_steps": str(result.steps), "last_estimated_tokens": str(result.estimated_tokens),
                "last_tokens_used": str(result.tokens), "last_token_usage_source": result.token_source,
                "tokens_estimated_total": str(int(output.get("tokens_estimated_total") or 0) + result.estimated_tokens),
                "tokens_used_total": str(int(output.get("tokens_used_total") or 0) + result.tokens),
            })
            if finished_ms is not None:
                return self._succeeded(status, finished_ms)
            return status

        stored = await self._write(change)
        self.metrics.turn_done(self.namespace, env, result, children, running)
        if finished_ms is not None:
            self.metrics.finished(self.namespace, self.system, stored["status"], finished_ms)
            await self._event(lifecycle.SUCCEED, stored["status"])

    async def turn_failed(self, env: Envelope, result: TurnResult | None, error: str, *, retryable: bool = False,
                          code: str = "") -> None:
        """The message is dead: record what the last attempt did and why it failed (upstream's
        ``agent_message_non_retryable`` row first when no retry could help)."""
        code = code or (result.error_code if result else "")

        def change(status: dict) -> None:
            for row in (result.trace if result else []):
                self._trace(status, row["type"], **{k: v for k, v in row.items() if k not in ("type", "timestamp")})
            if not retryable:
                self._trace(status, "agent_message_non_retryable", agent=env.to_agent, error_code=code,
                            retryable=False, message=error)
            self._trace(status, "agent_message_deadletter", agent=env.to_agent, error_code=code, message=error)
            self._message(status, env, phase="DeadLetter", last_error=error, processed_at=now_rfc3339_nano())

        await self._write(change)
        self.metrics.turn_failed(self.namespace, env, result)

    async def wait_approval(self, env: Envelope, result: TurnResult, approval: str) -> None:
        """Pause for a person: the turn's trace, the message back to RetryPending (the resumed
        run re-runs only this turn), the task ``WaitingApproval`` and its lease released."""
        def change(status: dict) -> None:
            for row in result.trace:
                self._trace(status, row["type"], **{k: v for k, v in row.items() if k not in ("type", "timestamp")})
            self._message(status, env, phase="RetryPending", last_error=result.error)
            return lifecycle.pause_for_approval(status, worker=self.worker, approval=approval, error=result.error)

        stored = await self._write(change)
        self.metrics.approval_wait(self.namespace, env, result)
        await self._event(lifecycle.PAUSE_FOR_APPROVAL, stored["status"])

    async def retry_scheduled(self, code: str, message: str, delay_s: float) -> None:
        """The attempt failed and the task's ``spec.retry`` allows another: back to Pending with
        ``nextAttemptAt`` (execution.md 8.1); the next claim starts a fresh attempt."""
        def change(status: dict) -> dict:
            self._trace(status, "task_retry_scheduled", error_code=code, retryable=True,
                        message=f"{message} (next attempt in {delay_s:g}s)")
            return lifecycle.schedule_retry(status, worker=self.worker, code=code, error=message, delay_s=delay_s)

        stored = await self._write(change)
        await self._event(lifecycle.SCHEDULE_RETRY, stored["status"])

    async def succeed(self, duration_ms: int) -> None:
        stored = await self._write(lambda status: self._succeeded(status, duration_ms))
        self.metrics.finished(self.namespace, self.system, stored["status"], duration_ms)
        await self._event(lifecycle.SUCCEED, stored["status"])

    def _succeeded(self, status: dict, duration_ms: int) -> dict:
        output = status.setdefault("output", {})
        output.update({"result": "executed", "duration_ms": str(duration_ms),
                       "final_output": output.get("last_output", "")})
        self._trace(status, "task_summary",
                    message=f"agents={output.get('agents_executed', '0')} duration_ms={duration_ms}")
        return lifecycle.succeed(status, worker=self.worker)

    async def fail(self, code: str, message: str, *, phase: str = "Failed") -> None:
        dead = phase == lifecycle.Phase.DEAD_LETTER.value

        def change(status: dict) -> dict:
            self._trace(status, f"task_{phase.lower()}", error_code=code, message=message)
            return lifecycle.fail(status, worker=self.worker, code=code, message=message, dead_letter=dead)

        stored = await self._write(change)
        self.metrics.finished(self.namespace, self.system, stored["status"])
        await self._event(lifecycle.DEAD_LETTER if dead else lifecycle.FAIL, stored["status"])


def _last_event(result: TurnResult) -> str:
    """Upstream's ``last_event``: the last thing the turn's runtime said (its last trace row)."""
    for row in reversed(result.trace):
        if row.get("message"):
            return str(row["message"])[:500]
    return f"steps={result.steps} tool_calls={result.tool_calls}"

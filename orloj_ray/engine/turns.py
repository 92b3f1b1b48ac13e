"""One message's turn on its agent, with everything around it: the governance that holds for it,
retries, redeliveries, waits for an actor, and the pause for a person's approval.

``TurnRunner.run`` returns the successful ``TurnResult`` or raises ``TaskFailed`` (the message
is dead-lettered and recorded so), ``ApprovalPause`` (the task waits for a ToolApproval) or the
lease errors of ``orloj_ray.lifecycle``. The loop, per delivery of the message:

* the config cache is synced (what was committed before the message was recorded governs its
  first turn), the agent must still exist (``agent_not_found``), and what governs the turn is
  gathered; an approval of this message that was denied or has expired fails it now;
* the agent runtime runs the turn; its audit records are written;
* a runtime that is *unavailable* (an actor restarting, placement under way) redelivers without
  spending an attempt (up to ``REDELIVERIES`` times, with backoff); an actor being reclaimed
  redelivers at once; no actor slot free waits (``agent_capacity``, once in the trace);
* a failed turn is retried per the task's message policy (``orloj_ray.retry``) or ends the
  message: retryable errors that ran out of attempts and errors matching the task's
  ``message_retry.non_retryable`` dead-letter the task, other non-retryable ones fail it.
"""

from __future__ import annotations

import asyncio
import logging

from orloj_ray.engine import approvals
from orloj_ray.engine.approvals import persist_audit
from orloj_ray.engine.fleet import AgentCapacity, AgentNotFound, AgentReclaimed
from orloj_ray.engine.resolve import ResolvedTask
from orloj_ray.engine.runtime import AgentRuntime
from orloj_ray.engine.status import ApprovalPause, TaskRecorder
from orloj_ray.engine.turn import TurnRequest, TurnResult
from orloj_ray.engine.turn_governance import load_turn_governance
from orloj_ray.errors import NotFound, Unavailable
from orloj_ray.governance import APPROVAL_PENDING
from orloj_ray.lifecycle import LeaseLost, TaskStopped
from orloj_ray.messaging import Envelope
from orloj_ray.retry import Backoff, RetryPolicy, decide
from orloj_ray.store.cache import CachedReads

log = logging.getLogger("orloj_ray.turns")

REDELIVERIES = 5
"""Times a turn is redelivered when its agent's runtime is unavailable (an actor restarting)."""
REDELIVERY_BASE_S = 0.5
CAPACITY_WAIT_S = 1.0
"""Between asks for an agent actor while every node the agent may use is at its cap."""


class TaskFailed(Exception):
    """A message is dead: the task ends ``phase`` (``Failed`` or ``DeadLetter``) with ``code``."""

    settles = True
    """The message's delivery is done with (acked): the failure is recorded."""

    def __init__(self, code: str, message: str, *, phase: str = "Failed", retryable: bool = False):
        super().__init__(message)
        self.code = code
        self.message = message
        self.phase = phase
        self.retryable = retryable
        """Whether a new attempt of the whole task might succeed (task-level retry)."""


class TurnRunner:
    def __init__(self, *, store, reads: CachedReads, runtime: AgentRuntime, recorder: TaskRecorder, task: dict,
                 resolved: ResolvedTask, policy: RetryPolicy, syncs: dict[str, asyncio.Future],
                 marked_running: set[str], turn_slots: asyncio.Semaphore | None = None):
        self.store = store
        self.reads = reads
        self.runtime = runtime
        self.recorder = recorder
        self.task = task
        self.namespace = task["metadata"]["namespace"]
        self.name = task["metadata"]["name"]
        self.spec = task.get("spec") or {}
        self.attempt = recorder.attempt
        self.resolved = resolved
        self.policy = policy
        self.syncs = syncs
        """Per message: the config sync started with the write that recorded it."""
        self.marked_running = marked_running
        """Messages recorded Running by the write that created them: their first delivery writes nothing."""
        self.turn_slots = turn_slots
        self._waiting: set[str] = set()
        """Messages whose wait for an agent actor slot is in the trace already."""

    def request(self, node: str, env: Envelope, inbox: list[Envelope]) -> TurnRequest:
        return TurnRequest(
            namespace=self.namespace, task=self.name, attempt=self.attempt,
            agent=self.resolved.agents[node], endpoint=self.resolved.endpoints[node],
            tools=self.resolved.tools.get(node, []), input=dict(self.spec.get("input") or {}),
            inbox=[{"from": e.from_agent, "content": e.content, "message_id": e.message_id}
                   for e in inbox if e.from_agent != "system"],
            # a loop revisits a branch: the hop tells its turns apart
            key=f"{self.namespace}/{self.name}/a{self.attempt:03d}/{node}/{env.branch_id}/h{env.hop:03d}",
            requirements=dict(self.spec.get("requirements") or {}), message_id=env.message_id,
        )

    async def run(self, node: str, env: Envelope, inbox: list[Envelope]) -> TurnResult:
        request = self.request(node, env, inbox)
        attempts = redeliveries = reclaims = 0
        recorded = env.message_id in self.marked_running  # the first delivery is recorded Running already
        self.marked_running.discard(env.message_id)
        while True:
            attempts += 1
            if not recorded:
                await self.recorder.message_running(env, max_attempts=self.policy.max_attempts)
            recorded = False
            try:
                request.governance = await self._governance(node, env)
                if self.turn_slots is None:
                    result = await self.runtime.run_turn(request)
                else:
                    async with self.turn_slots:
                        result = await self.runtime.run_turn(request)
                await persist_audit(self.store, result.audit, self.recorder.mask)
                if result.ok:
                    return result
                if result.error_code == APPROVAL_PENDING:
                    await self._pause_for_approval(node, env, result)
                error = result
            except (TaskFailed, TaskStopped, LeaseLost):
                raise
            except AgentCapacity as exc:  # no node may take another actor: wait, spend nothing
                attempts -= 1
                recorded = True  # still Running; the wait is in the trace once
                if env.message_id not in self._waiting:
                    self._waiting.add(env.message_id)
                    await self.recorder.turn_waiting(env, str(exc))
                await asyncio.sleep(CAPACITY_WAIT_S)
                continue
            except Exception as exc:  # the runtime broke: actor died or restarting, placement failed
                if isinstance(exc, AgentReclaimed) and reclaims < REDELIVERIES:  # a fresh actor, at once
                    reclaims += 1
                    attempts -= 1
                    recorded = True
                    continue
                if isinstance(exc, Unavailable) and redeliveries < REDELIVERIES:
                    redeliveries += 1  # not the agent's fault: redeliver without spending an attempt
                    attempts -= 1
                    delay = Backoff(REDELIVERY_BASE_S, 10.0, redeliveries - 1).next()
                    await self.recorder.message_retry(env, f"{type(exc).__name__}: {exc}", delay)
                    await asyncio.sleep(delay)
                    continue
                error = exc
            outcome = decide(self.policy, attempts, error, key=env.message_id)
            if not outcome.final:
                await self.recorder.message_retry(env, outcome.error, outcome.delay_s)
                await asyncio.sleep(outcome.delay_s)
                continue
            await self.recorder.turn_failed(env, error if isinstance(error, TurnResult) else None, outcome.error,
                                            retryable=outcome.retryable, code=outcome.code)
            message = f"message {env.message_id} dead-lettered after {attempts} attempts: {outcome.error}"
            dead = outcome.retryable or outcome.reason == "configured_non_retryable"
            raise TaskFailed(outcome.code, message, phase="DeadLetter" if dead else "Failed",
                             retryable=outcome.retryable)

    async def _governance(self, node: str, env: Envelope):
        """What governs this turn; a denied or expired approval of this message fails it now,
        without running the turn again (governance.md section 5)."""
        # a policy, role or permission committed before the write that recorded this message
        # (its first delivery) or before this attempt (a retry) governs the turn
        synced = self.syncs.pop(env.message_id, None)
        await (synced if synced is not None else self.reads.sync())
        try:
            await self.reads.get("Agent", self.namespace, node)
        except NotFound:  # deleted while the task ran: a turn for it fails, never runs on a stale copy
            raise AgentNotFound(f'agent "{node}" not found in namespace "{self.namespace}": it was deleted '
                                "while the task ran") from None
        gov = await load_turn_governance(self.reads, self.task, self.resolved.agents[node], env.message_id,
                                         tokens_used=self.recorder.tokens_used())
        if gov.approvals:
            names = {g["name"] for g in gov.approvals}
            objs = [await approvals.expire_if_due(self.store, a)
                    for a in await approvals.task_approvals(self.reads, self.namespace, self.name)
                    if a["metadata"]["name"] in names]
            failed = approvals.decided_failure(objs)
            if failed is not None:
                code, message = failed
                await self.recorder.turn_failed(env, None, message, retryable=False, code=code)
                raise TaskFailed(code, message)
        return gov

    async def _pause_for_approval(self, node: str, env: Envelope, result: TurnResult) -> None:
        """The turn stopped at a call that needs a person: ask (a ToolApproval bound to the call)
        and pause the task; only this turn runs again once the approval is decided."""
        approval = await approvals.request_approval(self.store, self.namespace, self.name, env.message_id, node,
                                                    result.approval)
        name = approval["metadata"]["name"]
        await self.recorder.wait_approval(env, result, name)
        raise ApprovalPause(f"task {self.namespace}/{self.name} waits for tool approval {name}")

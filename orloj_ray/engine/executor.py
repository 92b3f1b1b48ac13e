"""Run one claimed Task attempt through its AgentSystem graph and record everything in the Store.

The jobs are split by module: ``routing`` says what a message means and what a turn sends on
(pure), ``delivery`` moves messages through the log (acks, redelivery, stalls), ``turns`` runs
one message's turn (governance, retries, approvals), ``status`` records each step
(``TaskRecorder``, the only writer of the task's status here). This module orchestrates them,
and keeps a task to one Store write per turn: the write that records a turn also records the
messages it sends (as Running when their turns start on delivery) and, for the last turn, the
task's success.

The task's recorded messages are the source of truth: a run that takes over a task (after a
supervisor crash or an expired lease) resumes from the messages that were not finished, so a
finished step is never executed again.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time

from orloj_ray.engine.delivery import Deliveries, spawn
from orloj_ray.engine.mailbox import Mailbox
from orloj_ray.engine.resolve import CONFIG_KINDS, ResolvedTask, TaskInvalid, resolve_task
from orloj_ray.engine.routing import Activate, Done, FailTask, Router, Wait
from orloj_ray.engine.runtime import AgentRuntime
from orloj_ray.engine.status import TaskRecorder
from orloj_ray.engine.turns import TaskFailed, TurnRunner
from orloj_ray.lifecycle import LEASE_S, LeaseLost, TaskStopped
from orloj_ray.messaging import Envelope, message_id
from orloj_ray.retry import RetryPolicy, delay
from orloj_ray.store.cache import CachedReads

log = logging.getLogger("orloj_ray.executor")
UNFINISHED = ("Queued", "Running", "RetryPending")

__all__ = ["Drained", "TaskExecutor", "TaskFailed"]


def _hop(message_id_: str) -> int:
    hop = message_id_.split("/h", 1)[-1].split("/", 1)[0]
    return int(hop) if hop.isdigit() else 1


class Drained(Exception):
    """The supervisor is draining: no new turn starts; the task is resumed by the next owner."""


class TaskExecutor:
    """Executes (or resumes) one task attempt. Create one per run; not reusable."""

    def __init__(self, store, runtime: AgentRuntime, task: dict, *, worker: str, lease_s: float = LEASE_S,
                 max_parallel_turns: int | None = None, mailbox: Mailbox | None = None,
                 reads: CachedReads | None = None, synced: asyncio.Future | None = None, shard: int = 0,
                 mode: str = "message-driven"):
        self.store = store
        self.reads = reads or CachedReads(store, CONFIG_KINDS)
        """Where systems, agents, policies, ... are read; synced before each use (the Controller shares one)."""
        self._claim_sync = synced
        """The sync of the configuration this run resolves, started with the claim (None: one
        when the run starts)."""
        self.runtime = runtime
        self.shard = shard
        """The task's supervisor shard: its messages travel on that shard's subjects."""
        self.task = task
        self.namespace = task["metadata"]["namespace"]
        self.name = task["metadata"]["name"]
        self.spec = task.get("spec") or {}
        self.attempt = int((task.get("status") or {}).get("attempts") or 1)
        self.lease_s = lease_s
        self.recorder = TaskRecorder(store, task, worker=worker, mode=mode)
        self.resolved: ResolvedTask | None = None
        self.router: Router | None = None
        self._turn_slots = asyncio.Semaphore(max_parallel_turns) if max_parallel_turns else None
        self.deliveries = Deliveries(mailbox, self.task_id, self.attempt, self._process)
        self._syncs: dict[str, asyncio.Future] = {}
        """The config-cache sync started with the write that recorded a message (``sync_soon``):
        its first turn is governed by what that sync saw instead of waiting for one of its own."""
        self._marked_running: set[str] = set()
        """Messages recorded as Running by the write that created them: their first delivery writes nothing more."""
        self._turns: TurnRunner | None = None
        self._succeeded = False
        """The last turn's write recorded the task's success too."""
        self._left_unfinished = False
        self._started = time.monotonic()  # reset when the run starts

    @property
    def draining(self) -> bool:
        return self.deliveries.draining

    def drain(self) -> None:
        """Running turns finish and record, no new one starts (``orloj down``)."""
        self.deliveries.drain()

    @property
    def task_id(self) -> str:
        return f"{self.namespace}/{self.name}"

    def _envelope(self, src: str, dst: str, hop: int, branch: str, content: str, **fields) -> Envelope:
        return Envelope(message_id(self.namespace, self.name, self.attempt, hop, src, dst), dst, from_agent=src,
                        namespace=self.namespace, task=self.name, attempt=self.attempt,
                        system=self.spec.get("system", ""), branch_id=branch, payload=content, hop=hop,
                        shard=self.shard, **fields)

    def _from_record(self, record: dict) -> Envelope:
        return Envelope(record["message_id"], record["to_agent"], from_agent=record["from_agent"],
                        type=record.get("type", "task_handoff"), namespace=self.namespace, task=self.name,
                        attempt=self.attempt, system=self.spec.get("system", ""),
                        branch_id=record.get("branch_id", ""), parent_branch_id=record.get("parent_branch_id", ""),
                        payload=record.get("content", ""), parent_id=record.get("parent_id", ""),
                        hop=_hop(record["message_id"]), shard=self.shard)

    @functools.cached_property
    def _message_policy(self) -> RetryPolicy:
        return RetryPolicy.for_messages(self.spec)

    def _elapsed_ms(self) -> int:
        return int((time.monotonic() - self._started) * 1000)

    # -- the run ----------------------------------------------------------------------------------

    async def run(self) -> None:
        self._started = time.monotonic()
        heartbeat = asyncio.create_task(self._heartbeat())
        try:
            await self._run()
        except (LeaseLost, TaskStopped) as exc:
            log.info("task %s stopped: %s", self.task_id, exc)
        except Drained:
            log.info("task %s drained; releasing its lease", self.task_id)
            try:
                await self.recorder.release()
            except Exception:  # LeaseLost or the store is gone: the lease simply expires
                log.info("could not release the lease of %s", self.task_id, exc_info=True)
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

    async def _run(self) -> None:
        await self.recorder.claimed()
        synced = self._claim_sync or self.reads.sync_soon()
        try:
            await synced
            self.resolved = await resolve_task(self.reads, self.task)
        except TaskInvalid as exc:
            await self.recorder.fail("task_invalid", str(exc))
            return
        self.recorder.mask_secrets(self.resolved)
        self.router = Router(self.resolved.graph, max_turns=int(self.spec.get("max_turns") or 0),
                             envelope=self._envelope)
        self._turns = TurnRunner(store=self.store, reads=self.reads, runtime=self.runtime, recorder=self.recorder,
                                 task=self.task, resolved=self.resolved, policy=self._message_policy,
                                 syncs=self._syncs, marked_running=self._marked_running, turn_slots=self._turn_slots)
        envelopes = self._restore()
        fresh = envelopes is None
        if fresh:
            kickoff = self.spec.get("input", {}).get("topic") or f"task={self.name} attempt={self.attempt}"
            envelopes = self.router.kickoff(kickoff)
            running = self._mark_running(envelopes)  # one write with the kickoff messages, Running
            self._syncs.update((env.message_id, synced) for env in envelopes)  # governed as resolved
            await self.recorder.start(self.resolved, [e.to_agent for e in envelopes], envelopes, running=running,
                                      max_attempts=self._message_policy.max_attempts)
        else:
            await self.recorder.resumed(len(envelopes))
        failure: TaskFailed | None = None
        stop: Exception | None = None
        try:
            async with asyncio.TaskGroup() as group:
                self.deliveries.open(group)
                for env in envelopes:
                    if fresh:
                        await self.deliveries.send(env)
                    else:  # resumed from the Store's record: a redelivery from the log joins it
                        self.deliveries.take(env)
                group.create_task(self.deliveries.until_idle())
        except* (LeaseLost, TaskStopped, Drained) as stopped:
            stop = stopped.exceptions[0]
        except* TaskFailed as failures:
            failure = failures.exceptions[0]
        finally:
            self.deliveries.close()
        if stop is None and self.draining and (self._left_unfinished or self.deliveries.sent):
            stop = Drained()
        if stop is not None:
            raise stop
        if failure is not None:
            await self._finish_failed(failure)
            return
        if not self._succeeded:
            await self.recorder.succeed(self._elapsed_ms())

    async def _finish_failed(self, failure: TaskFailed) -> None:
        """The attempt failed: schedule the task's next attempt when its ``spec.retry`` allows
        one and the error may pass, else end it ``Failed`` / ``DeadLetter``."""
        policy = RetryPolicy.for_task(self.spec)
        if failure.retryable and self.attempt < policy.max_attempts:
            await self.recorder.retry_scheduled(failure.code, failure.message, delay(policy, self.attempt))
            return
        await self.recorder.fail(failure.code, failure.message, phase=failure.phase)

    def _mark_running(self, envelopes: list[Envelope]) -> set[str]:
        """The messages whose turn starts as soon as they are delivered, remembered as recorded
        Running. Not those into a join (a message may only wait there) or within ``max_turns``
        (one may hit the limit): their deliveries decide first and write what they decided."""
        if self.router.max_turns:
            return set()
        graph = self.resolved.graph
        running = {e.message_id for e in envelopes if e.from_agent == "system" or graph.join_for(e.to_agent) is None}
        self._marked_running |= running
        return running

    def _restore(self) -> list[Envelope] | None:
        """Unfinished messages of this attempt, with join and branch state; None for a fresh start."""
        status = self.task.get("status") or {}
        records = [m for m in status.get("messages") or [] if m.get("attempt") == self.attempt]
        if not records:
            return None
        states = [s for s in status.get("join_states") or [] if s.get("attempt") == self.attempt]
        self.router.restore(records, states, self._from_record)
        self.deliveries.finished = {m["message_id"] for m in records if m.get("phase") not in UNFINISHED}
        return [self._from_record(m) for m in records if m.get("phase") in UNFINISHED]

    # -- one message --------------------------------------------------------------------------------

    async def _process(self, env: Envelope) -> bool:
        """Route one delivered message: wait in a join, run its turn, send on what the turn sends.
        True when the message is settled; False to leave it unfinished (draining)."""
        try:
            return await self._route(env)
        finally:
            self._syncs.pop(env.message_id, None)

    async def _route(self, env: Envelope) -> bool:
        arrival = self.router.arrive(env)
        if isinstance(arrival, Wait):
            await self.recorder.join_wait(env, arrival.node, arrival.join.required, arrival.received,
                                          mode=arrival.join.mode)
            return True
        if isinstance(arrival, Done):
            await self.recorder.message_done(env, arrival.why)
            return True
        node = env.to_agent
        if arrival.join is not None:
            await self.recorder.join_activated(env, node, arrival.join.mode, arrival.join.required,
                                               arrival.join.sources)
        if self.draining:  # leave it unfinished (Queued in the Store, unacked in the log) for the next owner
            self._left_unfinished = True
            return False
        self.router.turn_started(env)
        try:
            result = await self._turns.run(node, env, arrival.inbox)
        except TaskFailed as failure:
            if not await self._branch_failed(node, env, failure):
                raise
            return True
        children = self.router.forward(env, result.output, arrival.turns)
        last = not children and self.deliveries.only(env.message_id)
        if children:  # their turns are governed by what was committed before this write
            synced = self.reads.sync_soon()
            self._syncs.update((child.message_id, synced) for child in children)
        await self.recorder.turn_done(env, arrival.inbox, result, children, running=self._mark_running(children),
                                      max_attempts=self._message_policy.max_attempts,
                                      finished_ms=self._elapsed_ms() if last else None)
        self._succeeded = last
        for child in children:
            await self.deliveries.send(child)
        return True

    async def _branch_failed(self, node: str, env: Envelope, failure: TaskFailed) -> bool:
        """A downstream join may absorb the dead branch (``on_failure`` ``skip`` or
        ``continue_partial``); False when the task fails."""
        outcome = self.router.branch_failed(node)
        if not outcome.node:  # no join downstream lets the task go on
            return False
        await self.recorder.branch_failed(env, outcome.node, outcome.on_failure, failure.message)
        if isinstance(outcome, FailTask):
            raise TaskFailed(failure.code, f"{outcome.reason}; last: {failure.message}", phase=failure.phase,
                             retryable=failure.retryable)
        if isinstance(outcome, Activate):
            await self.recorder.join_activated(outcome.trigger, outcome.node, outcome.join.mode,
                                               outcome.join.required, outcome.join.sources)
            spawn(self.deliveries.group, self._route(outcome.trigger))
        return True

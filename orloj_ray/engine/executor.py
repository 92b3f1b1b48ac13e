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
import functools
import logging
import time
from dataclasses import dataclass, field

from orloj_ray.lifecycle import LEASE_S, LeaseLost
from orloj_ray.retry import Backoff, RetryPolicy, decide
from orloj_ray.engine.resolve import CONFIG_KINDS, ResolvedTask, TaskInvalid, resolve_task
from orloj_ray.engine.runtime import AgentRuntime
from orloj_ray.engine.status import ApprovalPause, TaskRecorder, TaskStopped
from orloj_ray.engine import approvals
from orloj_ray.engine.approvals import persist_audit
from orloj_ray.engine.turn_governance import load_turn_governance
from orloj_ray.governance import APPROVAL_PENDING
from orloj_ray.engine.turn import TurnRequest, TurnResult
from orloj_ray.engine.fleet import AgentCapacity, AgentNotFound, AgentReclaimed
from orloj_ray.errors import NotFound, Unavailable
from orloj_ray.engine.mailbox import Mailbox, Verdict
from orloj_ray.messaging import Delivery, Envelope, message_id
from orloj_ray.store.cache import CachedReads

log = logging.getLogger("orloj_ray.executor")
UNFINISHED = ("Queued", "Running", "RetryPending")
REDELIVERIES = 5
"""Times a turn is redelivered when its agent's runtime is unavailable (an actor restarting)."""
REDELIVERY_BASE_S = 0.5
CAPACITY_WAIT_S = 1.0
"""Between asks for an agent actor while every node the agent may use is at its cap."""


def _hop(message_id_: str) -> int:
    hop = message_id_.split("/h", 1)[-1].split("/", 1)[0]
    return int(hop) if hop.isdigit() else 1


@dataclass
class _JoinState:
    required: int
    sources: list[Envelope] = field(default_factory=list)
    activated_by: str = ""


class Drained(Exception):
    """The supervisor is draining: no new turn starts; the task is resumed by the next owner."""


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
                 max_parallel_turns: int | None = None, mailbox: Mailbox | None = None,
                 reads: CachedReads | None = None, synced: asyncio.Future | None = None, shard: int = 0):
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
        self.recorder = TaskRecorder(store, task, worker=worker)
        self.resolved: ResolvedTask | None = None
        self._joins: dict[str, _JoinState] = {}
        self._branch_turns: dict[str, int] = {}
        self._turn_slots = asyncio.Semaphore(max_parallel_turns) if max_parallel_turns else None
        # Delivery bookkeeping (see _send/_on_delivery/_process): a message is "sent" until the
        # log delivers it, "active" while its delivery is processed, then "finished".
        self.mailbox = mailbox
        self._group: asyncio.TaskGroup | None = None
        self._sent: dict[str, tuple[Envelope, float]] = {}
        self._active: dict[str, list[Delivery]] = {}
        self._finished: set[str] = set()
        self._changed = asyncio.Event()
        self._syncs: dict[str, asyncio.Future] = {}
        """The config-cache sync started with the write that recorded a message (``sync_soon``):
        its first turn is governed by what that sync saw instead of waiting for one of its own."""
        self._waiting: set[str] = set()
        """Messages whose wait for an agent actor slot is in the trace already."""
        self._marked_running: set[str] = set()
        """Messages recorded as Running by the write that created them: their first delivery writes nothing more."""
        self._succeeded = False
        """The last turn's write recorded the task's success too."""
        self._started = time.monotonic()  # reset when the run starts
        self.draining = False
        """Set by ``drain``: running turns finish and record, no new one starts."""
        self._left_unfinished = False

    def drain(self) -> None:
        self.draining = True
        self._changed.set()

    @property
    def task_id(self) -> str:
        return f"{self.namespace}/{self.name}"

    def _message_id(self, hop: int, src: str, dst: str) -> str:
        return message_id(self.namespace, self.name, self.attempt, hop, src, dst)

    def _envelope(self, src: str, dst: str, hop: int, branch: str, content: str, **fields) -> Envelope:
        return Envelope(self._message_id(hop, src, dst), dst, from_agent=src, namespace=self.namespace,
                        task=self.name, attempt=self.attempt, system=self.spec.get("system", ""),
                        branch_id=branch, payload=content, hop=hop, shard=self.shard, **fields)

    def _from_record(self, record: dict) -> Envelope:
        return Envelope(record["message_id"], record["to_agent"], from_agent=record["from_agent"],
                        type=record.get("type", "task_handoff"), namespace=self.namespace, task=self.name,
                        attempt=self.attempt, system=self.spec.get("system", ""),
                        branch_id=record.get("branch_id", ""), parent_branch_id=record.get("parent_branch_id", ""),
                        payload=record.get("content", ""), parent_id=record.get("parent_id", ""),
                        hop=_hop(record["message_id"]), shard=self.shard)

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
        synced = self._claim_sync or self.reads.sync_soon()
        try:
            await synced
            self.resolved = await resolve_task(self.reads, self.task)
            self.recorder.mask_secrets(self.resolved)
        except TaskInvalid as exc:
            await self.recorder.fail("task_invalid", str(exc))
            return
        envelopes = self._restore()
        fresh = envelopes is None
        if fresh:
            entries = self.resolved.graph.entry_agents()
            kickoff = self.spec.get("input", {}).get("topic") or f"task={self.name} attempt={self.attempt}"
            envelopes = [self._envelope("system", agent, i + 1, f"b{i + 1:03d}", kickoff, type="task_start")
                         for i, agent in enumerate(entries)]
            running = self._mark_running(envelopes)  # one write with the kickoff messages, Running
            self._syncs.update((env.message_id, synced) for env in envelopes)  # governed as resolved
            await self.recorder.start(self.resolved, entries, envelopes, running=running,
                                      max_attempts=self._max_attempts())
        else:
            await self.recorder.resumed(len(envelopes))
        failure: TaskFailed | None = None
        stop: Exception | None = None
        if self.mailbox is not None:
            self.mailbox.open(self.task_id, self._on_delivery)
        try:
            async with asyncio.TaskGroup() as group:
                self._group = group
                for env in envelopes:
                    if fresh:
                        await self._send(env)
                    else:  # resumed from the Store's record: a redelivery from the log joins it
                        self._take(env)
                group.create_task(self._until_idle())
        except* (LeaseLost, TaskStopped, Drained) as stopped:
            stop = stopped.exceptions[0]
        except* TaskFailed as failures:
            failure = failures.exceptions[0]
        finally:
            self._group = None
            if self.mailbox is not None:
                self.mailbox.close(self.task_id)
        if stop is None and self.draining and (self._left_unfinished or self._sent):
            stop = Drained()
        if stop is not None:
            raise stop
        if failure is not None:
            await self.recorder.fail(failure.code, failure.message, phase=failure.phase)
            return
        if not self._succeeded:
            await self.recorder.succeed(self._elapsed_ms())

    def _elapsed_ms(self) -> int:
        return int((time.monotonic() - self._started) * 1000)

    @functools.cached_property
    def _message_policy(self) -> RetryPolicy:
        return RetryPolicy.for_messages(self.spec)

    def _max_attempts(self) -> int:
        return self._message_policy.max_attempts

    def _mark_running(self, envelopes: list[Envelope]) -> set[str]:
        """The messages whose turn starts as soon as they are delivered, remembered as recorded
        Running. Not those into a join (a message may only wait there) or within ``max_turns``
        (one may hit the limit): their deliveries decide first and write what they decided."""
        if int(self.spec.get("max_turns") or 0):
            return set()
        graph = self.resolved.graph
        running = {e.message_id for e in envelopes if e.from_agent == "system" or graph.join_for(e.to_agent) is None}
        self._marked_running |= running
        return running

    def _is_last(self, mid: str) -> bool:
        """Nothing but the message ``mid`` is in flight: when its turn sends nothing, the task is done."""
        return not self.draining and not self._sent and self._active.keys() == {mid}

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
            sources = [self._from_record(by_id[s["message_id"]]) for s in state.get("sources") or []
                       if s["message_id"] in by_id]
            self._joins[state["node"]] = _JoinState(int(state.get("quorum_required") or 1), sources,
                                                    state.get("activated_by", "") if state.get("activated") else "")
        for record in records:
            if record.get("outcome") == "turn":
                branch = record.get("branch_id", "")
                self._branch_turns[branch] = self._branch_turns.get(branch, 0) + 1
        self._finished = {m["message_id"] for m in records if m.get("phase") not in UNFINISHED}
        return [self._from_record(m) for m in records if m.get("phase") in UNFINISHED]

    # -- delivery: the log is the mailbox ---------------------------------------------------------

    async def _send(self, env: Envelope) -> None:
        """Hand a recorded message to its agent: through the log when there is one, else directly."""
        if self.mailbox is None:
            self._take(env)
            return
        self._sent[env.message_id] = (env, time.monotonic())
        self._changed.set()
        try:
            await self.mailbox.send(env)
        except Exception as exc:  # the log is down: the Store has the record; keep trying in the background
            log.warning("appending %s to the message log failed (%s); retrying", env.message_id, exc)
            _spawn(self._group, self._append_later(env))

    async def _append_later(self, env: Envelope) -> None:
        """Retry an append until it lands; past ``stall_s``, _until_idle delivers from the Store instead."""
        backoff = Backoff(0.25, 4.0)
        while env.message_id in self._sent:
            await asyncio.sleep(backoff.next())
            try:
                await self.mailbox.send(env)
                return
            except Exception as exc:
                log.debug("append of %s still failing: %s", env.message_id, exc)

    def _on_delivery(self, delivery: Delivery) -> Verdict:
        """Called by the mailbox for every delivery of this task's messages."""
        env = delivery.envelope
        mid = env.message_id
        if mid in self._active:  # redelivered while still being processed: settle both at the end
            self._active[mid].append(delivery)
            return "take"
        if mid in self._finished:  # a redelivery of a recorded step: replayed, never re-run
            return "ack"
        if env.attempt != self.attempt or self._group is None:  # an earlier attempt's leftovers
            return "term"
        self._sent.pop(mid, None)
        self._take(env, delivery)
        return "take"

    def _take(self, env: Envelope, delivery: Delivery | None = None) -> None:
        self._active[env.message_id] = [delivery] if delivery is not None else []
        self._changed.set()
        _spawn(self._group, self._process(env))

    async def _process(self, env: Envelope) -> None:
        mid = env.message_id
        beat = asyncio.create_task(self._in_progress(mid)) if self.mailbox is not None else None
        settled_ok = False
        try:
            settled_ok = await self._deliver(env, self._group) is not False
        except TaskFailed:
            settled_ok = True  # recorded as dead-lettered: done with it
            raise
        finally:
            if beat is not None:
                beat.cancel()
            deliveries = self._active.pop(mid, [])
            self._syncs.pop(mid, None)
            if settled_ok:
                self._finished.add(mid)
            self._changed.set()
            if self.mailbox is not None:
                for delivery in deliveries:  # ack only now: the Store has the turn's record
                    await (self.mailbox.ack(delivery) if settled_ok else self.mailbox.nak(delivery))

    async def _in_progress(self, mid: str) -> None:
        """Keep the log from redelivering a message whose (slow) turn is still running."""
        interval = max(self.mailbox.ack_wait_s / 3, 0.05)
        while True:
            await asyncio.sleep(interval)
            for delivery in list(self._active.get(mid, [])):
                await self.mailbox.in_progress(delivery)

    async def _until_idle(self) -> None:
        """Hold the task open while a message is on its way through the log or being processed.

        A sent message the log has not delivered within the mailbox's ``stall_s`` (a log that
        lost it) is delivered from the Store's record instead, so a task never hangs on the log.
        """
        stall_s = self.mailbox.stall_s if self.mailbox is not None else 60.0
        while (self._sent and not self.draining) or self._active:
            self._changed.clear()
            try:  # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancellation
                async with asyncio.timeout(stall_s / 4):
                    await self._changed.wait()
            except TimeoutError:
                pass
            now = time.monotonic()
            for mid, (env, sent_at) in list(self._sent.items()):
                if now - sent_at >= stall_s:
                    log.warning("message %s was not delivered by the log within %.0fs; delivering it from "
                                "the Store's record", mid, stall_s)
                    del self._sent[mid]
                    self._take(env)

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

        if self.draining:  # leave it unfinished (Queued in the Store, unacked in the log) for the next owner
            self._left_unfinished = True
            return False
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
        branched = len(targets) > 1
        children = [
            self._envelope(node, target, hop, f"{env.branch_id}.{i + 1:03d}" if branched else env.branch_id,
                           result.output, parent_branch_id=env.branch_id if branched else env.parent_branch_id,
                           parent_id=env.message_id)
            for i, target in enumerate(targets)
        ]
        last = not children and self._is_last(env.message_id)
        if children:  # their turns are governed by what was committed before this write
            synced = self.reads.sync_soon()
            self._syncs.update((child.message_id, synced) for child in children)
        await self.recorder.turn_done(env, inbox, result, children, running=self._mark_running(children),
                                      max_attempts=self._max_attempts(),
                                      finished_ms=self._elapsed_ms() if last else None)
        self._succeeded = last
        for child in children:
            await self._send(child)

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
            # a loop revisits a branch: the hop tells its turns apart
            key=f"{self.task_id}/a{self.attempt:03d}/{node}/{env.branch_id}/h{env.hop:03d}",
            requirements=dict(self.spec.get("requirements") or {}),
            message_id=env.message_id,
        )
        policy = self._message_policy
        attempts = redeliveries = reclaims = 0
        recorded = env.message_id in self._marked_running  # the first delivery is recorded Running already
        self._marked_running.discard(env.message_id)
        while True:
            attempts += 1
            if not recorded:
                await self.recorder.message_running(env, max_attempts=policy.max_attempts)
            recorded = False
            try:
                request.governance = await self._governance(node, env)
                if self._turn_slots is None:
                    result = await self.runtime.run_turn(request)
                else:
                    async with self._turn_slots:
                        result = await self.runtime.run_turn(request)
                await persist_audit(self.store, result.audit, self.recorder.mask)
                if result.ok:
                    return result
                if result.error_code == APPROVAL_PENDING:
                    await self._pause_for_approval(node, env, result)
                error = result
            except (TaskFailed, TaskStopped, LeaseLost):
                raise
            except Exception as exc:  # the runtime broke: actor died or restarting, placement failed
                if isinstance(exc, AgentCapacity):  # no node may take another actor: wait, spend nothing
                    attempts -= 1
                    recorded = True  # still Running; the wait is in the trace once
                    if env.message_id not in self._waiting:
                        self._waiting.add(env.message_id)
                        await self.recorder.turn_waiting(env, str(exc))
                    await asyncio.sleep(CAPACITY_WAIT_S)
                    continue
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
            outcome = decide(policy, attempts, error, key=env.message_id)
            if not outcome.final:
                await self.recorder.message_retry(env, outcome.error, outcome.delay_s)
                await asyncio.sleep(outcome.delay_s)
                continue
            await self.recorder.turn_failed(env, error if isinstance(error, TurnResult) else None, outcome.error)
            message = f"message {env.message_id} dead-lettered after {attempts} attempts: {outcome.error}"
            raise TaskFailed(outcome.code, message, phase="DeadLetter" if outcome.retryable else "Failed")

    async def _governance(self, node: str, env: Envelope):
        """What governs this turn; a denied or expired approval of this message fails it now,
        without running the turn again (governance.md section 5)."""
        # a policy, role or permission committed before the write that recorded this message
        # (its first delivery) or before this attempt (a retry) governs the turn
        synced = self._syncs.pop(env.message_id, None)
        await (synced if synced is not None else self.reads.sync())
        try:
            await self.reads.get("Agent", self.namespace, node)
        except NotFound:  # deleted while the task ran: a turn for it fails, never runs on a stale copy
            raise AgentNotFound(f'agent "{node}" not found in namespace "{self.namespace}": it was deleted '
                                "while the task ran") from None
        gov = await load_turn_governance(self.reads, self.task, self.resolved.agents[node], env.message_id,
                                         tokens_used=self.recorder.tokens_used())
        if gov.approvals:
            objs = [await approvals.expire_if_due(self.store, a) for a in
                    await approvals.task_approvals(self.reads, self.namespace, self.name)
                    if a["metadata"]["name"] in {g["name"] for g in gov.approvals}]
            failed = approvals.decided_failure(objs)
            if failed is not None:
                code, message = failed
                await self.recorder.turn_failed(env, None, message)
                raise TaskFailed(code, message)
        return gov

    async def _pause_for_approval(self, node: str, env: Envelope, result: TurnResult) -> None:
        approval = await approvals.request_approval(self.store, self.namespace, self.name, env.message_id, node,
                                                    result.approval)
        name = approval["metadata"]["name"]
        await self.recorder.wait_approval(env, result, name)
        raise ApprovalPause(f"task {self.task_id} waits for tool approval {name}")

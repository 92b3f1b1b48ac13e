"""Graph routing of one task attempt: what an arriving message means, and what a turn sends on.

Pure state over the AgentSystem ``Graph`` (execution.md section 6): kickoff messages to the
entry agents; one turn per arriving message; fan-out with child branch ids; joins that gate a
node until enough upstream agents have arrived (``wait_for_all`` or ``quorum``); loops bounded
by ``max_turns`` per branch; a dead branch absorbed by the nearest downstream join whose
``on_failure`` lets the task go on. No I/O: the executor records each decision and delivers
the messages; ``Router`` only says what they are.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from orloj_ray.graph import Graph
from orloj_ray.messaging import Envelope

MakeEnvelope = Callable[..., Envelope]
"""``(src, dst, hop, branch, content, **fields) -> Envelope`` of this task attempt."""


@dataclass
class JoinState:
    required: int
    mode: str = "wait_for_all"
    sources: list[Envelope] = field(default_factory=list)
    activated_by: str = ""


# -- what an arriving message means ------------------------------------------------------------

@dataclass(frozen=True)
class Run:
    """Run the node's turn on ``inbox`` (the message itself, or a join's sources in graph order)."""

    inbox: list[Envelope]
    join: JoinState | None = None
    """Set when this message opened its node's join (the activation is recorded with the turn)."""
    turns: int = 0
    """The branch's turns, this one included."""


@dataclass(frozen=True)
class Wait:
    """A join holds the message: ``received`` of ``required`` upstream agents have arrived."""

    node: str
    join: JoinState
    received: int


@dataclass(frozen=True)
class Done:
    """The message needs no turn: ``why`` is ``join_already_activated`` or ``turn_limit_reached``."""

    why: str


Arrival = Run | Wait | Done


# -- what a failed branch means -----------------------------------------------------------------

@dataclass(frozen=True)
class FailTask:
    """No join absorbs the failure: the task fails. With ``node``, the tolerant join there ran
    out of branches (``reason`` says so)."""

    node: str = ""
    on_failure: str = ""
    reason: str = ""


@dataclass(frozen=True)
class Absorbed:
    """The join ``node`` stops waiting for the dead branch (or had already run): nothing to do now."""

    node: str
    on_failure: str


@dataclass(frozen=True)
class Activate:
    """The join ``node`` runs now with what has arrived: deliver ``trigger`` again, to run it."""

    node: str
    on_failure: str
    join: JoinState
    trigger: Envelope


BranchOutcome = FailTask | Absorbed | Activate


class Router:
    """One attempt's routing state: join gates and turns per branch."""

    def __init__(self, graph: Graph, *, max_turns: int, envelope: MakeEnvelope):
        self.graph = graph
        self.max_turns = max_turns
        self._envelope = envelope
        self.joins: dict[str, JoinState] = {}
        self.branch_turns: dict[str, int] = {}

    def kickoff(self, content: str) -> list[Envelope]:
        """The ``task_start`` messages from ``system`` to every entry agent (branches b001, b002, ...)."""
        return [self._envelope("system", agent, i + 1, f"b{i + 1:03d}", content, type="task_start")
                for i, agent in enumerate(self.graph.entry_agents())]

    def restore(self, records: list[dict], join_states: list[dict], by_id: Callable[[dict], Envelope]) -> None:
        """Rebuild joins and branch turns from what the Store recorded of this attempt."""
        known = {r["message_id"]: r for r in records}
        for state in join_states:
            sources = [by_id(known[s["message_id"]]) for s in state.get("sources") or [] if s["message_id"] in known]
            self.joins[state["node"]] = JoinState(int(state.get("quorum_required") or 1),
                                                  state.get("mode") or "wait_for_all", sources,
                                                  state.get("activated_by", "") if state.get("activated") else "")
        for record in records:
            if record.get("outcome") == "turn":
                branch = record.get("branch_id", "")
                self.branch_turns[branch] = self.branch_turns.get(branch, 0) + 1

    def _join_state(self, node: str) -> JoinState:
        join = self.graph.join_for(node)
        state = self.joins.get(node)
        if state is None:
            state = self.joins[node] = JoinState(join.required(len(self.graph.predecessors[node])), join.mode)
        return state

    def arrive(self, env: Envelope) -> Arrival:
        """What the arrival of ``env`` at its node means; the join and turn counts move on."""
        node = env.to_agent
        inbox = [env]
        opened = None
        if self.graph.join_for(node) is not None and env.from_agent != "system":
            state = self._join_state(node)
            if state.activated_by and state.activated_by != env.message_id:
                return Done("join_already_activated")
            if not state.activated_by:
                if all(s.message_id != env.message_id for s in state.sources):
                    state.sources.append(env)
                if len(state.sources) < state.required:
                    return Wait(node, state, len(state.sources))
                state.activated_by = env.message_id
                opened = state
            inbox = self.join_inbox(node)
        turns = self.branch_turns.get(env.branch_id, 0) + 1
        if self.max_turns and turns > self.max_turns:
            return Done("turn_limit_reached")
        return Run(inbox, opened, turns)

    def join_inbox(self, node: str) -> list[Envelope]:
        """A join's sources in the declaration order of the upstream agents, not arrival order:
        the same input in every execution mode."""
        rank = {a: i for i, a in enumerate(self.graph.predecessors[node])}
        return sorted(self.joins[node].sources, key=lambda e: (rank.get(e.from_agent, len(rank)), e.branch_id))

    def turn_started(self, env: Envelope) -> None:
        """Count the branch turn a ``Run`` decided (once it is really going to run)."""
        self.branch_turns[env.branch_id] = self.branch_turns.get(env.branch_id, 0) + 1

    def forward(self, env: Envelope, output: str, turns: int) -> list[Envelope]:
        """The messages a finished turn of ``env`` sends along the graph's edges: one per
        successor (child branch ids on fan-out), none once the branch used up ``max_turns``."""
        node = env.to_agent
        targets = [] if self.max_turns and turns >= self.max_turns else self.graph.successors[node]
        hop = max(env.hop + 1, 2)
        branched = len(targets) > 1
        return [self._envelope(node, target, hop, f"{env.branch_id}.{i + 1:03d}" if branched else env.branch_id,
                               output, parent_branch_id=env.branch_id if branched else env.parent_branch_id,
                               parent_id=env.message_id)
                for i, target in enumerate(targets)]

    def branch_failed(self, node: str) -> BranchOutcome:
        """The turn of ``node`` failed for good: can a downstream join go on without its branch?

        ``skip``: the join stops waiting for the dead branch; ``continue_partial``: the join runs
        at once with what has arrived. The task fails for ``deadletter`` (the default), when no
        join is downstream, or when every branch into the join has failed."""
        target = self._tolerant_join(node)
        if target is None:
            return FailTask()
        join = self.graph.join_for(target)
        state = self._join_state(target)
        if state.activated_by:
            return Absorbed(target, join.on_failure)
        if not (join.on_failure == "continue_partial" and state.sources):  # else: run now with what arrived
            state.required -= 1  # stop waiting for the dead branch
            if state.required <= 0:
                return FailTask(target, join.on_failure, f'every branch into join "{target}" failed')
            if len(state.sources) < state.required:
                return Absorbed(target, join.on_failure)
        trigger = state.sources[-1]
        state.activated_by = trigger.message_id
        return Activate(target, join.on_failure, state, trigger)

    def _tolerant_join(self, node: str) -> str | None:
        """The nearest join downstream of ``node`` whose ``on_failure`` lets the task go on."""
        graph, seen, frontier = self.graph, {node}, list(self.graph.successors[node])
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

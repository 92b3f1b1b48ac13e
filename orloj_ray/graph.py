"""AgentSystem routing: nodes, edges, entry points, joins and cycle detection.

Pure functions over the normalized ``AgentSystem.spec``; no I/O. The same ``Graph`` drives
both execution modes, so the order in which agents may run is decided in one place.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

JOIN_MODES = ("wait_for_all", "quorum")
ON_FAILURE = ("deadletter", "skip", "continue_partial")


class GraphError(ValueError):
    """The AgentSystem graph cannot run; the message names the node, edge or cycle."""


@dataclass(frozen=True)
class Join:
    mode: str = "wait_for_all"
    quorum_count: int = 0
    quorum_percent: int = 0
    on_failure: str = "deadletter"

    def required(self, expected: int) -> int:
        """How many of ``expected`` upstream arrivals open the gate (execution.md 6.5)."""
        if expected <= 0:
            return 0
        if self.mode != "quorum":
            return expected
        need = max(self.quorum_count, math.ceil(expected * self.quorum_percent / 100))
        if need <= 0:
            need = expected
        return max(1, min(need, expected))


@dataclass
class Graph:
    agents: list[str]
    successors: dict[str, list[str]] = field(default_factory=dict)
    predecessors: dict[str, list[str]] = field(default_factory=dict)
    joins: dict[str, Join] = field(default_factory=dict)

    @classmethod
    def from_spec(cls, spec: dict) -> "Graph":
        """Build and validate; raises GraphError with every problem found, ``;``-joined."""
        agents = [a for a in (spec.get("agents") or []) if a]
        raw = spec.get("graph") or {}
        errors: list[str] = []
        if not agents:
            errors.append("agentsystem has no spec.agents")
        known = set(agents)
        succ: dict[str, list[str]] = {a: [] for a in agents}
        joins: dict[str, Join] = {}
        for node, entry in raw.items():
            entry = entry or {}
            if node not in known:
                errors.append(f'graph node "{node}" is not listed in spec.agents')
                continue
            routes = ([entry["next"]] if entry.get("next") else []) + [
                e.get("to", "") for e in entry.get("edges") or []
            ]
            seen: set[str] = set()
            for to in (r.strip() for r in routes):
                if not to or to.lower() in seen:
                    continue
                seen.add(to.lower())
                if to not in known:
                    errors.append(f'graph edge "{node}" -> "{to}" points to unknown agent')
                    continue
                succ[node].append(to)
            join = entry.get("join") or {}
            if join:
                try:
                    joins[node] = _join(node, join)
                except GraphError as exc:
                    errors.append(str(exc))
        if errors:
            raise GraphError("; ".join(errors))
        if not raw and len(agents) > 1:  # no graph: declaration order is a pipeline
            succ = {a: ([agents[i + 1]] if i + 1 < len(agents) else []) for i, a in enumerate(agents)}
        pred: dict[str, list[str]] = {a: [] for a in agents}
        for node, outs in succ.items():
            for to in outs:
                if node not in pred[to]:
                    pred[to].append(node)
        return cls(agents=agents, successors=succ, predecessors=pred, joins=joins)

    def entry_agents(self) -> list[str]:
        """Zero-indegree agents in declaration order; a pure cycle starts at the first agent."""
        entries = [a for a in self.agents if not self.predecessors[a]]
        return entries or self.agents[:1]

    def find_cycle(self) -> list[str] | None:
        """One cycle as a path ``[a, b, ..., a]``, or None for a DAG."""
        color: dict[str, int] = {}
        stack: list[str] = []

        def visit(node: str) -> list[str] | None:
            color[node] = 1
            stack.append(node)
            for nxt in self.successors[node]:
                if color.get(nxt) == 1:
                    return stack[stack.index(nxt):] + [nxt]
                if not color.get(nxt):
                    found = visit(nxt)
                    if found:
                        return found
            stack.pop()
            color[node] = 2
            return None

        for a in self.agents:
            if not color.get(a):
                found = visit(a)
                if found:
                    return found
        return None

    def check_runnable(self, max_turns: int) -> None:
        cycle = self.find_cycle()
        if cycle and max_turns <= 0:
            raise GraphError(
                "agentsystem graph contains a cycle (" + " -> ".join(cycle) + "); "
                "set task.spec.max_turns > 0 to allow cyclical agent handoffs"
            )

    def topological_order(self) -> list[str]:
        """Kahn order starting from entry agents in declaration order; unreached agents last."""
        indeg = {a: len(self.predecessors[a]) for a in self.agents}
        ready = [a for a in self.agents if indeg[a] == 0]
        order: list[str] = []
        while ready:
            node = ready.pop(0)
            order.append(node)
            for nxt in self.successors[node]:
                indeg[nxt] -= 1
                if indeg[nxt] == 0:
                    ready.append(nxt)
        order += [a for a in self.agents if a not in order]
        return order

    def join_for(self, node: str) -> Join | None:
        """The join gate of ``node``: set when it has >1 distinct upstream agent or a quorum join."""
        join = self.joins.get(node)
        if len(self.predecessors[node]) > 1:
            return join or Join()
        if join and join.mode == "quorum":
            return join
        return None


def _join(node: str, raw: dict) -> Join:
    mode = (raw.get("mode") or "wait_for_all").strip().lower()
    on_failure = (raw.get("on_failure") or "deadletter").strip().lower()
    count = int(raw.get("quorum_count") or 0)
    percent = int(raw.get("quorum_percent") or 0)
    where = f'graph node "{node}" join'
    if mode not in JOIN_MODES:
        raise GraphError(f'{where}: unsupported mode "{mode}": expected wait_for_all or quorum')
    if on_failure not in ON_FAILURE:
        raise GraphError(f'{where}: unsupported on_failure "{on_failure}": expected deadletter, skip, or continue_partial')
    if count < 0:
        raise GraphError(f"{where}: quorum_count must be >= 0, got {count}")
    if not 0 <= percent <= 100:
        raise GraphError(f"{where}: quorum_percent must be within 0..100, got {percent}")
    return Join(mode=mode, quorum_count=count, quorum_percent=percent, on_failure=on_failure)

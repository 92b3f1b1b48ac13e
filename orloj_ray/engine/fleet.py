"""The agent fleet's rules: when an agent actor exists, where it goes, and when it is reclaimed.

Pure decisions over plain data; ``actors/agent_pool.py`` applies them to Ray actors. An agent
actor is created at the agent's first turn and reclaimed

* ``deleted``: its Agent is gone (turns in flight finish first);
* ``placement_changed``: its Agent's own ``spec.requirements`` changed, so the actor may stand
  on a node the agent no longer wants;
* ``scaled_down``: it is a replica above the agent's ``min_replicas`` (the newest first), idle
  for ``scale_down_after``;
* ``idle``: nothing ran on it for the idle TTL (default 10 minutes; 0 = never): the agent scales
  to zero and its next turn starts an actor again;
* ``cap``: its node holds ``max_actors_per_node`` agent actors and another agent needs one
  there; the least recently used idle actor makes room. With none idle the turn waits.

Each actor reports its own ``inflight`` turns and when its last turn ended, so the decisions
hold however many supervisors send it turns.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from orloj_ray.engine.placement import Requirements, placement_class
from orloj_ray.engine.scaling import Scaling
from orloj_ray.errors import OrlojError, Unavailable

MiB = 1024 * 1024
ACTOR_BUDGET_BYTES = 160 * MiB
"""Memory an agent actor is budgeted for when the per-node cap is derived (measured: 80-120 MiB
resident each, more once a turn has loaded its providers and tools)."""

REASONS = ("deleted", "placement_changed", "scaled_down", "idle", "cap")
EVICT_MIN_IDLE_S = 1.0
"""A cap eviction takes only an actor idle at least this long: a turn may be on its way to it."""
FRESH_GRACE_S = 30.0
"""An actor that has not run its first turn is left alone this long: its supervisor asked for
it and is about to send the turn (making room for another would only move the wait)."""


class AgentReclaimed(Unavailable):
    """The actor a turn was sent to was reclaimed meanwhile: redeliver at once to a fresh one."""

    code = "agent_reclaimed"


class AgentCapacity(Unavailable):
    """No node may take another agent actor now: the turn waits for one to free (no attempt spent)."""

    code = "agent_capacity"


class AgentNotFound(OrlojError):
    """A turn for an Agent that no longer exists (not retryable)."""

    code = "agent_not_found"


def default_cap(node_memory_bytes: float) -> int:
    """Agent actors per node when ``--max-agent-actors`` is not set: half the node's memory at
    ``ACTOR_BUDGET_BYTES`` each, at least 4 (a 24 GiB node: 76)."""
    return max(4, int(node_memory_bytes * 0.5 // ACTOR_BUDGET_BYTES))


@dataclass(frozen=True)
class FleetSettings:
    idle_ttl_s: float = 600.0
    """Reclaim an actor idle this long; 0 = never. ``--agent-idle-ttl`` / ``ORLOJ_AGENT_IDLE_TTL``."""
    max_actors_per_node: int = 0
    """Live agent actors per node; 0 = ``default_cap`` of the node's memory.
    ``--max-agent-actors`` / ``ORLOJ_MAX_AGENT_ACTORS``."""

    def cap(self, node_memory_bytes: float) -> int:
        return self.max_actors_per_node or default_cap(node_memory_bytes)


@dataclass
class ActorInfo:
    """One live agent actor, as it reports itself (``AgentActor.stats``)."""

    name: str
    namespace: str
    agent: str
    placement: str = ""
    replica: int = 0
    node_id: str = ""
    actor_id: str = ""
    inflight: int = 0
    idle_s: float = 0.0
    """Seconds since its last turn ended (or since it started, before any turn)."""
    last_turn_at: str = ""
    """RFC 3339 end of its last turn; empty before the first."""
    agent_requirements: dict = field(default_factory=dict)
    """The Agent's own ``spec.requirements`` when the actor was made (placement changes show here)."""
    retiring: bool = False
    turns: int = 0

    @property
    def pool(self) -> tuple[str, str, str]:
        return self.namespace, self.agent, self.placement

    @property
    def idle(self) -> bool:
        return not self.inflight and not self.retiring

    @property
    def evictable(self) -> bool:
        """Idle long enough to make room for another agent (``EVICT_MIN_IDLE_S``, ``FRESH_GRACE_S``)."""
        return self.idle and self.idle_s >= (EVICT_MIN_IDLE_S if self.turns else FRESH_GRACE_S)


def _klass(requirements: Mapping | None) -> str:
    return placement_class(Requirements.from_dict(requirements))


def reclaims(actors: Iterable[ActorInfo], agents: Mapping[tuple[str, str], dict | None],
             settings: FleetSettings) -> list[tuple[ActorInfo, str]]:
    """Which actors to reclaim now and why (``REASONS`` but ``cap``, which ``make_room`` decides).

    ``agents``: the current Agent resource by (namespace, name), None or absent when deleted.
    Deleted and re-placed agents' actors are listed even while busy: they stop taking turns and
    are removed once their turns in flight have finished.
    """
    out: list[tuple[ActorInfo, str]] = []
    pools: dict[tuple[str, str, str], list[ActorInfo]] = {}
    for actor in actors:
        if actor.retiring:
            continue
        agent = agents.get((actor.namespace, actor.agent))
        if agent is None:
            out.append((actor, "deleted"))
            continue
        wanted = (agent.get("spec") or {}).get("requirements") or {}
        if _klass(wanted) != _klass(actor.agent_requirements):
            out.append((actor, "placement_changed"))
            continue
        pools.setdefault(actor.pool, []).append(actor)
    for pool, members in pools.items():
        agent = agents[pool[:2]]
        scaling = Scaling.for_agent(agent)
        members.sort(key=lambda a: a.replica)
        removed_newest = False
        newest = members[-1]
        if (len(members) > scaling.min_replicas and newest.replica > 0 and newest.idle
                and newest.idle_s >= scaling.scale_down_after_s):
            out.append((newest, "scaled_down"))
            removed_newest = True
        if settings.idle_ttl_s > 0:
            for actor in members[:-1] if removed_newest else members:
                if actor.idle and actor.idle_s >= settings.idle_ttl_s:
                    out.append((actor, "idle"))
    return out


@dataclass(frozen=True)
class Room:
    """Where a new actor goes: ``node_id``, after reclaiming ``evict`` (None: a free slot);
    or, with no node, ``wait`` says why the turn must wait."""

    node_id: str = ""
    evict: ActorInfo | None = None
    wait: str = ""


def make_room(candidates: Iterable[str], actors: Iterable[ActorInfo], caps: Mapping[str, int]) -> Room:
    """Pick a node among ``candidates`` (node ids the placement allows, in preference order)
    for one more actor: the one with the most free slots; when all are full, the node whose
    least recently used idle actor has been idle longest, evicting it; else wait."""
    candidates = list(candidates)
    if not candidates:
        return Room(wait="no alive node meets the agent's placement")
    by_node: dict[str, list[ActorInfo]] = {}
    for actor in actors:
        by_node.setdefault(actor.node_id, []).append(actor)
    free = [(caps.get(n, 0) - len(by_node.get(n, ())), i, n) for i, n in enumerate(candidates)]
    best = max(free, key=lambda f: (f[0], -f[1]))
    if best[0] > 0:
        return Room(node_id=best[2])
    idle = [(a.idle_s, a) for n in candidates for a in by_node.get(n, ()) if a.evictable]
    if idle:
        victim = max(idle, key=lambda x: x[0])[1]
        return Room(node_id=victim.node_id, evict=victim)
    full = ", ".join(f"{n[:12]} {len(by_node.get(n, ()))}/{caps.get(n, 0)}" for n in candidates)
    return Room(wait=f"every node the agent may use is at its agent actor cap with no idle actor ({full}); "
                     "the turn starts when one frees")

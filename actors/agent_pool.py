"""AgentPool: the one owner of agent actors' lifecycle, and ``PooledAgentRuntime``, its client.

Supervisors send turns straight to agent actors (the pool is never on a turn's path); they ask
the pool only for an actor they do not hold a handle to yet. The pool

* creates an agent's actor at its first turn, on a node its placement allows, within the
  per-node cap (``orloj_ray.engine.fleet.make_room``: a free slot, else the least recently used
  idle actor there is reclaimed, else the turn waits with ``agent_capacity``);
* every ``sweep_s`` reads each actor's own load (``AgentActor.stats``) and reclaims what
  ``fleet.reclaims`` says (deleted or re-placed agents after their turns in flight, idle ones
  past the TTL, replicas scaled down); a turn sent to a reclaimed actor fails with
  ``agent_reclaimed`` and its supervisor redelivers it at once to a fresh one;
* writes each Agent's ``status.actors`` (name, Ray actor id, node, placement class, replica),
  ``actor`` (``running`` / ``idle``), ``lastTurnAt`` (refreshed at most every 30 s),
  ``lastReclaim`` and ``waiting``, and mirrors the Ray nodes into Worker resources.

It keeps no state of its own worth saving: at start it lists Ray's named actors
(``orloj:agent:*``) and asks each what it is, so a restarted pool (or supervisor) orphans none.
One pool serves every supervisor, so one place decides scaling for each agent.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import ray
from ray.exceptions import ActorDiedError, RayActorError, RayTaskError

from actors import AGENT_PREFIX, POOL_ACTOR, RAY_NAMESPACE
from actors import placement as ray_placement
from actors.agent_actor import agent_actor
from actors.workers import HEARTBEAT_S as WORKER_HEARTBEAT_S, mirror_workers
from orloj_ray.config import ServerConfig, parse_idle_ttl
from orloj_ray.engine.fleet import (
    EVICT_MIN_IDLE_S, ActorInfo, AgentCapacity, AgentNotFound, AgentReclaimed, FleetSettings, make_room, reclaims,
)
from orloj_ray.engine.placement import NodeInfo, Requirements, feasible, placement_class
from orloj_ray.engine.scaling import Scaling
from orloj_ray.errors import Conflict, NotFound, OrlojError, Unavailable
from orloj_ray.retry import Backoff
from orloj_ray.store.cache import CachedReads
from orloj_ray.store.util import now_rfc3339_nano

log = logging.getLogger("orloj_ray.agent_pool")

SOURCE = "agent-pool"
DRAIN_S = 300.0
"""How long a deleted or re-placed agent's actor may finish its turns in flight before it goes."""
LAST_TURN_EVERY_S = 30.0
"""``status.lastTurnAt`` is written at most this often per agent (it would otherwise be a write per turn)."""
STATS_TIMEOUT_S = 5.0
UNANSWERED_LIMIT = 6
"""Sweeps an actor may fail to answer before it is killed (stuck pending on a node that went away)."""
PLACEMENT_TIMEOUT_S = 30.0


@dataclass
class _Entry:
    handle: ray.actor.ActorHandle
    info: ActorInfo
    unanswered: int = 0


@dataclass
class _AgentView:
    """What the pool last wrote to (or will write to) one Agent's status."""

    actors: list = field(default_factory=list)
    last_turn_at: str = ""
    last_reclaim: dict | None = None
    waiting: str = ""
    written_turn_at: float = 0.0
    dirty: bool = True


def _info(name: str, stats: dict) -> ActorInfo:
    return ActorInfo(name=name, namespace=stats["namespace"], agent=stats["agent"],
                     placement=stats.get("placement", ""), replica=int(stats.get("replica", 0)),
                     node_id=stats.get("node_id", ""), actor_id=stats.get("actor_id", ""),
                     inflight=int(stats.get("inflight", 0)), idle_s=float(stats.get("idle_s", 0.0)),
                     last_turn_at=stats.get("last_turn_at", ""),
                     agent_requirements=dict(stats.get("agent_requirements") or {}),
                     retiring=bool(stats.get("retiring")), turns=int(stats.get("turns", 0)))


def _pinned(options: dict, node_id: str) -> dict:
    """``options`` (the placement's label selector) preferring ``node_id``: the node the cap
    accounting chose, and, should it die, any other node the placement allows (a soft pin, so
    Ray restarts the actor elsewhere)."""
    selector = dict(options.get("label_selector") or {})
    return {"label_selector": {**selector, ray_placement.NODE_ID_LABEL: node_id},
            "fallback_strategy": [{"label_selector": selector}]}


def _memory(raw: dict) -> float:
    return float((raw.get("Resources") or {}).get("memory") or 0.0) / 0.7  # Ray offers 70% of it


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=0, max_concurrency=10_000)
class AgentPool:
    def __init__(self, config: ServerConfig | None = None, *, sweep_s: float = 2.0,
                 placement_timeout_s: float = PLACEMENT_TIMEOUT_S):
        from actors.store_host import process_store

        self.config = config or ServerConfig.from_env()
        self.settings = FleetSettings(idle_ttl_s=parse_idle_ttl(self.config.agent_idle_ttl),
                                      max_actors_per_node=self.config.max_agent_actors)
        self.sweep_s = sweep_s
        self.placement_timeout_s = placement_timeout_s
        self.store = process_store(self.config)
        self.reads = CachedReads(self.store, ("Agent",))
        self._actors: dict[str, _Entry] = {}
        self._creating: dict[str, asyncio.Future] = {}
        self._room = asyncio.Lock()
        """Held while a node is chosen and the actor registered, so two creations see each other."""
        self._views: dict[tuple[str, str], _AgentView] = {}
        self._draining: set[str] = set()
        self._ready = asyncio.Event()
        self._sweeps = 0
        self._last_workers = 0.0
        self._main = asyncio.get_running_loop().create_task(self._run())

    def __repr__(self) -> str:
        return "AgentPool(orloj)"

    # -- the loop --------------------------------------------------------------------------------

    async def _run(self) -> None:
        backoff = Backoff(0.2, 5.0)
        for _ in range(1000):  # bounded; the store may still be starting
            try:
                await self.reads.sync()
                break
            except Exception as exc:
                log.warning("agent pool: the store is not reachable yet (%s)", exc)
                await asyncio.sleep(backoff.next())
        await self._safely(self._discover)
        self._ready.set()
        while True:
            await asyncio.sleep(self.sweep_s)
            await self._safely(self.sweep)

    async def _safely(self, step) -> None:
        try:
            await step()
        except Exception:
            log.exception("agent pool step %s failed", step.__name__)

    async def _discover(self) -> None:
        """Register every live agent actor Ray knows by name (a restart of the pool, or actors
        someone else created), asking each what it is."""
        named = await asyncio.to_thread(ray.util.list_named_actors, True)
        names = [a["name"] for a in named if a["namespace"] == RAY_NAMESPACE and a["name"].startswith(AGENT_PREFIX + ":")]
        fresh = [n for n in names if n not in self._actors and n not in self._creating]

        async def one(name: str) -> None:
            try:
                handle = ray.get_actor(name, namespace=RAY_NAMESPACE)
                stats = await asyncio.wait_for(handle.stats.remote(), STATS_TIMEOUT_S)
            except (ValueError, RayActorError, asyncio.TimeoutError, AttributeError) as exc:
                log.info("agent pool: named actor %s did not answer (%s)", name, type(exc).__name__)
                return
            self._actors.setdefault(name, _Entry(handle, _info(name, stats)))
            self._view(stats["namespace"], stats["agent"]).dirty = True

        await asyncio.gather(*(one(n) for n in fresh))
        if fresh:
            log.info("agent pool: %d agent actor(s) found running", len(self._actors))

    async def sweep(self) -> None:
        """One pass: refresh every actor's load, reclaim what the rules say, write statuses."""
        self._sweeps += 1
        if self._sweeps % 15 == 0:
            await self._discover()
        await self.reads.sync()
        await self._refresh()
        agents = {}
        for entry in self._actors.values():
            key = (entry.info.namespace, entry.info.agent)
            if key not in agents:
                agents[key] = await self._agent(*key)
        for info, reason in reclaims([e.info for e in self._actors.values() if e.info.name not in self._draining],
                                     agents, self.settings):
            if reason in ("deleted", "placement_changed"):
                self._draining.add(info.name)
                asyncio.get_running_loop().create_task(self._reclaim(info, reason, drain_s=DRAIN_S))
            else:
                idle = self.settings.idle_ttl_s if reason == "idle" else Scaling.for_agent(
                    agents[(info.namespace, info.agent)]).scale_down_after_s
                await self._reclaim(info, reason, idle_for_s=idle)
        await self._write_statuses()
        if time.monotonic() - self._last_workers >= WORKER_HEARTBEAT_S:
            self._last_workers = time.monotonic()
            await self._safely(self._mirror_workers)

    async def _refresh(self) -> None:
        async def one(name: str, entry: _Entry) -> None:
            try:
                stats = await asyncio.wait_for(entry.handle.stats.remote(), STATS_TIMEOUT_S)
            except ActorDiedError:
                self._forget(name, "died")
                return
            except (RayActorError, asyncio.TimeoutError):
                entry.unanswered += 1
                if entry.unanswered >= UNANSWERED_LIMIT:
                    log.warning("agent pool: %s has not answered for %d sweeps; removing it", name, entry.unanswered)
                    ray.kill(entry.handle, no_restart=True)
                    self._forget(name, "unreachable")
                return
            entry.unanswered = 0
            before = entry.info
            entry.info = _info(name, stats)
            view = self._view(entry.info.namespace, entry.info.agent)
            if entry.info.node_id != before.node_id:
                view.dirty = True
            if entry.info.last_turn_at and entry.info.last_turn_at > view.last_turn_at:
                first = not view.last_turn_at
                view.last_turn_at = entry.info.last_turn_at
                if first or time.monotonic() - view.written_turn_at >= LAST_TURN_EVERY_S:
                    view.dirty = True

        await asyncio.gather(*(one(n, e) for n, e in list(self._actors.items())))

    # -- creating ----------------------------------------------------------------------------------

    async def _agent(self, namespace: str, name: str) -> dict | None:
        try:
            return await self.reads.get("Agent", namespace, name)
        except NotFound:
            return None

    def _view(self, namespace: str, agent: str) -> _AgentView:
        return self._views.setdefault((namespace, agent), _AgentView())

    async def acquire(self, namespace: str, agent: str, task_requirements: dict | None = None,
                      replica: int = 0) -> ray.actor.ActorHandle:
        """The handle of replica ``replica`` of the agent for these task requirements, created
        (placed, within the cap) when it does not exist. Raises ``AgentNotFound``,
        ``AgentCapacity`` (wait and ask again), ``placement_infeasible`` / ``placement_timeout``."""
        await self._ready.wait()
        await self.reads.sync()
        obj = await self._agent(namespace, agent)
        if obj is None:
            raise AgentNotFound(f'agent "{agent}" not found in namespace "{namespace}" (deleted?)')
        req = Requirements.for_agent(task_requirements, obj)
        klass = placement_class(req)
        replica = min(max(0, replica), Scaling.for_agent(obj).max_replicas - 1)
        name = ray_placement.placed_actor_name(namespace, agent, klass) + (f"#{replica}" if replica else "")
        entry = self._actors.get(name)
        if entry is not None and name not in self._draining and not entry.info.retiring:
            return entry.handle
        if name in self._creating:
            return await asyncio.shield(self._creating[name])
        creating = asyncio.get_running_loop().create_task(self._create(name, obj, req, klass, replica))
        self._creating[name] = creating
        try:
            return await asyncio.shield(creating)
        finally:
            self._creating.pop(name, None)

    async def _create(self, name: str, obj: dict, req: Requirements, klass: str, replica: int):
        meta = obj["metadata"]
        namespace, agent = meta["namespace"], meta["name"]
        while name in self._draining:  # the same name is being reclaimed: wait for it to go
            await asyncio.sleep(0.1)
        raw = await asyncio.to_thread(ray.nodes)
        nodes = [ray_placement.node_info(n) for n in raw]
        ok, reason = feasible(req, nodes)
        if not ok:
            raise OrlojError(f"agent {namespace}/{agent} cannot be placed (requirements {req.describe()}): {reason}",
                             code="placement_infeasible")
        memory = {n.get("NodeID", ""): _memory(n) for n in raw}
        candidates = [n.node_id for n in nodes if n.alive and n.matches(req)]
        caps = {n: self.settings.cap(memory.get(n, 0.0)) for n in candidates}
        handle, wait = None, "every node stayed busy"
        for _ in range(4):  # an eviction may lose to a turn that just arrived: choose again
            async with self._room:
                room = make_room(candidates, [e.info for e in self._actors.values()], caps)
                if room.wait:
                    wait = room.wait
                    break
                if room.evict is not None and not await self._reclaim(room.evict, "cap", idle_for_s=EVICT_MIN_IDLE_S):
                    room.evict.inflight = max(1, room.evict.inflight)  # a turn came first: it is busy
                    continue
                options = _pinned(ray_placement.actor_options(req, nodes), room.node_id)
                handle = agent_actor(namespace, agent, klass, options, replica, config=self.config,
                                     agent_requirements=(obj.get("spec") or {}).get("requirements") or {})
                self._actors[name] = _Entry(handle, ActorInfo(name, namespace, agent, klass, replica,
                                                              node_id=room.node_id))
                break
        if handle is None:
            view = self._view(namespace, agent)
            if view.waiting != wait:
                view.waiting, view.dirty = wait, True
            raise AgentCapacity(f"agent {namespace}/{agent} waits for an actor: {wait}")
        try:
            stats = await asyncio.wait_for(handle.stats.remote(), self.placement_timeout_s)
        except (asyncio.TimeoutError, RayActorError) as exc:
            ray.kill(handle, no_restart=True)
            self._actors.pop(name, None)
            raise Unavailable(f"agent actor {name} was not placed within {self.placement_timeout_s:g}s "
                              f"(requirements {req.describe()}; {type(exc).__name__})", code="placement_timeout") from None
        self._actors[name].info = _info(name, stats)
        view = self._view(namespace, agent)
        view.waiting, view.dirty = "", True
        log.info("agent pool: started %s on node %s", name, stats.get("node_id", "?")[:12])
        return handle

    # -- reclaiming --------------------------------------------------------------------------------

    async def _reclaim(self, info: ActorInfo, reason: str, *, idle_for_s: float | None = None,
                       drain_s: float = 0.0) -> bool:
        entry = self._actors.get(info.name)
        if entry is None:
            self._draining.discard(info.name)
            return True
        try:
            try:
                done = await asyncio.wait_for(entry.handle.retire.remote(reason, idle_for_s=idle_for_s,
                                                                          drain_s=drain_s), drain_s + 10)
            except RayActorError:
                done = True  # already gone
            except asyncio.TimeoutError:
                done = False
            if not done:
                return False
            ray.kill(entry.handle, no_restart=True)
            self._forget(info.name, reason)
            log.info("agent pool: reclaimed %s (%s)", info.name, reason)
            return True
        finally:
            self._draining.discard(info.name)

    def _forget(self, name: str, reason: str) -> None:
        entry = self._actors.pop(name, None)
        if entry is None:
            return
        view = self._view(entry.info.namespace, entry.info.agent)
        view.last_reclaim = {"at": now_rfc3339_nano(), "reason": reason, "actor": name}
        view.dirty = True

    # -- status ------------------------------------------------------------------------------------

    async def _write_statuses(self) -> None:
        by_agent: dict[tuple[str, str], list[dict]] = {}
        for entry in self._actors.values():
            i = entry.info
            by_agent.setdefault((i.namespace, i.agent), []).append(
                {"name": i.name, "actor_id": i.actor_id, "node_id": i.node_id, "placement": i.placement,
                 "replica": i.replica})
        for key, view in list(self._views.items()):
            actors = sorted(by_agent.get(key, []), key=lambda a: a["name"])
            if actors != view.actors:
                view.actors, view.dirty = actors, True
            if not view.dirty:
                continue
            if await self._write_status(key, view):
                view.dirty = False
                view.written_turn_at = time.monotonic()
            if not view.actors and not view.waiting and key not in by_agent:
                if await self._agent(*key) is None:
                    self._views.pop(key, None)  # a deleted agent: nothing left to say

    async def _write_status(self, key: tuple[str, str], view: _AgentView) -> bool:
        namespace, name = key
        for _ in range(3):
            try:
                obj = await self.store.get("Agent", namespace, name)
            except NotFound:
                return True
            status = dict(obj.get("status") or {})
            status.update(actors=view.actors, actor="running" if view.actors else "idle")
            for field_, value in (("lastTurnAt", view.last_turn_at), ("lastReclaim", view.last_reclaim),
                                  ("waiting", view.waiting)):
                if value:
                    status[field_] = value
                else:
                    status.pop(field_, None)
            if status == (obj.get("status") or {}):
                return True
            try:
                await self.store.update_status("Agent", namespace, name, status, obj["metadata"]["resourceVersion"],
                                               source=SOURCE)
                return True
            except Conflict:
                continue
            except NotFound:
                return True
        return False

    async def _mirror_workers(self) -> None:
        live = await asyncio.to_thread(ray_placement.nodes)
        inflight: dict[str, int] = {}
        for entry in self._actors.values():
            inflight[entry.info.node_id] = inflight.get(entry.info.node_id, 0) + entry.info.inflight
        await mirror_workers(self.store, live, current_tasks=inflight)

    # -- what others ask ---------------------------------------------------------------------------

    async def info(self) -> dict:
        """Per node: the cap and the live agent actors; per actor: what it reported last sweep."""
        await self._ready.wait()
        raw = await asyncio.to_thread(ray.nodes)
        nodes = {}
        for n in raw:
            if not n.get("Alive"):
                continue
            node_id = n.get("NodeID", "")
            nodes[node_id] = {"cap": self.settings.cap(_memory(n)), "actors": 0, "inflight": 0}
        for entry in self._actors.values():
            node = nodes.setdefault(entry.info.node_id, {"cap": 0, "actors": 0, "inflight": 0})
            node["actors"] += 1
            node["inflight"] += entry.info.inflight
        return {"idle_ttl_s": self.settings.idle_ttl_s, "max_actors_per_node": self.settings.max_actors_per_node,
                "nodes": nodes, "actors": [vars(e.info) for e in self._actors.values()]}

    async def ready(self) -> bool:
        await self._ready.wait()
        return True


def start_agent_pool(config: ServerConfig | None = None, **options) -> ray.actor.ActorHandle:
    handle = AgentPool.options(name=POOL_ACTOR, namespace=RAY_NAMESPACE, get_if_exists=True,
                               lifetime="detached").remote(config or ServerConfig.from_env(), **options)
    ray.get(handle.ready.remote(), timeout=120)
    return handle


class PooledAgentRuntime:
    """The AgentRuntime of a supervisor: rings agent actors directly, asks the pool for one only
    when it holds no handle (first turn, after a reclaim). Ray-level retries stay off: the
    executor redelivers (``agent_reclaimed`` at once, ``agent_capacity`` after a wait)."""

    def __init__(self, pool: ray.actor.ActorHandle | None = None, *,
                 get_pool: Callable[[], ray.actor.ActorHandle] | None = None):
        self._pool = pool
        self._get_pool = get_pool or (lambda: ray.get_actor(POOL_ACTOR, namespace=RAY_NAMESPACE))
        self._handles: dict[tuple[str, str, str, int], ray.actor.ActorHandle] = {}
        self._inflight: dict[tuple[str, str, str, int], int] = {}
        self._replicas: dict[tuple[str, str, str], int] = {}

    @property
    def pool(self) -> ray.actor.ActorHandle:
        if self._pool is None:
            self._pool = self._get_pool()
        return self._pool

    async def run_turn(self, request):
        req = Requirements.for_agent(request.requirements, request.agent)
        pool_key = (request.namespace, request.agent_name, placement_class(req))
        scaling = Scaling.for_agent(request.agent)
        count = min(max(self._replicas.get(pool_key, scaling.min_replicas), scaling.min_replicas),
                    scaling.max_replicas)
        replica = scaling.pick([self._inflight.get((*pool_key, i), 0) for i in range(count)])
        if replica >= count:  # deeper than the replicas absorb: another one (the pool may say wait)
            log.info("scaling agent %s/%s to %d replicas", pool_key[0], pool_key[1], replica + 1)
        self._replicas[pool_key] = max(count, replica + 1)
        key = (*pool_key, replica)
        self._inflight[key] = self._inflight.get(key, 0) + 1
        try:
            handle = self._handles.get(key)
            if handle is None:
                handle = self._handles[key] = await self._acquire(request, replica)
            return await handle.run_turn.remote(request)
        except RayTaskError as exc:
            cause = exc.cause if isinstance(exc.cause, Exception) else exc
            if isinstance(cause, AgentReclaimed):
                self._lose(key)
            raise cause from None
        except ActorDiedError:  # reclaimed (or gone for good): the next try asks the pool again
            self._lose(key)
            raise AgentReclaimed(f"agent actor of {request.namespace}/{request.agent_name} is gone; redelivering") from None
        except RayActorError as exc:  # restarting after a crash: the executor redelivers with backoff
            raise Unavailable(f"agent actor {request.namespace}/{request.agent_name} is unavailable: "
                              f"{type(exc).__name__}") from None
        finally:
            self._inflight[key] -= 1

    def _lose(self, key: tuple[str, str, str, int]) -> None:
        self._handles.pop(key, None)
        pool_key, replica = key[:3], key[3]
        if replica and self._replicas.get(pool_key, 0) > replica:  # a scaled-down replica
            self._replicas[pool_key] = replica

    async def _acquire(self, request, replica: int):
        try:
            return await self.pool.acquire.remote(request.namespace, request.agent_name, request.requirements,
                                                  replica)
        except RayTaskError as exc:
            raise (exc.cause if isinstance(exc.cause, Exception) else exc) from None
        except RayActorError as exc:
            self._pool = None
            raise Unavailable(f"the agent pool is unavailable ({type(exc).__name__}); retrying") from None

"""Supervisor: the named, detached actor that claims tasks and drives them through the graph.

A thin shell around ``orloj_ray.engine.controller.Controller``: it supplies the Ray pieces
(RemoteStore, AgentActors as the AgentRuntime, an actor probe for Agent readiness). With
``max_restarts=-1`` Ray brings it back after a crash and the controller resumes from the Store.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable

import ray
from ray.exceptions import RayActorError, RayTaskError

from actors import RAY_NAMESPACE, SUPERVISOR_ACTOR, agent_actor_name, placement
from actors.agent_actor import agent_actor
from actors.placement import placed_actor_name
from actors.memory_host import RemoteMemoryService
from actors.rate_limiter import RayRateLimiter
from actors.store_host import RemoteStore
from actors.workers import HEARTBEAT_S as WORKER_HEARTBEAT_S, sync_workers
from orloj_ray.engine.controller import Controller
from orloj_ray.engine.mailbox import Mailbox
from orloj_ray.messaging.factory import open_log
from orloj_ray.engine.placement import NodeInfo, Requirements, feasible, placement_class
from orloj_ray.config import ConfigError, ServerConfig
from orloj_ray.engine.runtime import LocalAgentRuntime
from orloj_ray.engine.scaling import Scaling
from orloj_ray.engine.turn import TurnRequest, TurnResult
from orloj_ray.memory import register_memory
from orloj_ray.mcp import McpPolicy
from orloj_ray.tools import default_tool_runner
from orloj_ray.errors import OrlojError, Unavailable

log = logging.getLogger("orloj_ray.supervisor")
DRAIN_TIMEOUT_S = 30.0
"""How long ``orloj down`` waits for running turns to finish before cancelling them."""


class RayAgentRuntime:
    """AgentRuntime that rings the agent's actor; Ray-level retries stay off (one delivery path).

    Actors are keyed by (namespace, agent, placement class): the task's ``spec.requirements``
    merged with the agent's decide where the actor may run (``actors/placement.py``). Before a
    placed actor is created its requirements are checked against the live nodes, because Ray
    would leave an unplaceable actor pending forever: a requirement no node meets fails the
    turn at once with the non-retryable ``placement_infeasible`` and the reason. A new actor
    must then answer a ping within ``placement_timeout_s``; if it does not, it is killed (so the
    next try places it afresh) and the turn is redelivered (``placement_timeout``, retryable).
    """

    PLACEMENT_TIMEOUT_S = 30.0
    """Default for ``placement_timeout_s``; the environment variable ``ORLOJ_PLACEMENT_TIMEOUT_S`` overrides it."""

    def __init__(self, *, placement_timeout_s: float | None = None,
                 list_nodes: Callable[[], list[NodeInfo]] | None = None, config: ServerConfig | None = None):
        self.config = config
        self.placement_timeout_s = placement_timeout_s if placement_timeout_s is not None else float(
            os.environ.get("ORLOJ_PLACEMENT_TIMEOUT_S", self.PLACEMENT_TIMEOUT_S))
        self._list_nodes = list_nodes or placement.nodes
        # keyed by (namespace, agent, placement class, replica)
        self._handles: dict[tuple[str, str, str, int], ray.actor.ActorHandle] = {}
        self._starting: dict[tuple[str, str, str, int], asyncio.Lock] = {}
        self._node_of: dict[tuple[str, str, str, int], str] = {}
        self._inflight: dict[tuple[str, str, str, int], int] = {}
        self._replicas: dict[tuple[str, str, str], int] = {}
        self._scaling: dict[tuple[str, str, str], Scaling] = {}
        self._idle_since: dict[tuple[str, str, str, int], float] = {}

    async def _check_feasible(self, namespace: str, agent: str, req: Requirements) -> list[NodeInfo]:
        live = await asyncio.to_thread(self._list_nodes)
        ok, reason = feasible(req, live)
        if not ok:
            raise OrlojError(f"agent {namespace}/{agent} cannot be placed (requirements {req.describe()}): {reason}",
                             code="placement_infeasible")
        return live

    async def handle(self, namespace: str, agent: str, req: Requirements | None = None,
                     replica: int = 0) -> ray.actor.ActorHandle:
        """Replica ``replica`` of (namespace, agent, placement class of ``req``), created and placed on first use."""
        req = req or Requirements()
        key = (namespace, agent, placement_class(req), replica)
        if key in self._handles:
            return self._handles[key]
        async with self._starting.setdefault(key, asyncio.Lock()):
            if key in self._handles:
                return self._handles[key]
            options = {}
            if key[2]:
                options = placement.actor_options(req, await self._check_feasible(namespace, agent, req))
            handle = agent_actor(namespace, agent, key[2], options, replica, config=self.config)
            try:
                info = await asyncio.wait_for(handle.ping.remote(), timeout=self.placement_timeout_s)
            except asyncio.TimeoutError:
                ray.kill(handle, no_restart=True)
                if key[2]:
                    await self._check_feasible(namespace, agent, req)
                raise Unavailable(f"agent actor {placed_actor_name(*key[:3])} was not placed within "
                                  f"{self.placement_timeout_s:g}s (requirements {req.describe()})",
                                  code="placement_timeout") from None
            except RayActorError as exc:
                raise Unavailable(f"agent actor {placed_actor_name(*key[:3])} is unavailable: "
                                  f"{type(exc).__name__}") from None
            self._node_of[key] = info.get("node_id", "")
            self._handles[key] = handle
            return handle

    def _forget(self, key: tuple[str, str, str, int]) -> None:
        self._handles.pop(key, None)
        self._node_of.pop(key, None)

    async def run_turn(self, request: TurnRequest) -> TurnResult:
        req = Requirements.for_agent(request.requirements, request.agent)
        pool = (request.namespace, request.agent_name, placement_class(req))
        scaling = self._scaling[pool] = Scaling.for_agent(request.agent)
        count = self._replicas.setdefault(pool, scaling.min_replicas)
        replica = scaling.pick([self._inflight.get((*pool, i), 0) for i in range(count)])
        if replica >= count:  # the mailbox is deeper than the replicas absorb: add one
            self._replicas[pool] = replica + 1
            log.info("scaling agent %s/%s to %d replicas", pool[0], pool[1], replica + 1)
        key = (*pool, replica)
        self._inflight[key] = self._inflight.get(key, 0) + 1
        try:
            handle = await self.handle(request.namespace, request.agent_name, req, replica)
        except BaseException:
            self._inflight[key] -= 1
            raise
        try:
            return await handle.run_turn.remote(request)
        except RayTaskError as exc:
            raise exc.cause if isinstance(exc.cause, Exception) else exc from None
        except RayActorError as exc:  # died or restarting: the executor redelivers the turn
            self._forget(key)  # the next try checks placement again
            raise Unavailable(f"agent actor {request.namespace}/{request.agent_name} is unavailable: "
                              f"{type(exc).__name__}") from None
        finally:
            self._inflight[key] -= 1
            if not self._inflight[key]:
                self._idle_since[key] = time.monotonic()

    def scale_down(self) -> list[str]:
        """Remove replicas that autoscaling no longer needs (the newest, once idle long enough)."""
        removed = []
        now = time.monotonic()
        for pool, count in list(self._replicas.items()):
            scaling = self._scaling.get(pool)
            if scaling is None or count <= scaling.min_replicas:
                continue
            keys = [(*pool, i) for i in range(count)]
            index = scaling.removable([self._inflight.get(k, 0) for k in keys],
                                      [now - self._idle_since.get(k, now) for k in keys])
            if index is None:
                continue
            key = keys[index]
            handle = self._handles.get(key)
            self._forget(key)
            self._replicas[pool] = count - 1
            self._idle_since.pop(key, None)
            if handle is not None:
                ray.kill(handle, no_restart=True)
            name = placed_actor_name(*pool) + f"#{index}"
            log.info("scaled agent %s/%s down to %d replicas (removed idle %s)", pool[0], pool[1], count - 1, name)
            removed.append(name)
        return removed

    def current_tasks(self) -> dict[str, int]:
        """Turns in flight per Ray node id (where each actor answered its first ping)."""
        counts: dict[str, int] = {}
        for key, count in self._inflight.items():
            node = self._node_of.get(key)
            if node and count:
                counts[node] = counts.get(node, 0) + count
        return counts

    async def probe(self, namespace: str, agent: str) -> str:
        """``running`` if one of the agent's actors answers, ``idle`` if it has none."""
        handles = [h for (ns, name, _, _), h in self._handles.items() if (ns, name) == (namespace, agent)]
        if not handles:
            try:
                handles = [ray.get_actor(agent_actor_name(namespace, agent), namespace=RAY_NAMESPACE)]
            except ValueError:
                return "idle"
        try:
            await asyncio.wait_for(handles[0].ping.remote(), timeout=5.0)
            return "running"
        except (asyncio.TimeoutError, RayActorError) as exc:
            return f"unreachable: {type(exc).__name__}"


def _sequential_runtime(config: ServerConfig) -> LocalAgentRuntime:
    """Turns in the supervisor's own process, with the same tools an AgentActor has."""
    tools = default_tool_runner(config)
    register_memory(tools, RemoteMemoryService())
    return LocalAgentRuntime(tools=tools, config=config, limiter=RayRateLimiter())


@ray.remote(num_cpus=0, max_restarts=-1, max_concurrency=1000)
class Supervisor:
    def __init__(self, config: ServerConfig | None = None, max_concurrent_tasks: int = 256):
        self.config = config or ServerConfig.from_env()
        self.mode = self.config.mode
        ray_runtime = RayAgentRuntime(config=self.config)
        sequential = self.mode == "sequential"
        # same identity across restarts, new incarnation: a restarted supervisor takes over
        # its predecessor's leases at once (orloj_ray.engine.claims)
        worker = f"{SUPERVISOR_ACTOR}#{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.controller = Controller(
            RemoteStore(), _sequential_runtime(self.config) if sequential else ray_runtime, worker=worker,
            probe=ray_runtime.probe, max_concurrent_tasks=max_concurrent_tasks,
            max_parallel_turns=1 if sequential else None, task_retention=self.config.task_retention_delta(),
            mcp_policy=McpPolicy.from_config(self.config),
        )
        loop = asyncio.get_running_loop()
        self._loop = loop.create_task(self._main(sequential))
        self._workers = loop.create_task(self._mirror_workers(ray_runtime))

    async def _main(self, sequential: bool) -> None:
        """Open the message log (message-driven: the agents' mailbox), then run the control loop."""
        if not sequential:
            delay = 1.0
            while True:  # bounded per try; NATS may still be starting: keep trying, loudly
                try:
                    self.controller.mailbox = Mailbox(await open_log(self.config), self.controller.store)
                    break
                except ConfigError:
                    log.exception("cannot open the message log")
                    raise
                except Exception as exc:
                    log.warning("message log %s unreachable (%s); retrying in %.0fs", self.config.log, exc, delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 30.0)
        await self.controller.run()

    async def _mirror_workers(self, runtime: RayAgentRuntime) -> None:
        """Keep one Worker resource per Ray node (region, GPUs, models, load), every heartbeat."""
        while not self._loop.done():
            try:
                await sync_workers(self.controller.store, runtime)
            except Exception:
                log.warning("mirroring Ray nodes into Workers failed", exc_info=True)
            try:
                runtime.scale_down()
            except Exception:
                log.warning("scaling agent replicas down failed", exc_info=True)
            await asyncio.sleep(WORKER_HEARTBEAT_S)

    async def info(self) -> dict:
        mailbox = self.controller.mailbox
        return {"worker": self.controller.worker, "mode": self.mode, "running_tasks": len(self.controller.running),
                "alive": not self._loop.done(), "log": self.config.log,
                "log_ready": mailbox is not None or self.mode == "sequential",
                "durable_acks": getattr(mailbox.log, "durable_acks", None) if mailbox is not None else None}

    async def stop(self, drain_timeout_s: float = DRAIN_TIMEOUT_S) -> dict:
        """Graceful shutdown (``orloj down``): stop claiming, let running turns finish and record,
        release every lease, close the message log. Returns what was drained."""
        self._workers.cancel()
        drained = await self.controller.drain(drain_timeout_s)
        try:
            await asyncio.wait_for(self._loop, timeout=10)
        except (asyncio.TimeoutError, Exception):
            log.warning("the control loop did not stop cleanly", exc_info=True)
        if self.controller.mailbox is not None:
            await self.controller.mailbox.log.close()
        return {"drained_tasks": drained}


def start_supervisor(config: ServerConfig | None = None) -> ray.actor.ActorHandle:
    handle = Supervisor.options(
        name=SUPERVISOR_ACTOR, namespace=RAY_NAMESPACE, get_if_exists=True, lifetime="detached",
    ).remote(config or ServerConfig.from_env())
    ray.get(handle.info.remote())
    return handle

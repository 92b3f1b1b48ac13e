"""Supervisors: named, detached actors that claim tasks and drive them through their graphs.

A thin shell around ``orloj_ray.engine.controller.Controller``: it supplies the Ray pieces
(its process's store, the agent pool as the AgentRuntime, the message log). With
``max_restarts=-1`` Ray brings a crashed one back and the controller resumes from the Store.

``orloj up --supervisors N`` starts ``orloj:supervisor:0`` .. ``:N-1``; each claims the tasks of
its shard (``orloj_ray.engine.shards``) and, while another is gone (no longer among Ray's named
actors), the next one in ring order takes its shard over at once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid

import ray

from actors import RAY_NAMESPACE, SUPERVISOR_PREFIX, supervisor_name
from actors.agent_pool import PooledAgentRuntime
from actors.memory_host import RemoteMemoryService
from actors.metrics_export import export_to_ray, keep_agent_gauges
from actors.rate_limiter import RayRateLimiter
from actors.store_host import process_store
from actors.token_hub import TokenTap
from orloj_ray.config import ConfigError, ServerConfig
from orloj_ray.engine.controller import Controller
from orloj_ray.engine.mailbox import Mailbox
from orloj_ray.engine.runtime import LocalAgentRuntime
from orloj_ray.engine.shards import Shards
from orloj_ray.memory import register_memory
from orloj_ray.messaging.factory import open_log
from orloj_ray.retry import Backoff
from orloj_ray.observability import default_task_metrics
from orloj_ray.mcp import McpPolicy
from orloj_ray.tools import default_tool_runner

log = logging.getLogger("orloj_ray.supervisor")
DRAIN_TIMEOUT_S = 30.0
"""How long ``orloj down`` waits for running turns to finish before cancelling them."""
PEERS_EVERY_S = 2.0
"""How often a supervisor looks which of its peers are alive."""


class _SequentialRuntime:
    """Turns in the supervisor's own process, with the same tools and token streaming an
    AgentActor has."""

    def __init__(self, config: ServerConfig):
        tools = default_tool_runner(config)
        register_memory(tools, RemoteMemoryService())
        self._turns = LocalAgentRuntime(tools=tools, config=config, limiter=RayRateLimiter())
        self._tokens = TokenTap()

    async def run_turn(self, request):
        tokens = await self._tokens.publisher(request)  # None unless someone watches the task
        try:
            return await self._turns.run_turn(request, sink=tokens)
        finally:
            if tokens is not None:
                await tokens.aclose()


def live_supervisors(count: int) -> frozenset[int]:
    """Indices of the supervisors Ray still knows by name (alive or restarting)."""
    prefix = SUPERVISOR_PREFIX + ":"
    alive = set()
    for actor in ray.util.list_named_actors(all_namespaces=True):
        name = actor["name"]
        if actor["namespace"] == RAY_NAMESPACE and name.startswith(prefix) and name[len(prefix):].isdigit():
            alive.add(int(name[len(prefix):]))
    return frozenset(i for i in alive if i < count)


@ray.remote(num_cpus=0, max_restarts=-1, max_concurrency=1000)
class Supervisor:
    def __init__(self, config: ServerConfig | None = None, index: int = 0, max_concurrent_tasks: int = 256):
        self.config = config or ServerConfig.from_env()
        self.mode = self.config.mode
        self.index = index
        count = self.config.supervisors
        sequential = self.mode == "sequential"
        # same identity across restarts, new incarnation: a restarted supervisor takes over
        # its predecessor's leases at once (orloj_ray.lifecycle.takeover_reason)
        name = supervisor_name(index)
        worker = f"{name}#{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.shards = Shards(index=index, count=count, names=tuple(supervisor_name(i) for i in range(count)))
        self.controller = Controller(
            process_store(self.config), _SequentialRuntime(self.config) if sequential else PooledAgentRuntime(),
            worker=worker, shards=self.shards, mode=self.mode, max_concurrent_tasks=max_concurrent_tasks,
            max_parallel_turns=1 if sequential else None, task_retention=self.config.task_retention_delta(),
            mcp_policy=McpPolicy.from_config(self.config),
        )
        loop = asyncio.get_running_loop()
        self._loop = loop.create_task(self._main(sequential))
        self._peers = loop.create_task(self._watch_peers()) if count > 1 else None
        self._metrics = default_task_metrics()  # what this process's TaskRecorders feed
        export_to_ray(self._metrics.registry)
        # live actors are counted once, by the leader; turns in flight by each supervisor
        self._gauges = loop.create_task(keep_agent_gauges(self._metrics, self.controller.runtime,
                                                          count_actors=lambda: self.shards.leader))

    def __repr__(self) -> str:
        return f"Supervisor({supervisor_name(self.index)})"

    async def _main(self, sequential: bool) -> None:
        """Open the message log (message-driven: the agents' mailbox), then run the control loop."""
        if not sequential:
            backoff = Backoff(1.0, 30.0)
            while True:  # bounded per try; NATS may still be starting: keep trying, loudly
                try:
                    self.controller.mailbox = Mailbox(await open_log(self.config), self.controller.store)
                    break
                except ConfigError:
                    log.exception("cannot open the message log")
                    raise
                except Exception as exc:
                    delay = backoff.next()
                    log.warning("message log %s unreachable (%s); retrying in %.0fs", self.config.log, exc, delay)
                    await asyncio.sleep(delay)
        await self.controller.run()

    async def _watch_peers(self) -> None:
        """Keep ``shards.alive`` current: a peer gone from Ray's named actors hands us its shard."""
        while not self._loop.done():
            try:
                alive = await asyncio.to_thread(live_supervisors, self.shards.count)
                if alive | {self.index} != self.shards.alive:
                    before = self.shards.owned
                    self.shards.alive = alive | {self.index}
                    if self.shards.owned != before:
                        log.info("supervisor %d now owns shards %s (alive: %s)", self.index,
                                 sorted(self.shards.owned), sorted(self.shards.alive))
            except Exception:
                log.warning("looking for peer supervisors failed", exc_info=True)
            await asyncio.sleep(PEERS_EVERY_S)

    async def info(self) -> dict:
        mailbox = self.controller.mailbox
        return {"worker": self.controller.worker, "index": self.index, "mode": self.mode,
                "shards": sorted(self.shards.owned), "leader": self.shards.leader,
                "running_tasks": len(self.controller.running), "alive": not self._loop.done(),
                "log": self.config.log, "log_ready": mailbox is not None or self.mode == "sequential",
                "durable_acks": getattr(mailbox.log, "durable_acks", None) if mailbox is not None else None}

    async def metrics(self) -> dict:
        """This supervisor's metrics snapshot; the API's ``/metrics`` merges every supervisor's."""
        return self._metrics.registry.snapshot()

    async def stop(self, drain_timeout_s: float = DRAIN_TIMEOUT_S) -> dict:
        """Graceful shutdown (``orloj down``): stop claiming, let running turns finish and record,
        release every lease, close the message log. Returns what was drained."""
        if self._peers is not None:
            self._peers.cancel()
        self._gauges.cancel()
        drained = await self.controller.drain(drain_timeout_s)
        try:
            await asyncio.wait_for(self._loop, timeout=10)
        except (asyncio.TimeoutError, Exception):
            log.warning("the control loop did not stop cleanly", exc_info=True)
        if self.controller.mailbox is not None:
            await self.controller.mailbox.log.close()
        return {"drained_tasks": drained}


def start_supervisors(config: ServerConfig | None = None) -> list[ray.actor.ActorHandle]:
    """``config.supervisors`` supervisors (existing ones are found, not duplicated), all answering."""
    config = config or ServerConfig.from_env()
    handles = [Supervisor.options(name=supervisor_name(i), namespace=RAY_NAMESPACE, get_if_exists=True,
                                  lifetime="detached").remote(config, i)
               for i in range(config.supervisors)]
    ray.get([h.info.remote() for h in handles])
    return handles


def supervisor_handles() -> list[ray.actor.ActorHandle]:
    """Every supervisor Ray knows by name, in index order."""
    return [ray.get_actor(supervisor_name(i), namespace=RAY_NAMESPACE)
            for i in sorted(live_supervisors(1 << 16))]

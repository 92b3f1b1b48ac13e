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
import uuid

import ray
from ray.exceptions import RayActorError, RayTaskError

from actors import RAY_NAMESPACE, SUPERVISOR_ACTOR, agent_actor_name
from actors.agent_actor import agent_actor
from actors.store_host import RemoteStore
from orloj_ray.engine.controller import Controller
from orloj_ray.engine.runtime import LocalAgentRuntime, resolve_mode
from orloj_ray.engine.turn import TurnRequest, TurnResult
from orloj_ray.errors import Unavailable

log = logging.getLogger("orloj_ray.supervisor")


class RayAgentRuntime:
    """AgentRuntime that rings the agent's actor; Ray-level retries stay off (one delivery path)."""

    def __init__(self):
        self._handles: dict[tuple[str, str], ray.actor.ActorHandle] = {}

    def handle(self, namespace: str, agent: str) -> ray.actor.ActorHandle:
        key = (namespace, agent)
        if key not in self._handles:
            self._handles[key] = agent_actor(namespace, agent)
        return self._handles[key]

    async def run_turn(self, request: TurnRequest) -> TurnResult:
        handle = self.handle(request.namespace, request.agent_name)
        try:
            return await handle.run_turn.remote(request)
        except RayTaskError as exc:
            raise exc.cause if isinstance(exc.cause, Exception) else exc from None
        except RayActorError as exc:  # died or restarting: the executor redelivers the turn
            self._handles.pop((request.namespace, request.agent_name), None)
            raise Unavailable(f"agent actor {request.namespace}/{request.agent_name} is unavailable: "
                              f"{type(exc).__name__}") from None

    async def probe(self, namespace: str, agent: str) -> str:
        try:
            handle = ray.get_actor(agent_actor_name(namespace, agent), namespace=RAY_NAMESPACE)
        except ValueError:
            return "idle"
        try:
            await asyncio.wait_for(handle.ping.remote(), timeout=5.0)
            return "running"
        except (asyncio.TimeoutError, RayActorError) as exc:
            return f"unreachable: {type(exc).__name__}"


@ray.remote(num_cpus=0, max_restarts=-1, max_concurrency=1000)
class Supervisor:
    def __init__(self, mode: str = "message-driven", max_concurrent_tasks: int = 256):
        self.mode = resolve_mode(mode)
        ray_runtime = RayAgentRuntime()
        sequential = self.mode == "sequential"
        # same identity across restarts, new incarnation: a restarted supervisor takes over
        # its predecessor's leases at once (orloj_ray.engine.claims)
        worker = f"{SUPERVISOR_ACTOR}#{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.controller = Controller(
            RemoteStore(), LocalAgentRuntime() if sequential else ray_runtime, worker=worker,
            probe=ray_runtime.probe, max_concurrent_tasks=max_concurrent_tasks,
            max_parallel_turns=1 if sequential else None,
        )
        self._loop = asyncio.get_running_loop().create_task(self.controller.run())

    async def info(self) -> dict:
        return {"worker": self.controller.worker, "mode": self.mode, "running_tasks": len(self.controller.running),
                "alive": not self._loop.done()}

    async def stop(self) -> None:
        self.controller.stop()
        await asyncio.wait_for(self._loop, timeout=10)


def start_supervisor(mode: str = "message-driven") -> ray.actor.ActorHandle:
    handle = Supervisor.options(
        name=SUPERVISOR_ACTOR, namespace=RAY_NAMESPACE, get_if_exists=True, lifetime="detached",
    ).remote(mode)
    ray.get(handle.info.remote())
    return handle

"""AgentActor: the executor of one agent's turns, shared by every task that uses the agent.

Async, so one actor runs many turns at once; model and tool calls are async I/O, and
anything blocking must go through ``asyncio.to_thread``. The actor holds no task state:
everything a turn needs arrives in the TurnRequest and everything it did goes back in the
TurnResult, so a restarted actor loses nothing.
"""

from __future__ import annotations

import ray

from actors import RAY_NAMESPACE
from actors.placement import placed_actor_name
from actors.rate_limiter import RayRateLimiter
from orloj_ray.engine.turn import TurnRequest, TurnResult, run_turn
from orloj_ray.gateway import default_gateway
from orloj_ray.config import ServerConfig
from actors.memory_host import RemoteMemoryService
from orloj_ray.memory import register_memory
from orloj_ray.tools import default_tool_runner


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=0, max_concurrency=1000)
class AgentActor:
    def __init__(self, namespace: str, agent: str, config: ServerConfig | None = None):
        self.namespace = namespace
        self.agent = agent
        self._gateway = default_gateway()
        self._tools = default_tool_runner(config)
        register_memory(self._tools, RemoteMemoryService())  # one shared host for every agent's memory
        self._limiter = RayRateLimiter()  # maxTokensPerMinute: one bucket per agent across the cluster
        self.turns = 0

    async def run_turn(self, request: TurnRequest) -> TurnResult:
        self.turns += 1
        return await run_turn(request, self._gateway, self._tools, self._limiter)

    async def ping(self) -> dict:
        return {"agent": self.agent, "namespace": self.namespace, "turns": self.turns,
                "node_id": ray.get_runtime_context().get_node_id()}


def agent_actor(namespace: str, agent: str, placement: str = "", options: dict | None = None,
                replica: int = 0, config: ServerConfig | None = None) -> ray.actor.ActorHandle:
    """One actor of the agent for one placement class, created on first use (``get_if_exists``),
    detached so tasks share it.

    ``placement`` is the placement class (``orloj_ray.engine.placement.placement_class``) that
    names the actor; ``options`` are Ray actor options from ``actors.placement.actor_options``
    (a ``label_selector``), used only when the actor is created. Replica ``i > 0`` of a scaled
    agent is named with a ``#i`` suffix. ``config`` (tool egress and isolation settings) is
    likewise used only at creation.
    """
    name = placed_actor_name(namespace, agent, placement) + (f"#{replica}" if replica else "")
    return AgentActor.options(
        name=name, namespace=RAY_NAMESPACE, get_if_exists=True,
        lifetime="detached", **(options or {}),
    ).remote(namespace, agent, config)

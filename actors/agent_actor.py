"""AgentActor: the executor of one agent's turns, shared by every task that uses the agent.

Async, so one actor runs many turns at once; model and tool calls are async I/O, and
anything blocking must go through ``asyncio.to_thread``. The actor holds no task state:
everything a turn needs arrives in the TurnRequest and everything it did goes back in the
TurnResult, so a restarted actor loses nothing.

The agent pool (``actors/agent_pool.py``) creates and reclaims these; each actor knows what it
is (namespace, agent, placement class, replica) and reports its own load and idleness
(``stats``), so the pool can be rebuilt from Ray's named actors at any time. ``retire`` stops
it taking turns (a turn sent afterwards fails with ``agent_reclaimed`` and is redelivered to a
fresh actor) and, with ``drain_s``, waits for the turns in flight to finish.

The turn machinery (gateway, tools, governance, memory) is imported on the first turn, not at
start: an actor waiting for work holds little more than Ray's own worker.
"""

from __future__ import annotations

import asyncio
import time

import ray

from actors import RAY_NAMESPACE
from actors.placement import placed_actor_name
from actors.token_hub import TokenTap
from orloj_ray.engine.fleet import FRESH_GRACE_S, AgentReclaimed
from orloj_ray.clock import now_rfc3339_nano


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=0, max_concurrency=1000)
class AgentActor:
    def __init__(self, namespace: str, agent: str, config=None, placement: str = "", replica: int = 0,
                 agent_requirements: dict | None = None):
        self.namespace, self.agent, self.placement, self.replica = namespace, agent, placement, replica
        self.agent_requirements = dict(agent_requirements or {})
        self._config = config
        self._runner = None
        self._inflight = 0
        self._turns = 0
        self._last_end = time.monotonic()
        self._last_turn_at = ""
        self._retiring = ""
        self._idle = asyncio.Event()
        self._idle.set()
        self._tokens = TokenTap()  # streams a turn's model output while someone watches its task

    def __repr__(self) -> str:  # what the Ray dashboard and logs show for this actor
        return f"AgentActor({placed_actor_name(self.namespace, self.agent, self.placement)}" + (
            f"#{self.replica})" if self.replica else ")")

    def _turn_runner(self):
        if self._runner is None:  # on the first turn: what a turn needs, once
            from actors.memory_host import RemoteMemoryService
            from actors.rate_limiter import RayRateLimiter
            from orloj_ray.engine.runtime import LocalAgentRuntime
            from orloj_ray.memory import register_memory
            from orloj_ray.tools import default_tool_runner

            tools = default_tool_runner(self._config)
            register_memory(tools, RemoteMemoryService())  # one shared host for every agent's memory
            # maxTokensPerMinute: one bucket per agent across the cluster
            self._runner = LocalAgentRuntime(tools=tools, config=self._config, limiter=RayRateLimiter())
        return self._runner

    async def run_turn(self, request):
        if self._retiring:
            raise AgentReclaimed(f"agent actor {self!r} was reclaimed ({self._retiring}); the turn goes to a new one")
        self._inflight += 1
        self._idle.clear()
        self._turns += 1
        tokens = None
        try:
            tokens = await self._tokens.publisher(request)  # None unless someone watches the task
            return await self._turn_runner().run_turn(request, sink=tokens)
        finally:
            if tokens is not None:
                await tokens.aclose()  # every token of the turn is with the hub before its result
            self._inflight -= 1
            self._last_end = time.monotonic()
            self._last_turn_at = now_rfc3339_nano()
            if not self._inflight:
                self._idle.set()

    async def stats(self) -> dict:
        """Who this actor is and how busy: what the pool decides on."""
        ctx = ray.get_runtime_context()
        return {"namespace": self.namespace, "agent": self.agent, "placement": self.placement,
                "replica": self.replica, "agent_requirements": self.agent_requirements,
                "node_id": ctx.get_node_id(), "actor_id": ctx.get_actor_id(), "inflight": self._inflight,
                "idle_s": 0.0 if self._inflight else time.monotonic() - self._last_end,
                "last_turn_at": self._last_turn_at, "turns": self._turns, "retiring": bool(self._retiring)}

    async def retire(self, reason: str, *, idle_for_s: float | None = None, drain_s: float = 0.0) -> bool:
        """Stop taking turns; True once none is in flight (then the pool kills the actor).

        ``idle_for_s``: only if idle at least this long (an idle or cap reclaim racing a new
        turn loses cleanly: the turn came first, so the actor stays). ``drain_s``: wait up to
        this long for the turns in flight (a deleted agent's actor finishes them first)."""
        if idle_for_s is not None:
            need = idle_for_s if self._turns else max(idle_for_s, FRESH_GRACE_S)  # its first turn is coming
            if self._inflight or time.monotonic() - self._last_end < need:
                return False
        self._retiring = reason
        if self._inflight and drain_s > 0:
            try:
                await asyncio.wait_for(self._idle.wait(), drain_s)
            except asyncio.TimeoutError:
                pass
        return not self._inflight

    async def ping(self) -> dict:
        return {"agent": self.agent, "namespace": self.namespace, "turns": self._turns,
                "node_id": ray.get_runtime_context().get_node_id()}


def agent_actor_options(namespace: str, agent: str, placement: str = "", replica: int = 0) -> dict:
    """Name and lifetime of one agent actor: ``orloj:agent:<ns>:<agent>[:<placement>][#i]``,
    detached (it outlives the supervisor that asked for it; the pool reclaims it)."""
    name = placed_actor_name(namespace, agent, placement) + (f"#{replica}" if replica else "")
    return {"name": name, "namespace": RAY_NAMESPACE, "lifetime": "detached"}


def agent_actor(namespace: str, agent: str, placement: str = "", options: dict | None = None,
                replica: int = 0, config=None, agent_requirements: dict | None = None) -> ray.actor.ActorHandle:
    """Create (or find, ``get_if_exists``) one agent actor; ``options``: Ray placement options
    (a ``label_selector``), used only at creation. Outside tests only the pool calls this."""
    return AgentActor.options(get_if_exists=True, **agent_actor_options(namespace, agent, placement, replica),
                              **(options or {})).remote(namespace, agent, config, placement, replica,
                                                        agent_requirements)

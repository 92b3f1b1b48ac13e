"""The AgentRuntime seam: how the executor hands a turn to an agent.

``LocalAgentRuntime`` runs turns in this process (sequential mode, tests); the Ray
implementation in ``actors/`` rings an AgentActor instead. Both return a ``TurnResult``.
"""

from __future__ import annotations

from typing import Protocol

from orloj_ray.engine.turn import TurnRequest, TurnResult, run_turn
from orloj_ray.gateway import ModelGateway, default_gateway
from orloj_ray.tools import HttpToolRunner, ToolRunner


class AgentRuntime(Protocol):
    async def run_turn(self, request: TurnRequest) -> TurnResult: ...


class LocalAgentRuntime:
    def __init__(self, gateway: ModelGateway | None = None, tools: ToolRunner | None = None):
        self._gateway = gateway or default_gateway()
        self._tools = tools or HttpToolRunner()

    async def run_turn(self, request: TurnRequest) -> TurnResult:
        return await run_turn(request, self._gateway, self._tools)

"""The AgentRuntime seam: how the executor hands a turn to an agent.

``LocalAgentRuntime`` runs turns in this process (sequential mode, tests); the Ray
implementation in ``actors/`` rings an AgentActor instead. Both return a ``TurnResult``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from orloj_ray.engine.turn import TurnRequest, TurnResult, run_turn
from orloj_ray.gateway import ModelGateway, default_gateway
from orloj_ray.tools import ToolRunner, default_tool_runner

if TYPE_CHECKING:
    from orloj_ray.config import ServerConfig
    from orloj_ray.governance import RateLimiter


class AgentRuntime(Protocol):
    async def run_turn(self, request: TurnRequest) -> TurnResult: ...


class LocalAgentRuntime:
    def __init__(self, gateway: ModelGateway | None = None, tools: ToolRunner | None = None,
                 config: "ServerConfig | None" = None, limiter: "RateLimiter | None" = None):
        self._gateway = gateway or default_gateway()
        self._tools = tools or default_tool_runner(config)
        self._limiter = limiter
        """``maxTokensPerMinute`` buckets; None: this process's (``governance.default_limiter``)."""

    async def run_turn(self, request: TurnRequest, sink=None) -> TurnResult:
        """``sink``: stream the model's text to it (``run_turn``'s)."""
        return await run_turn(request, self._gateway, self._tools, self._limiter, sink)

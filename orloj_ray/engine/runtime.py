"""The AgentRuntime seam: how the executor hands a turn to an agent.

``LocalAgentRuntime`` runs turns in this process (sequential mode, tests); the Ray
implementation in ``actors/`` rings an AgentActor instead. Both return a ``TurnResult``.
"""

from __future__ import annotations

import os
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


MODES = ("message-driven", "sequential")
"""Execution modes of a server. ``message-driven`` (the default) runs each turn on the agent's
own actor and independent branches in parallel; ``sequential`` runs every turn in the
supervisor's process, one at a time, for debugging. Both produce the same agent steps and
outputs."""


def resolve_mode(value: str | None = None) -> str:
    """The mode from an explicit value, else ``ORLOJ_MODE``, else ``message-driven``."""
    mode = (value or os.environ.get("ORLOJ_MODE") or MODES[0]).strip().lower()
    if mode not in MODES:
        raise ValueError(f'unknown execution mode "{mode}": expected {" or ".join(MODES)} '
                         f"(--mode, or ORLOJ_MODE)")
    return mode

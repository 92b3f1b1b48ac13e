"""One agent activation (a "turn"): the ReAct loop of execution.md section 7.

``run_turn`` is pure orchestration over two seams, the ModelGateway and a ToolRunner, so the
same code runs inside an AgentActor (message-driven) and in-process (sequential, tests).
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field

from orloj_ray.resources import parse_duration
from orloj_ray.gateway import CompletionRequest, Endpoint, Message, ModelError, ModelGateway, ToolSpec
from orloj_ray.store.util import now_rfc3339_nano
from orloj_ray.tools import ToolCallContext, ToolError, ToolRunner

MAX_TOOL_RESULT = 64 * 1024


@dataclass
class TurnRequest:
    namespace: str
    task: str
    attempt: int
    agent: dict
    """The Agent resource."""
    endpoint: Endpoint
    tools: list[dict] = field(default_factory=list)
    """Tool resources the agent may call, resolved by the caller."""
    input: dict[str, str] = field(default_factory=dict)
    inbox: list[dict] = field(default_factory=list)
    """Handoffs that started this turn: ``{"from", "content", "message_id"}``."""
    key: str = ""
    """Idempotency key of the step (task/attempt/node/branch)."""
    requirements: dict = field(default_factory=dict)
    """The task's ``spec.requirements`` (region, gpu, model): where the agent's actor may run."""

    @property
    def agent_name(self) -> str:
        return self.agent["metadata"]["name"]


@dataclass
class TurnResult:
    agent: str
    model: str
    output: str = ""
    steps: int = 0
    tool_calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    token_source: str = "provider"
    duration_ms: int = 0
    trace: list[dict] = field(default_factory=list)
    error_code: str = ""
    error: str = ""
    retryable: bool = False

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    @property
    def ok(self) -> bool:
        return not self.error_code


def _user_message(req: TurnRequest) -> str:
    lines = ["Task input:"]
    lines += [f"  {k}: {v}" for k, v in sorted(req.input.items())] or ["  (none)"]
    for item in req.inbox:
        lines.append(f"Handoff from {item['from']}:\n{item['content']}")
    return "\n".join(lines)


def _tool_specs(tools: list[dict]) -> list[ToolSpec]:
    specs = []
    for tool in tools:
        spec = tool.get("spec") or {}
        item = ToolSpec(name=tool["metadata"]["name"],
                        description=spec.get("description") or f"Invoke tool {tool['metadata']['name']}")
        if isinstance(spec.get("input_schema"), dict):
            item.parameters = spec["input_schema"]
        specs.append(item)
    return specs


def _tool_input(arguments: str) -> str:
    try:
        doc = json.loads(arguments or "{}")
    except ValueError:
        return arguments
    if isinstance(doc, dict) and "input" in doc:
        value = doc["input"]
        return value if isinstance(value, str) else json.dumps(value)
    return json.dumps(doc)


async def run_turn(req: TurnRequest, gateway: ModelGateway, tools: ToolRunner) -> TurnResult:
    """Run the agent once; never raises for agent-level failures (they go in the result)."""
    spec = req.agent.get("spec") or {}
    limits = spec.get("limits") or {}
    timeout = parse_duration(limits.get("timeout") or "0s").total_seconds() or None
    result = TurnResult(agent=req.agent_name, model=req.endpoint.model)
    started = time.monotonic()
    try:
        await asyncio.wait_for(_loop(req, spec, gateway, tools, result), timeout)
    except asyncio.TimeoutError:
        result.error_code, result.retryable = "agent_timeout", True
        result.error = f"agent {req.agent_name} timed out after {limits.get('timeout')}"
    result.duration_ms = int((time.monotonic() - started) * 1000)
    return result


async def _loop(req: TurnRequest, spec: dict, gateway: ModelGateway, tools: ToolRunner, result: TurnResult) -> None:
    execution = spec.get("execution") or {}
    max_steps = int((spec.get("limits") or {}).get("max_steps") or 10)
    by_name = {t["metadata"]["name"]: t for t in req.tools}
    offered = _tool_specs(req.tools)
    messages = [Message("system", spec.get("prompt") or ""), Message("user", _user_message(req))]
    sources = set()
    meta = {"agent": req.agent_name, "namespace": req.namespace, "task": req.task,
            "topic": req.input.get("topic", ""), "inbox": req.inbox}
    model_errors: list[str] = []
    for step in range(1, max_steps + 1):
        result.steps = step
        call_started = time.monotonic()
        try:
            reply = await gateway.complete(req.endpoint, CompletionRequest(messages, offered, {**meta, "step": step}))
        except ModelError as exc:
            model_errors.append(exc.message)
            result.trace.append(_row("model_error", req, step, message=exc.message, error_code=exc.code,
                                     retryable=exc.retryable))
            if exc.retryable and step < max_steps:
                continue
            result.error_code, result.error, result.retryable = exc.code, (
                f"agent {req.agent_name} model execution failed: {model_errors[0]}"), exc.retryable
            return
        result.input_tokens += reply.usage.input_tokens
        result.output_tokens += reply.usage.output_tokens
        sources.add(reply.usage.source)
        result.token_source = sources.pop() if len(sources) == 1 else "mixed"
        sources = {result.token_source}
        result.trace.append(_row(
            "model_call", req, step, model=reply.model, tokens=reply.usage.total,
            input_tokens=reply.usage.input_tokens, output_tokens=reply.usage.output_tokens,
            token_usage_source=reply.usage.source,
            latency_ms=int((time.monotonic() - call_started) * 1000),
            output=reply.text, tool_calls=len(reply.tool_calls),
            message=f"model={reply.model} tokens={reply.usage.total}",
        ))
        if not reply.tool_calls:
            result.output = reply.text
            return
        messages.append(Message("assistant", reply.text, tool_calls=reply.tool_calls))
        for call in reply.tool_calls:
            tool = by_name.get(call.name)
            if tool is None or call.name not in {t.name for t in offered}:
                allowed = ",".join(t.name for t in offered)
                result.error_code = "tool_permission_denied"
                result.error = (f"tool permission denied: agent={req.agent_name} step={step} tool={call.name} "
                                f"error=model requested unauthorized tool={call.name} allowed={allowed}")
                result.trace.append(_row("tool_permission_denied", req, step, tool=call.name,
                                         error_code=result.error_code, message=result.error))
                return
            tool_input = _tool_input(call.arguments)
            ctx = ToolCallContext(req.namespace, req.task, req.agent_name, f"{req.key}/s{step:03d}/{call.name}")
            t0 = time.monotonic()
            try:
                output = await tools.call(tool, tool_input, ctx)
            except ToolError as exc:
                result.trace.append(_row("tool_error", req, step, tool=call.name, error_code=exc.code,
                                         retryable=exc.retryable, input=tool_input, message=exc.message,
                                         latency_ms=int((time.monotonic() - t0) * 1000)))
                messages.append(Message("tool", f"error: {exc.message}", tool_call_id=call.id, name=call.name))
                continue
            if len(output) > MAX_TOOL_RESULT:
                output = output[:MAX_TOOL_RESULT] + "[output truncated]"
            result.tool_calls += 1
            result.trace.append(_row("tool_call", req, step, tool=call.name, input=tool_input, output=output,
                                     latency_ms=int((time.monotonic() - t0) * 1000),
                                     tool_request_id=ctx.idempotency_key, message=f"tool={call.name} ok"))
            messages.append(Message("tool", output, tool_call_id=call.id, name=call.name))
            if execution.get("duplicate_tool_call_policy", "short_circuit") == "short_circuit":
                offered = [t for t in offered if t.name != call.name]
            if execution.get("tool_use_behavior") == "stop_on_first_tool":
                result.output = output
                return
    result.trace.append(_row("agent_worker_complete", req, result.steps, message="max steps reached"))
    result.output = next((m.content for m in reversed(messages) if m.role in ("assistant", "tool") and m.content), "")


def _row(kind: str, req: TurnRequest, step: int, **fields) -> dict:
    row = {"timestamp": now_rfc3339_nano(), "type": kind, "agent": req.agent_name, "step": step,
           "attempt": req.attempt}
    row.update({k: v for k, v in fields.items() if v not in (None, "")})
    return row

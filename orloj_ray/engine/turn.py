"""One agent activation (a "turn"): the ReAct loop of execution.md section 7.

``run_turn`` is pure orchestration over two seams, the ModelGateway and a ToolRunner, so the
same code runs inside an AgentActor (message-driven) and in-process (sequential, tests).
Governance is enforced here, so it holds in both modes: the AgentPolicy rules and the token
rate limit before every model call, the tool rules (offered, blocked, roles and permissions,
approvals) before every tool call (``orloj_ray.governance``). A call that waits for a person
ends the turn with ``approval_pending`` and what to ask for in ``TurnResult.approval``.
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
from dataclasses import dataclass, field

from orloj_ray.resources import agent_tool_names, parse_duration
from orloj_ray.gateway import CompletionRequest, Endpoint, Message, ModelError, ModelGateway, ToolSpec
from orloj_ray.gateway.base import CompletionReply, estimate_tokens
from orloj_ray.gateway.text_calls import parse_text_tool_calls
from orloj_ray.governance import APPROVAL_PENDING, Governor, RateLimiter, TurnGovernance, default_limiter
from orloj_ray.governance.decisions import DENY, GOVERNANCE_ERROR, RATE_LIMITED, TOKEN_BUDGET_EXCEEDED, Decision
from orloj_ray.governance.approvals import args_digest
from orloj_ray.governance.permissions import operation_classes
from orloj_ray.governance.policies import matched, token_budget
from orloj_ray.store.util import now_rfc3339_nano
from orloj_ray.redact import Redactor
from orloj_ray.tools import ToolCallContext, ToolError, ToolRunner, auth_of

MAX_TOOL_RESULT = 64 * 1024
MAX_RATE_WAIT_S = 300.0
"""Longest wait for the token rate limit of an agent without a timeout."""
_OP_RISK = ("admin", "delete", "write", "read")


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
    governance: TurnGovernance | None = None
    """Policies, roles, permissions and approvals that govern this turn (None: ungoverned)."""
    message_id: str = ""
    """The task message this turn processes (approvals and audit records are bound to it)."""

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
    audit: list[dict] = field(default_factory=list)
    """Governance decisions of this turn, for the audit trail (stored by the executor)."""
    approval: dict | None = None
    """With ``error_code == "approval_pending"``: the call that waits (tool, digest, policy_version,
    rule, reason, operation_class, input preview, step)."""
    estimated_tokens: int = 0
    """Upstream's estimate of the turn's size: 1 + len(prompt)/4 + 120 per step + 40 per tool call."""

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


async def run_turn(req: TurnRequest, gateway: ModelGateway, tools: ToolRunner,
                   limiter: RateLimiter | None = None, sink=None) -> TurnResult:
    """Run the agent once; never raises for agent-level failures (they go in the result).

    ``limiter``: the shared token bucket for ``maxTokensPerMinute`` (default: this process's).
    ``sink``: ``sink(step, delta, restart=False)`` streams the model's text (None: no streaming).
    """
    spec = req.agent.get("spec") or {}
    limits = spec.get("limits") or {}
    timeout = parse_duration(limits.get("timeout") or "0s").total_seconds() or None
    result = TurnResult(agent=req.agent_name, model=req.endpoint.model)
    governor = Governor(req.governance, agent=req.agent_name, attempt=req.attempt, message_id=req.message_id)
    started = time.monotonic()
    deadline = started + timeout if timeout else None
    try:
        await asyncio.wait_for(_loop(req, spec, gateway, tools, result, governor, limiter or default_limiter(),
                                     deadline, sink), timeout)
    except asyncio.TimeoutError:
        result.error_code, result.retryable = "agent_timeout", True
        result.error = f"agent {req.agent_name} timed out after {limits.get('timeout')}"
    finally:
        result.audit = governor.audit
    result.duration_ms = int((time.monotonic() - started) * 1000)
    result.estimated_tokens = 1 + len(spec.get("prompt") or "") // 4 + 120 * result.steps + 40 * result.tool_calls
    return result


def _deny(result: TurnResult, req: TurnRequest, step: int, decision: Decision, *, tool: str = "",
          model: str = "", retryable: bool = False) -> None:
    """End the turn on a governance denial: the code goes to the result and the trace as is."""
    if tool and decision.code == "tool_permission_denied":
        error = f"tool permission denied: agent={req.agent_name} step={step} tool={tool} error={decision.reason}"
    elif tool:
        error = (f"tool call denied: agent={req.agent_name} step={step} tool={tool} code={decision.code} "
                 f"error={decision.reason}")
    else:
        error = decision.reason
    kind = "policy_violation" if decision.code in ("model_not_allowed", "tool_blocked") else decision.code
    result.error_code, result.error, result.retryable = decision.code, error, retryable
    result.trace.append(_row(kind, req, step, tool=tool, model=model, error_code=decision.code,
                             error_reason=decision.rule, retryable=retryable or None, message=error))


async def _throttle(req: TurnRequest, result: TurnResult, governor: Governor, limiter: RateLimiter, step: int,
                    estimate: int, deadline: float | None) -> tuple[bool, int]:
    """Wait for the agent's shared token rate limit; (go on?, tokens per minute or 0)."""
    model = req.endpoint.model
    try:
        rate, rule = governor.rate_limit()
        if not rate:
            return True, 0
        max_wait = deadline - time.monotonic() if deadline else MAX_RATE_WAIT_S
        wait = await limiter.reserve(f"{req.namespace}/{req.agent_name}", estimate, rate, max(0.0, max_wait))
    except Exception as exc:  # fail closed; a limiter that is unreachable may answer later
        decision = Decision.deny(GOVERNANCE_ERROR, f"token rate limit check failed ({type(exc).__name__}); "
                                 "the model call is denied", "rule/rate_limit")
        governor.record("denied", step, "model", model, code=decision.code, rule=decision.rule,
                        reason=decision.reason, always=True)
        _deny(result, req, step, decision, model=model, retryable=True)
        return False, 0
    if wait is None:
        governor.rate_limited(step, model, max_wait, rule, denied=True)
        _deny(result, req, step, Decision.deny(
            RATE_LIMITED, f"token rate limit of {rate} tokens/min for agent {req.agent_name}: the wait for "
            f"{estimate} tokens would pass the agent's timeout", rule), model=model)
        return False, 0
    if wait > 0:
        governor.rate_limited(step, model, wait, rule)
        result.trace.append(_row("rate_limited", req, step, model=model, error_code=RATE_LIMITED, error_reason=rule,
                                 wait_ms=int(wait * 1000),
                                 message=f"token rate limit {rate}/min: waiting {wait:.2f}s for {estimate} tokens"))
        await asyncio.sleep(wait)
    return True, rate


@dataclass
class Contract:
    """``execution.profile: contract`` (execution.md section 7): the agent must use the tools of
    ``tool_sequence`` (a set) and end with every ``required_output_markers`` in its text.
    A call outside the set, a repeated call under ``duplicate_tool_call_policy: deny``, or
    ``max_steps`` before the set is done violates it: ``on_contract_violation:
    non_retryable_error`` (the default) fails the turn with ``agent_contract_violation``,
    ``observe`` records the violation and goes on."""

    sequence: frozenset[str] = frozenset()
    markers: tuple[str, ...] = ()
    strict: bool = True
    done: set[str] = field(default_factory=set)

    @classmethod
    def of(cls, execution: dict) -> "Contract | None":
        if str(execution.get("profile") or "").strip().lower() != "contract":
            return None
        return cls(frozenset(str(t).strip().lower() for t in execution.get("tool_sequence") or [] if str(t).strip()),
                   tuple(str(m) for m in execution.get("required_output_markers") or [] if str(m)),
                   str(execution.get("on_contract_violation") or "").strip().lower() != "observe")

    def allows(self, tool: str) -> bool:
        return tool.strip().lower() in self.sequence

    def remaining(self) -> list[str]:
        return sorted(self.sequence - self.done)

    def missing_markers(self, text: str) -> list[str]:
        return [m for m in self.markers if m not in (text or "")]


def _violation(result: TurnResult, req: TurnRequest, step: int, contract: Contract, message: str, tool: str = "") -> bool:
    """Record a contract violation; True when it ends the turn (``non_retryable_error``)."""
    result.trace.append(_row("agent_contract_violation", req, step, tool=tool, error_code="agent_contract_violation",
                             error_reason="agent_contract_violation", retryable=False, message=message))
    if contract.strict:
        result.error_code, result.error, result.retryable = "agent_contract_violation", message, False
    return contract.strict


async def _loop(req: TurnRequest, spec: dict, gateway: ModelGateway, tools: ToolRunner, result: TurnResult,
                governor: Governor, limiter: RateLimiter, deadline: float | None, sink=None) -> None:
    execution = spec.get("execution") or {}
    contract = Contract.of(execution)
    deny_repeats = str(execution.get("duplicate_tool_call_policy") or "").strip().lower() == "deny"
    results: dict[tuple[str, str], str] = {}
    """Tool results by (tool, input): a repeat of the same call is answered from here (short circuit)."""
    max_steps = int((spec.get("limits") or {}).get("max_steps") or 10)
    by_name = {t["metadata"]["name"]: t for t in req.tools}
    offered = _tool_specs(req.tools)
    messages = [Message("system", spec.get("prompt") or ""), Message("user", _user_message(req))]
    sources = set()
    meta = {"agent": req.agent_name, "namespace": req.namespace, "task": req.task,
            "topic": req.input.get("topic", ""), "inbox": req.inbox}
    model_errors: list[str] = []
    declared = agent_tool_names(spec)
    used_before = req.governance.tokens_used if req.governance else 0
    for step in range(1, max_steps + 1):
        result.steps = step
        request = CompletionRequest(messages, offered, {**meta, "step": step})
        estimate = estimate_tokens(request, CompletionReply()).total
        decision = governor.check_model(step, req.endpoint.model, declared, used_before + result.tokens, estimate)
        if decision.verdict == DENY:
            _deny(result, req, step, decision, model=req.endpoint.model)
            return
        go, rate = await _throttle(req, result, governor, limiter, step, estimate, deadline)
        if not go:
            return
        call_started = time.monotonic()
        try:
            reply = await gateway.complete(req.endpoint, request, sink=functools.partial(sink, step) if sink else None)
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
        if rate:
            try:
                await limiter.settle(f"{req.namespace}/{req.agent_name}", reply.usage.total - estimate, rate)
            except Exception:
                pass  # the reservation stands; the next reserve fails closed if the limiter is gone
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
        if _over_budget(req, result, used_before, step, reply.usage.source):
            return
        calls = reply.tool_calls or (parse_text_tool_calls(reply.text, step) if offered else [])
        if contract is not None and not contract.remaining() and not contract.missing_markers(reply.text):
            result.output = reply.text  # the contract is fulfilled: done, whatever else it asks for
            return
        if not calls:
            if contract is not None and contract.remaining():  # not done yet: say what is left
                messages.append(Message("assistant", reply.text))
                messages.append(Message("user", "Continue: the contract requires these tools still: "
                                                + ", ".join(contract.remaining())))
                continue
            if contract is not None and contract.missing_markers(reply.text):
                result.trace.append(_row("agent_event", req, step, message="contract_warning missing markers: "
                                         + ", ".join(contract.missing_markers(reply.text))))
            result.output = reply.text
            return
        native = bool(reply.tool_calls)
        messages.append(Message("assistant", reply.text, tool_calls=calls) if native else Message("assistant", reply.text))

        def answer(call, text: str) -> Message:
            """A tool's answer in the history: a tool message for a native call, the user's turn
            for one written as text (there is no provider call id to answer)."""
            if native:
                return Message("tool", text, tool_call_id=call.id, name=call.name)
            return Message("user", f"<tool_result name={call.name}>\n{text}\n</tool_result>")

        for call in calls:
            tool = by_name.get(call.name)
            decision = governor.check_tool(step, tool, call.name, [t.name for t in offered], call.arguments)
            if decision.verdict == DENY:
                _deny(result, req, step, decision, tool=call.name)
                return
            if decision.code == APPROVAL_PENDING:
                _pause(result, req, step, decision, tool, call.name, call.arguments)
                return
            tool_input = _tool_input(call.arguments)
            if contract is not None and not contract.allows(call.name):
                if _violation(result, req, step, contract, f"contract violation: agent={req.agent_name} step={step} "
                              f"tool={call.name} is not in tool_sequence ({', '.join(sorted(contract.sequence))})",
                              call.name):
                    return
            repeat = results.get((call.name, tool_input))
            if repeat is not None:
                if deny_repeats and contract is not None and _violation(
                        result, req, step, contract, f"contract violation: agent={req.agent_name} step={step} "
                        f"repeated tool={call.name} with the same input (duplicate_tool_call_policy: deny)", call.name):
                    return
                result.trace.append(_row("tool_call", req, step, tool=call.name, input=tool_input, output=repeat,
                                         short_circuit=True, message=f"tool={call.name} short_circuit=true"))
                messages.append(answer(call, repeat))
                continue
            ctx = ToolCallContext(req.namespace, req.task, req.agent_name, f"{req.key}/s{step:03d}/{call.name}")
            auth = auth_of(tool)
            redactor = Redactor(auth.secret_values() if auth else ())  # tool output and errors never carry its secrets
            t0 = time.monotonic()
            try:
                output = redactor.text(await tools.call(tool, tool_input, ctx))
            except ToolError as exc:
                message = redactor.text(exc.message)
                result.trace.append(_row("tool_error", req, step, tool=call.name, error_code=exc.code,
                                         error_reason=exc.reason, retryable=exc.retryable, input=tool_input,
                                         message=message, latency_ms=int((time.monotonic() - t0) * 1000)))
                messages.append(answer(call, f"error: {message}"))
                governor.executed(step, call.name, error_code=exc.code)
                continue
            if len(output) > MAX_TOOL_RESULT:
                output = output[:MAX_TOOL_RESULT] + "[output truncated]"
            result.tool_calls += 1
            governor.executed(step, call.name)
            result.trace.append(_row("tool_call", req, step, tool=call.name, input=tool_input, output=output,
                                     latency_ms=int((time.monotonic() - t0) * 1000),
                                     tool_request_id=ctx.idempotency_key, message=f"tool={call.name} ok"))
            messages.append(answer(call, output))
            results[(call.name, tool_input)] = output
            if contract is not None:
                contract.done.add(call.name.strip().lower())
            if execution.get("tool_use_behavior") == "stop_on_first_tool":
                result.output = output
                return
    if contract is not None and contract.remaining():
        if _violation(result, req, result.steps, contract, f"contract violation: agent={req.agent_name} reached "
                      f"max_steps={max_steps} before tool_sequence was done (missing: {', '.join(contract.remaining())})"):
            return
    result.trace.append(_row("agent_worker_complete", req, result.steps, message="max steps reached"))
    result.output = next((m.content for m in reversed(messages) if m.role in ("assistant", "tool") and m.content), "")


def _over_budget(req: TurnRequest, result: TurnResult, used_before: int, step: int, source: str) -> bool:
    """After a call: the estimate was low and the run is now over ``max_tokens_per_run``."""
    gov = req.governance
    if gov is None:
        return False
    try:
        budget, owner = token_budget(matched(gov, req.agent_name))
    except Exception:
        return False  # the same rule already ran, guarded, before the call
    used = used_before + result.tokens
    if not budget or used <= budget:
        return False
    _deny(result, req, step, Decision.deny(
        TOKEN_BUDGET_EXCEEDED, f"token budget exceeded after agent {req.agent_name}: used={used} budget={budget} "
        f"source={source}", f"AgentPolicy/{owner['name']}"), model=req.endpoint.model)
    return True


def _pause(result: TurnResult, req: TurnRequest, step: int, decision: Decision, tool: dict, name: str,
           arguments: str) -> None:
    """Stop at a call that needs a person; the executor turns this into a ToolApproval."""
    ops = operation_classes((tool or {}).get("spec") or {})
    op = next((o for o in _OP_RISK if o in ops), "write")
    result.error_code, result.retryable = APPROVAL_PENDING, False
    result.error = f"tool approval required: agent={req.agent_name} step={step} tool={name} reason={decision.reason}"
    result.approval = {"tool": name, "digest": args_digest(name, arguments), "policy_version": decision.policy_version,
                       "rule": decision.rule, "reason": decision.reason, "operation_class": op,
                       "input": Redactor().text(_tool_input(arguments))[:500], "step": step}
    result.trace.append(_row("tool_approval_pending", req, step, tool=name, error_code=APPROVAL_PENDING,
                             error_reason=decision.rule, message=result.error))


def _row(kind: str, req: TurnRequest, step: int, **fields) -> dict:
    row = {"timestamp": now_rfc3339_nano(), "type": kind, "agent": req.agent_name, "step": step,
           "attempt": req.attempt}
    row.update({k: v for k, v in fields.items() if v not in (None, "")})
    return row

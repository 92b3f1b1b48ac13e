"""The task, turn, model, tool, message and governance series, fed by ``TaskRecorder``.

``TaskRecorder`` (``orloj_ray/engine/status.py``) calls one method here per event it has
stored (never before the write succeeded, so a write applied twice after a conflict counts
once). Upstream Orloj's seven series keep its names and labels (``telemetry/metrics.go``):

* ``orloj_task_duration_seconds{namespace,system,status}`` histogram (``status`` is the
  final phase, lower-cased: ``succeeded``, ``failed``, ``deadletter``)
* ``orloj_agent_step_duration_seconds{agent,step_type}`` histogram (``step_type="execute"``: one turn)
* ``orloj_tokens_used_total{agent,model,type}`` (``type`` ``used``, or ``estimated`` when the
  provider gave no counts)
* ``orloj_messages_total{phase,agent}`` (every recorded phase a message enters: ``queued``,
  ``running``, ``succeeded``, ``retrypending``, ``deadletter``; ``agent`` is the recipient)
* ``orloj_deadletters_total{agent}``, ``orloj_retries_total{agent}``
* ``orloj_inflight_messages{agent}`` gauge: derived from the Store by the API (``store_metrics``)

and orloj-ray adds, with ``namespace`` on each:

* ``orloj_agent_turns_total{namespace,agent,outcome}`` (``outcome`` ``ok`` or the error code)
* ``orloj_model_calls_total{namespace,agent,model,outcome}``,
  ``orloj_model_call_duration_seconds{namespace,agent,model}``,
  ``orloj_model_tokens_total{namespace,agent,model,direction}`` (``input`` / ``output``)
* ``orloj_tool_calls_total{namespace,agent,tool,outcome}``,
  ``orloj_tool_call_duration_seconds{namespace,tool,outcome}``
* ``orloj_governance_decisions_total{namespace,decision,code}`` (the turn's audit records)
* gauges the supervisor sets from its runtime: ``orloj_agent_mailbox_depth{namespace,agent}``
  (turns waiting in or running on the agent's actors) and ``orloj_agent_actors{namespace,agent}``
  (live Ray actors of the agent)

A failing metric never fails a task: every method logs and swallows its own errors.
"""

from __future__ import annotations

import functools
import logging
from datetime import datetime
from typing import TYPE_CHECKING, Iterable

from orloj_ray.observability.metrics import DEFAULT_BUCKETS, Registry

if TYPE_CHECKING:
    from orloj_ray.engine.turn import TurnResult
    from orloj_ray.messaging import Envelope

log = logging.getLogger("orloj_ray.metrics")

TASK_BUCKETS = (*DEFAULT_BUCKETS, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)
"""Upstream's default buckets, then longer ones: a task with real models takes minutes."""
CALL_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


def _guarded(method):
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            method(self, *args, **kwargs)
        except Exception:
            log.warning("recording metric %s failed", method.__name__, exc_info=True)
    return wrapper


def _time(value: object) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")) if value else None
    except ValueError:
        return None


def _seconds(ms: object) -> float:
    try:
        return max(float(ms or 0), 0.0) / 1000.0
    except (TypeError, ValueError):
        return 0.0


class TaskMetrics:
    def __init__(self, registry: Registry | None = None):
        self.registry = r = registry or Registry()
        self.task_duration = r.histogram("orloj_task_duration_seconds", "Duration of task execution in seconds.",
                                         ("namespace", "system", "status"), TASK_BUCKETS)
        self.step_duration = r.histogram("orloj_agent_step_duration_seconds",
                                         "Duration of a single agent step in seconds.", ("agent", "step_type"),
                                         TASK_BUCKETS)
        self.tokens = r.counter("orloj_tokens_used_total", "Total tokens consumed by agent executions.",
                                ("agent", "model", "type"))
        self.messages = r.counter("orloj_messages_total", "Total agent messages by phase.", ("phase", "agent"))
        self.deadletters = r.counter("orloj_deadletters_total", "Total messages moved to dead-letter.", ("agent",))
        self.retries = r.counter("orloj_retries_total", "Total message retries.", ("agent",))
        self.turns = r.counter("orloj_agent_turns_total", "Agent turns recorded, by outcome (ok or error code).",
                               ("namespace", "agent", "outcome"))
        self.model_calls = r.counter("orloj_model_calls_total", "Model calls, by outcome (ok or error code).",
                                     ("namespace", "agent", "model", "outcome"))
        self.model_latency = r.histogram("orloj_model_call_duration_seconds", "Latency of successful model calls.",
                                         ("namespace", "agent", "model"), CALL_BUCKETS)
        self.model_tokens = r.counter("orloj_model_tokens_total", "Model tokens by direction (input, output).",
                                      ("namespace", "agent", "model", "direction"))
        self.tool_calls = r.counter("orloj_tool_calls_total", "Tool calls, by outcome (ok or error code).",
                                    ("namespace", "agent", "tool", "outcome"))
        self.tool_latency = r.histogram("orloj_tool_call_duration_seconds", "Latency of tool calls.",
                                        ("namespace", "tool", "outcome"), CALL_BUCKETS)
        self.governance = r.counter("orloj_governance_decisions_total",
                                    "Governance decisions (audit records) by decision and code.",
                                    ("namespace", "decision", "code"))
        self.mailbox_depth = r.gauge("orloj_agent_mailbox_depth",
                                     "Turns waiting in or running on the agent's actors.", ("namespace", "agent"))
        self.actors = r.gauge("orloj_agent_actors", "Live Ray actors of the agent.", ("namespace", "agent"),
                              merge="max")

    # -- the events TaskRecorder stores -------------------------------------------------------

    def _message(self, phase: str, envs: Iterable[Envelope]) -> None:
        for env in envs:
            self.messages.inc(phase=phase, agent=env.to_agent)

    @_guarded
    def started(self, queued: list[Envelope], running: Iterable[str]) -> None:
        running = set(running)
        self._message("queued", queued)
        self._message("running", [e for e in queued if e.message_id in running])

    @_guarded
    def message(self, env: Envelope, phase: str) -> None:
        """A message entered ``phase`` (queued, running, succeeded)."""
        self._message(phase, [env])

    @_guarded
    def retry(self, env: Envelope) -> None:
        self._message("retrypending", [env])
        self.retries.inc(agent=env.to_agent)

    @_guarded
    def turn_done(self, namespace: str, env: Envelope, result: TurnResult, children: list[Envelope],
                  running: Iterable[str]) -> None:
        self._turn(namespace, result)
        self._message("succeeded", [env])
        self.started(children, running)

    @_guarded
    def turn_failed(self, namespace: str, env: Envelope, result: TurnResult | None) -> None:
        if result is not None:
            self._turn(namespace, result)
        self._message("deadletter", [env])
        self.deadletters.inc(agent=env.to_agent)

    @_guarded
    def approval_wait(self, namespace: str, env: Envelope, result: TurnResult) -> None:
        self._turn(namespace, result)
        self._message("retrypending", [env])

    @_guarded
    def finished(self, namespace: str, system: str, status: dict, fallback_ms: int | None = None) -> None:
        """The task reached a final phase; its duration runs from the first claim to completion."""
        started, done = _time(status.get("startedAt")), _time(status.get("completedAt"))
        seconds = (done - started).total_seconds() if started and done else _seconds(fallback_ms)
        phase = str(status.get("phase") or "").lower()
        self.task_duration.observe(max(seconds, 0.0), namespace=namespace, system=system, status=phase)

    def _turn(self, namespace: str, result: TurnResult) -> None:
        agent = result.agent
        self.turns.inc(namespace=namespace, agent=agent, outcome=result.error_code or "ok")
        self.step_duration.observe(_seconds(result.duration_ms), agent=agent, step_type="execute")
        kind = "estimated" if result.token_source == "estimated" else "used"
        if result.tokens:
            self.tokens.inc(result.tokens, agent=agent, model=result.model, type=kind)
        for row in result.trace:
            kind = row.get("type")
            if kind == "model_call":
                model = row.get("model") or result.model
                self.model_calls.inc(namespace=namespace, agent=agent, model=model, outcome="ok")
                self.model_latency.observe(_seconds(row.get("latency_ms")), namespace=namespace, agent=agent,
                                           model=model)
                for direction in ("input", "output"):
                    tokens = int(row.get(f"{direction}_tokens") or 0)
                    if tokens:
                        self.model_tokens.inc(tokens, namespace=namespace, agent=agent, model=model,
                                              direction=direction)
            elif kind == "model_error":
                self.model_calls.inc(namespace=namespace, agent=agent, model=result.model,
                                     outcome=row.get("error_code") or "error")
            elif kind in ("tool_call", "tool_error"):
                outcome = "ok" if kind == "tool_call" else (row.get("error_code") or "error")
                tool = row.get("tool") or ""
                self.tool_calls.inc(namespace=namespace, agent=agent, tool=tool, outcome=outcome)
                self.tool_latency.observe(_seconds(row.get("latency_ms")), namespace=namespace, tool=tool,
                                          outcome=outcome)
        for record in result.audit:
            self.governance.inc(namespace=record.get("namespace") or namespace, decision=record.get("decision", ""),
                                code=record.get("code") or "")

    # -- gauges the supervisor sets ------------------------------------------------------------

    def set_agent_gauges(self, depth: dict[tuple[str, str], int], actors: dict[tuple[str, str], int]) -> None:
        """Replace the mailbox depth and live actor gauges: (namespace, agent) -> value."""
        self.mailbox_depth.replace(depth)
        self.actors.replace(actors)


_DEFAULT: TaskMetrics | None = None


def default_task_metrics() -> TaskMetrics:
    """This process's TaskMetrics (one registry per process: a supervisor exports it)."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = TaskMetrics()
    return _DEFAULT

"""Tasks: create, run, wait, logs, messages, metrics, cancel and retry."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from typing import Any

import httpx

from orloj_ray.client._docs import as_str, name_of, phase_of, resource_version
from orloj_ray.client._transport import StreamUnsupported
from orloj_ray.client._types import Resource, Task, TraceRow
from orloj_ray.client._watch import WatchAPI
from orloj_ray.errors import Conflict, InvalidResource, NotFound, OrlojError
from orloj_ray.lifecycle import TERMINAL

TERMINAL_TASK_PHASES = TERMINAL


class TaskFailed(OrlojError):
    """``run_task``: the task ended ``Failed`` or ``DeadLetter``; ``task`` is the finished task,
    ``phase`` its phase, ``code`` its ``status.errorCode`` when it has one."""

    code = "task_failed"
    status = 500

    def __init__(self, message: str, *, task: Task, code: str | None = None):
        super().__init__(message, code=code)
        self.task = task
        self.phase = phase_of(task)


class WaitTimeout(OrlojError, TimeoutError):
    """``wait``/``run_task`` gave up; ``resource`` is the last object seen (or None)."""

    code = "timeout"
    status = 504

    def __init__(self, message: str, *, resource: dict | None = None):
        super().__init__(message)
        self.resource = resource


def rerun_name(name: str) -> str:
    """The name a finished task runs again under: ``<name>-<unix ms>``."""
    return f"{name}-{int(time.time() * 1000)}"


class TaskAPI(WatchAPI):
    def finished_phase(self, name: str, namespace: str = "default") -> str | None:
        """The phase of task ``name`` when it exists and is terminal; None when it is missing
        or still running (a POST of the same name would not run it again)."""
        live = self.request("GET", f"/v1/tasks/{name}", params={"namespace": namespace}, allow_404=True)
        phase = phase_of(live)
        return phase if live is not None and phase in TERMINAL_TASK_PHASES else None

    def create_task(self, system: str, input: dict | None = None, *, name: str | None = None,
                    namespace: str = "default") -> Task:
        """Create a runnable Task (name ``run-<system>-<unix ms>`` unless given); returns it."""
        name = name or f"run-{system}-{int(time.time() * 1000)}"
        doc = {"apiVersion": "orloj.dev/v1", "kind": "Task",
               "metadata": {"name": name, "namespace": namespace},
               "spec": {"system": system, "input": {str(k): as_str(v) for k, v in (input or {}).items()}}}
        return self.request("POST", "/v1/tasks", params={"namespace": namespace}, json_body=doc)

    def run_task(self, system: str, input: dict | None = None, *, namespace: str = "default",
                 name: str | None = None, timeout: float = 300,
                 on_update: Callable[[Task], None] | None = None) -> Task:
        """Create a task for ``system``, wait until it is terminal and return it Succeeded.

        Raises ``NotFound`` at once when the namespace has no such AgentSystem (nothing is
        created), ``TaskFailed`` (with ``.task``) when it ends Failed or DeadLetter, and
        ``WaitTimeout`` after ``timeout`` seconds.
        """
        try:
            self.get("agent-system", system, namespace)
        except NotFound:
            raise NotFound(f"agent system {system!r} not found in namespace {namespace!r}: apply it first "
                           f"(Client.apply or orloj apply -f DIR)", field="spec.system") from None
        task = self.create_task(system, input, name=name, namespace=namespace)
        if on_update:
            on_update(task)
        done = self.wait("task", task["metadata"]["name"], namespace=namespace, timeout=timeout,
                         on_update=on_update)
        status = done.get("status") or {}
        if status.get("phase") != "Succeeded":
            raise TaskFailed(f"task/{done['metadata']['name']} {status.get('phase')}: "
                             f"{status.get('lastError') or 'no error recorded'}", task=done,
                             code=status.get("errorCode") or None)
        return done

    def logs(self, kind: str, name: str, namespace: str = "default") -> list[str]:
        info = self.kind(kind)
        body = self.request("GET", f"/v1/{info.plural}/{name}/logs", params={"namespace": namespace}) or {}
        return list(body.get("logs") or [])

    def agent_turns(self, agent: str, namespace: str = "default", *, task: str | None = None,
                    limit: int = 500) -> list[TraceRow]:
        """What ``agent`` did: the trace rows naming it in the namespace's tasks (or in ``task``),
        oldest first, the newest ``limit`` of them; each row gains ``task``. Tasks pruned by
        retention keep no trace, so their turns are gone."""
        tasks = [self.get("task", task, namespace)] if task else self.list("task", namespace)
        rows = []
        for t in tasks:
            name = (t.get("metadata") or {}).get("name", "")
            for row in (t.get("status") or {}).get("trace") or []:
                if isinstance(row, dict) and row.get("agent") == agent:
                    rows.append({**row, "task": name})
        rows.sort(key=lambda r: str(r.get("timestamp") or ""))
        return rows[-limit:] if limit > 0 else rows

    _MESSAGE_FILTERS = frozenset({"phase", "lifecycle", "from_agent", "to_agent", "branch_id", "trace_id", "limit"})

    def _message_params(self, namespace: str, filters: dict) -> dict:
        unknown = set(filters) - self._MESSAGE_FILTERS
        if unknown:
            raise TypeError(f"unknown message filter(s): {', '.join(sorted(unknown))}; expected "
                            f"{', '.join(sorted(self._MESSAGE_FILTERS))}")
        params: dict[str, Any] = {"namespace": namespace}
        for key, value in filters.items():
            if value is None:
                continue
            if isinstance(value, (list, tuple, set, frozenset)):
                value = ",".join(str(v) for v in value)
            params[key] = str(value)
        return params

    def messages(self, name: str, namespace: str = "default", **filters: Any) -> dict:
        """``GET /v1/tasks/<name>/messages``: ``{"name", "namespace", "total", "filtered_from",
        "lifecycle_counts", "messages"}``.

        Filters: ``phase`` (a lifecycle name or a list/comma string of them: queued, running,
        retrypending, succeeded, deadletter; alias ``lifecycle``), ``from_agent``, ``to_agent``,
        ``branch_id``, ``trace_id``, ``limit`` (keep the last N)."""
        return self.request("GET", f"/v1/tasks/{name}/messages",
                            params=self._message_params(namespace, filters)) or {}

    def metrics(self, name: str, namespace: str = "default", **filters: Any) -> dict:
        """``GET /v1/tasks/<name>/metrics``: ``{"name", "namespace", "generated_at", "totals",
        "per_agent", "per_edge", "filters"}``; the same filters as ``messages``."""
        return self.request("GET", f"/v1/tasks/{name}/metrics",
                            params=self._message_params(namespace, filters)) or {}

    def cancel_task(self, name: str, namespace: str = "default", reason: str | None = None) -> Task:
        """Fail a non-terminal task now (as ``orlojctl cancel task``): ``POST
        /v1/tasks/<name>/cancel``; the server applies the transition on the stored task, so no
        concurrent write is lost. Returns the updated task; ``lastError`` is ``reason`` or
        ``task canceled via orloj``. A task already finished raises ``Conflict`` with code
        ``already_terminal``. Running agents are not interrupted: the engine notices the
        terminal phase at its next status write and stops.
        """
        body = {"reason": reason} if (reason or "").strip() else {}
        return self.request("POST", f"/v1/tasks/{name}/cancel", params={"namespace": namespace},
                            json_body=body) or {}

    def retry_task(self, name: str, namespace: str = "default", overrides: dict | None = None) -> Task:
        """Run a finished task again as a new Task ``<name>-retry-<unix ms>`` (as ``orlojctl retry
        task``): same spec, ``spec.input`` updated with ``overrides``. Returns the created task.

        A task that is Pending (or has no phase yet), Running or WaitingApproval raises
        ``Conflict`` with code ``not_retryable``."""
        task = self.get("task", name, namespace)
        phase = str((task.get("status") or {}).get("phase") or "")
        if phase.lower() in ("", "pending", "running", "waitingapproval"):
            raise Conflict(f"task/{name} is not retryable while phase={phase or 'Pending'}",
                           code="not_retryable")
        spec = json.loads(json.dumps(task.get("spec") or {}))
        inputs = spec.get("input") if isinstance(spec.get("input"), dict) else {}
        for key, value in (overrides or {}).items():
            if not str(key).strip():
                raise InvalidResource(f"invalid override {key!r}={value!r}: the key is empty", field="spec.input")
            inputs[str(key).strip()] = as_str(value)
        spec["input"] = inputs
        ns = str((task.get("metadata") or {}).get("namespace") or "").strip() or namespace or "default"
        doc = {"apiVersion": "orloj.dev/v1", "kind": "Task",
               "metadata": {"name": f"{name}-retry-{int(time.time() * 1000)}", "namespace": ns},
               "spec": spec}
        return self.request("POST", "/v1/tasks", params={"namespace": ns}, json_body=doc)

    def wait(self, kind: str, name: str, *, namespace: str = "default",
             for_phases: Iterable[str] | Callable[[dict], bool] = TERMINAL_TASK_PHASES,
             timeout: float = 300, on_update: Callable[[dict], None] | None = None,
             poll_interval: float = 1.0) -> Resource:
        """Block until the object's ``status.phase`` is one of ``for_phases`` (case-insensitive;
        or a predicate on the object) and return it.

        Follows the SSE watch (``/v1/<c>/watch?name=``) for watchable kinds, reconnecting when
        the stream ends, and polls GET otherwise or when the server has no watch route.
        ``on_update`` gets every new version seen. Raises NotFound if the object is missing
        or deleted, ``WaitTimeout`` after ``timeout`` seconds.
        """
        info = self.kind(kind)
        done = _phase_predicate(for_phases)
        deadline = time.monotonic() + timeout
        obj = self.get(info.kind, name, namespace)
        if on_update:
            on_update(obj)
        use_watch = info.watchable
        while not done(obj):
            if time.monotonic() >= deadline:
                raise WaitTimeout(f"timed out after {_fmt_s(timeout)} waiting for {info.lower}/{name} "
                                  f"(phase: {phase_of(obj) or 'unknown'})", resource=obj)
            if use_watch:
                opened = time.monotonic()
                try:
                    for etype, res in self._watch_once(info, namespace, name, 20.0, deadline):
                        if etype == "deleted":
                            raise NotFound(f"{info.lower} {name!r} was deleted while waiting")
                        if name_of(res).lower() != name.lower() or resource_version(res) == resource_version(obj):
                            continue
                        obj = res
                        if on_update:
                            on_update(obj)
                        if done(obj):
                            return obj
                except StreamUnsupported:
                    use_watch = False
                except httpx.TimeoutException:
                    pass
                except httpx.TransportError:
                    pass
                if time.monotonic() - opened < 0.5:  # stream refused or closed at once: do not spin
                    time.sleep(min(poll_interval, max(deadline - time.monotonic(), 0)))
                continue
            time.sleep(min(poll_interval, max(deadline - time.monotonic(), 0)))
            fresh = self.get(info.kind, name, namespace)
            if fresh != obj:
                obj = fresh
                if on_update:
                    on_update(obj)
        return obj


def _phase_predicate(for_phases) -> Callable[[dict], bool]:
    if callable(for_phases):
        return for_phases
    wanted = {p.lower() for p in ([for_phases] if isinstance(for_phases, str) else for_phases)}
    return lambda obj: phase_of(obj).lower() in wanted


def _fmt_s(seconds: float) -> str:
    return f"{seconds:g}s"

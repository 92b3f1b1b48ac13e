"""Read-only sub-resources derived from stored status: task logs, messages and metrics, agent logs.

Upstream serves ``/v1/tasks/{name}/logs`` from the memory store's in-process log and
``/v1/agents/{name}/logs`` from its demo agent loop. orloj-ray keeps no separate log: both
are derived from the object's status, so every API replica answers the same.
``/v1/tasks/{name}/messages`` and ``/metrics`` are computed from ``status.messages`` by
``serve.task_observability`` (api.md section 9).
"""

from __future__ import annotations

import datetime as dt

from fastapi import FastAPI, Request

from orloj_ray import lifecycle
from orloj_ray.errors import Conflict
from orloj_ray.store.base import Event
from orloj_ray.store.util import mutate_status
from serve import task_observability as obs
from serve.codec import now_rfc3339, read_optional_json
from serve.errors import JSONResponse
from serve.routes_resources import item_namespace

MAX_TASK_LOG_LINES = 500
"""Upstream's in-memory cap on task log lines."""


def _parse_ts(value: object) -> dt.datetime | None:
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip().replace("Z", "+00:00").replace("z", "+00:00")
    if "." in text:  # RFC3339Nano: at most 6 fractional digits for fromisoformat
        head, _, rest = text.partition(".")
        digits = "".join(c for c in rest if c.isdigit())
        text = f"{head}.{digits[:6]}{rest[len(digits):]}"
    try:
        parsed = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.timezone.utc)


def _line(ts: object, text: str) -> str:
    return f"{ts} {text}" if isinstance(ts, str) and ts.strip() else text


def _join(head: str, message: object) -> str:
    message = str(message or "").strip()
    return f"{head}: {message}" if message and head else (message or head)


def task_log_lines(task: dict, limit: int = MAX_TASK_LOG_LINES) -> list[str]:
    """``"<timestamp> <message>"`` lines from ``status.history`` and ``status.trace``, in time order.

    Entries without a parseable timestamp sort first; ties keep history before trace and
    the recorded order. Only the newest ``limit`` lines are returned.
    """
    status = task.get("status") or {}
    entries: list[tuple[dt.datetime, int, str]] = []
    floor = dt.datetime.min.replace(tzinfo=dt.timezone.utc)
    seq = 0
    for record in status.get("history") or []:
        if not isinstance(record, dict):
            continue
        head = str(record.get("type") or "").strip()
        if record.get("worker"):
            head = f"{head} worker={record['worker']}".strip()
        entries.append((_parse_ts(record.get("timestamp")) or floor, seq,
                        _line(record.get("timestamp"), _join(head, record.get("message")))))
        seq += 1
    for record in status.get("trace") or []:
        if not isinstance(record, dict):
            continue
        head = str(record.get("type") or "").strip()
        if record.get("agent"):
            head = f"{head} agent={record['agent']}".strip()
        if record.get("tool"):
            head = f"{head} tool={record['tool']}".strip()
        entries.append((_parse_ts(record.get("timestamp")) or floor, seq,
                        _line(record.get("timestamp"), _join(head, record.get("message")))))
        seq += 1
    entries.sort(key=lambda e: (e[0], e[1]))
    return [line for _, _, line in entries[-limit:]] if limit > 0 else []


def agent_log_lines(agent: dict) -> list[str]:
    """A few lines from the agent's status (phase, last error); no separate agent log exists."""
    status = agent.get("status") or {}
    meta = agent.get("metadata") or {}
    ts = (status.get("lastTransitionTime") or status.get("updatedAt") or status.get("lastUpdated")
          or meta.get("createdAt") or now_rfc3339())
    lines = []
    if status.get("phase"):
        lines.append(_line(ts, f"phase={status['phase']}"))
    if status.get("lastError"):
        lines.append(_line(ts, f"lastError: {status['lastError']}"))
    return lines


def register(app: FastAPI, store) -> None:
    async def task_logs(request: Request, name: str) -> JSONResponse:
        task = await store.get("Task", item_namespace(request), name)
        return JSONResponse({"name": name, "logs": task_log_lines(task)})

    async def task_messages(request: Request, name: str) -> JSONResponse:
        selection = obs.parse_filter(request.query_params)  # 400 before 404, as upstream
        task = await store.get("Task", item_namespace(request), name)
        return JSONResponse(obs.messages_body(task, selection))

    async def task_metrics(request: Request, name: str) -> JSONResponse:
        selection = obs.parse_filter(request.query_params)
        task = await store.get("Task", item_namespace(request), name)
        return JSONResponse(obs.metrics_body(task, selection, now_rfc3339(nano=True)))

    async def cancel_task(request: Request, name: str) -> JSONResponse:
        """Fail an active task now (upstream's ``orlojctl cancel task``, done server-side): body
        ``{"reason": "..."}`` (optional). 409 ``already_terminal`` when it has finished."""
        reason = str((await read_optional_json(request)).get("reason") or "")

        def cancel(status: dict) -> dict:
            if lifecycle.is_terminal(status):
                raise Conflict(f"task/{name} is already terminal ({status.get('phase')})", code="already_terminal")
            return lifecycle.cancel(status, reason=reason)

        namespace = item_namespace(request)
        task = await mutate_status(store, "Task", namespace, name, cancel)
        await store.publish(Event(id=0, timestamp="", source="apiserver", type="task.failed", kind="Task", name=name,
                                  namespace=namespace, action="failed", data=lifecycle.event_data(task["status"])))
        return JSONResponse(task)

    async def agent_logs(request: Request, name: str) -> JSONResponse:
        agent = await store.get("Agent", item_namespace(request), name)
        return JSONResponse({"name": name, "logs": agent_log_lines(agent)})

    app.add_api_route("/v1/tasks/{name}/logs", task_logs, methods=["GET"], name="task_logs", tags=["tasks"])
    app.add_api_route("/v1/tasks/{name}/messages", task_messages, methods=["GET"], name="task_messages",
                      tags=["tasks"])
    app.add_api_route("/v1/tasks/{name}/metrics", task_metrics, methods=["GET"], name="task_metrics",
                      tags=["tasks"])
    app.add_api_route("/v1/tasks/{name}/cancel", cancel_task, methods=["POST"], name="cancel_task", tags=["tasks"])
    app.add_api_route("/v1/agents/{name}/logs", agent_logs, methods=["GET"], name="agent_logs", tags=["agents"])

"""Tables and documents for ``get``/``describe``/``trace``: the columns follow orlojctl."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import yaml
from rich import box
from rich.table import Table


def _g(obj: dict, path: str) -> Any:
    cur: Any = obj
    for part in path.split("."):
        if not isinstance(cur, dict):
            return None
        cur = cur.get(part)
    return cur


def cell(value: Any, limit: int | None = None) -> str:
    if value is None or value == "" or value == [] or value == {}:
        text = "-"
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, (list, tuple)):
        text = ",".join(str(v) for v in value)
    elif isinstance(value, dict):
        text = json.dumps(value, separators=(",", ":"))
    else:
        text = str(value)
    text = " ".join(text.split()) if "\n" in text else text
    if limit and len(text) > limit:
        text = text[: limit - 3] + "..."
    return text


def _count(path: str) -> Callable[[dict], Any]:
    return lambda o: len(_g(o, path) or [])


def _at(path: str, limit: int | None = None) -> Callable[[dict], str]:
    return lambda o: cell(_g(o, path), limit)


NAME = ("NAME", _at("metadata.name"))
STATUS = ("STATUS", _at("status.phase"))

COLUMNS: dict[str, list[tuple[str, Callable[[dict], Any]]]] = {
    "Agent": [NAME, ("MODEL_REF", _at("spec.model_ref")), STATUS, ("TOOLS", _count("spec.tools"))],
    "AgentSystem": [NAME, STATUS, ("AGENTS", _count("spec.agents"))],
    "ModelEndpoint": [NAME, ("PROVIDER", _at("spec.provider")), ("BASE_URL", _at("spec.base_url")),
                      ("DEFAULT_MODEL", _at("spec.default_model")), STATUS],
    "Tool": [NAME, ("TYPE", _at("spec.type")), ("ENDPOINT", _at("spec.endpoint")), STATUS],
    "Secret": [NAME, ("KEYS", _count("spec.data")), STATUS],
    "Memory": [NAME, ("TYPE", _at("spec.type")), ("PROVIDER", _at("spec.provider")), STATUS],
    "AgentPolicy": [NAME, ("MODE", _at("spec.apply_mode")), ("SYSTEM_TARGETS", _at("spec.target_systems")),
                    ("TASK_TARGETS", _at("spec.target_tasks")), ("TOKENS", _at("spec.max_tokens_per_run")),
                    ("ALLOWED_MODELS", _at("spec.allowed_models")), ("BLOCKED_TOOLS", _at("spec.blocked_tools")),
                    STATUS],
    "AgentRole": [NAME, ("PERMISSIONS", _at("spec.permissions")), STATUS],
    "ToolPermission": [NAME, ("TOOL", _at("spec.tool_ref")), ("ACTION", _at("spec.action")),
                       ("MODE", _at("spec.match_mode")), ("REQUIRED_PERMISSIONS", _at("spec.required_permissions")),
                       STATUS],
    "ToolApproval": [NAME, ("TASK", _at("spec.task_ref")), ("TOOL", _at("spec.tool")),
                     ("OPERATION", _at("spec.operation_class")), ("AGENT", _at("spec.agent")),
                     ("PHASE", _at("status.phase")), ("EXPIRES_AT", _at("status.expires_at")),
                     ("DECIDED_BY", _at("status.decided_by"))],
    "Task": [NAME, ("SYSTEM", _at("spec.system")), ("PRIORITY", _at("spec.priority")), STATUS,
             ("ATTEMPTS", lambda o: _g(o, "status.attempts") or 0),
             ("ASSIGNED_WORKER", _at("status.assignedWorker")), ("CLAIMED_BY", _at("status.claimedBy")),
             ("LEASE_UNTIL", _at("status.leaseUntil")), ("NEXT_ATTEMPT", _at("status.nextAttemptAt")),
             ("LAST_ERROR", _at("status.lastError", 80))],
    "TaskSchedule": [NAME, ("TASK_REF", _at("spec.task_ref")), ("SCHEDULE", _at("spec.schedule")),
                     ("TIME_ZONE", _at("spec.time_zone")), ("SUSPEND", lambda o: cell(bool(_g(o, "spec.suspend")))),
                     STATUS, ("LAST_SCHEDULE", _at("status.lastScheduleTime")),
                     ("NEXT_SCHEDULE", _at("status.nextScheduleTime")), ("ACTIVE_RUNS", _count("status.activeRuns")),
                     ("LAST_ERROR", _at("status.lastError", 80))],
    "TaskWebhook": [NAME, ("TASK_REF", _at("spec.task_ref")), ("ENDPOINT_ID", _at("status.endpointID")),
                    ("ENDPOINT_PATH", _at("status.endpointPath")),
                    ("SUSPEND", lambda o: cell(bool(_g(o, "spec.suspend")))), STATUS,
                    ("LAST_DELIVERY", _at("status.lastDeliveryTime")), ("LAST_EVENT", _at("status.lastEventID")),
                    ("LAST_TASK", _at("status.lastTriggeredTask")), ("LAST_ERROR", _at("status.lastError", 80))],
    "Worker": [NAME, ("REGION", _at("spec.region")), ("GPU", lambda o: cell(bool(_g(o, "spec.capabilities.gpu")))),
               ("MAX_CONCURRENCY", _at("spec.max_concurrent_tasks")), STATUS,
               ("LAST_HEARTBEAT", _at("status.lastHeartbeat"))],
    "McpServer": [NAME, ("TRANSPORT", _at("spec.transport")), STATUS, ("TOOLS", _count("status.generatedTools")),
                  ("LAST_SYNCED", _at("status.lastSyncedAt"))],
}


def resource_rows(kind: str, items: list[dict]) -> tuple[list[str], list[list[str]]]:
    """Headers and string rows; a NAMESPACE column is added when items span namespaces."""
    cols = COLUMNS.get(kind, [NAME, STATUS])
    namespaces = {(_g(o, "metadata.namespace") or "default") for o in items}
    headers = [h for h, _ in cols]
    rows = [[cell(fn(o)) for _, fn in cols] for o in items]
    if len(namespaces) > 1:
        headers.insert(0, "NAMESPACE")
        for row, o in zip(rows, items):
            row.insert(0, _g(o, "metadata.namespace") or "default")
    return headers, rows


FOLDED = ("MESSAGE", "LAST_ERROR", "REASON", "ENTRY", "CONTENT")
"""Columns of free text: wrapped onto more lines when the terminal is narrow."""


SHORT = 10
"""A column whose every cell is at most this wide (a count, a latency, a phase) keeps its width."""


class FittedTable:
    """A table fitted to the width it is printed at (rich passes it): when the rows do not fit,
    columns holding nothing (every cell ``-``) are left out first; then short columns (counts,
    phases) and the first (the name) keep their width, free-text columns wrap, and the rest end
    in an ellipsis."""

    def __init__(self, headers: list[str], rows: list[list[str]], title: str | None = None):
        self.headers, self.rows, self.title = headers, rows, title

    def _widths(self, keep: list[int]) -> list[int]:
        return [max([len(self.headers[i])] + [len(r[i]) for r in self.rows if i < len(r)]) for i in keep]

    def build(self, max_width: int) -> Table:
        keep = list(range(len(self.headers)))
        if sum(w + 2 for w in self._widths(keep)) > max_width:
            keep = [i for i in keep if i == 0 or any(i < len(r) and r[i] != "-" for r in self.rows)]
        t = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1, 0, 0), title=self.title,
                  title_justify="left")
        for i, width in zip(keep, self._widths(keep)):
            h = self.headers[i]
            if h in FOLDED:
                t.add_column(h, overflow="fold")
            else:
                t.add_column(h, overflow="ellipsis", no_wrap=width <= SHORT or (i == 0 and width <= 40))
        for row in self.rows:
            t.add_row(*(row[i] if i < len(row) else "" for i in keep))
        return t

    def __rich_console__(self, console, options):
        yield self.build(options.max_width)


def table(headers: list[str], rows: list[list[str]], title: str | None = None) -> FittedTable:
    return FittedTable(headers, rows, title)


class _Dumper(yaml.SafeDumper):
    """Multi-line strings as ``|`` blocks (prompts read and edit as written), else PyYAML's."""


def _str(dumper: yaml.SafeDumper, value: str):
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)


_Dumper.add_representer(str, _str)


def to_yaml(obj: Any, *, sort_keys: bool = False) -> str:
    return yaml.dump(obj, Dumper=_Dumper, sort_keys=sort_keys, allow_unicode=True, default_flow_style=False,
                     width=120)


def to_json(obj: Any) -> str:
    return json.dumps(obj, indent=2, ensure_ascii=False)


# --------------------------------------------------------------------------- tasks


def agents_done(task: dict) -> list[str]:
    """Agents that finished, in order: ``agent_end`` trace entries, else ``agent.N.name`` output keys."""
    done: list[str] = []
    for entry in _g(task, "status.trace") or []:
        if entry.get("type") == "agent_end" and entry.get("agent") and entry["agent"] not in done:
            done.append(entry["agent"])
    if not done:
        out = _g(task, "status.output") or {}
        i = 1
        while f"agent.{i}.name" in out:
            done.append(out[f"agent.{i}.name"])
            i += 1
    return done


def agent_models(task: dict) -> dict[str, str]:
    out = _g(task, "status.output") or {}
    models: dict[str, str] = {}
    i = 1
    while f"agent.{i}.name" in out:
        models[out[f"agent.{i}.name"]] = out.get(f"agent.{i}.model", "")
        i += 1
    return models


def trace_rows(task: dict) -> tuple[list[str], list[list[str]]]:
    models = agent_models(task)
    headers = ["TIME", "TYPE", "AGENT", "MODEL", "TOKENS", "LATENCY", "MESSAGE"]
    rows = []
    for e in _g(task, "status.trace") or []:
        agent = e.get("agent") or ""
        latency = e.get("latency_ms")
        rows.append([
            cell(_short_time(e.get("timestamp"))), cell(e.get("type")), cell(agent),
            cell(e.get("model") or models.get(agent)), cell(e.get("tokens")), ms(latency),
            cell(_trace_message(e), 200),
        ])
    return headers, rows


def ms(value: Any) -> str:
    """A measured duration: ``401ms``; ``<1ms`` for one under a millisecond (an int 0: a mock
    model answers in microseconds); ``-`` when none was measured."""
    if value in (None, ""):
        return "-"
    try:
        n = int(value)
    except (TypeError, ValueError):
        return cell(value)
    return "<1ms" if n <= 0 else f"{n}ms"


def _trace_message(e: dict) -> str:
    parts = [str(e.get("message") or "")]
    if e.get("elapsed_ms") not in (None, ""):  # agent_end: since the message was sent, actor start included
        parts.append(f"elapsed={ms(e['elapsed_ms'])}")
    if e.get("tool"):
        parts.append(f"tool={e['tool']}")
    if e.get("error_code"):
        parts.append(f"error={e['error_code']}")
    return " ".join(p for p in parts if p)


def _short_time(ts: Any) -> str:
    """``2026-03-29T10:00:01.123456Z`` → ``10:00:01.123``."""
    if not isinstance(ts, str) or "T" not in ts:
        return cell(ts)
    t = ts.split("T", 1)[1].rstrip("Z")
    for sep in ("+", "-"):
        if sep in t:
            t = t.split(sep, 1)[0]
    head, dot, frac = t.partition(".")
    return head + (dot + frac[:3] if dot else "")


def final_output(task: dict) -> str | None:
    """The result text of a task: ``final_output``, else ``last_output`` (message-driven runs);
    None when the output map carries no text (upstream's sequential mode stores none)."""
    out = _g(task, "status.output") or {}
    for key in ("final_output", "last_output"):
        if out.get(key):
            return str(out[key])
    return None


def task_output_text(task: dict) -> str:
    """The result text, else ``status.output`` as indented JSON (what ``orlojctl run`` prints)."""
    return final_output(task) or to_json(_g(task, "status.output") or {})


def task_summary(task: dict) -> str:
    out = _g(task, "status.output") or {}
    parts = []
    if out.get("agents_executed"):
        parts.append(f"agents={out['agents_executed']}")
    if out.get("tokens_used_total"):
        parts.append(f"tokens={out['tokens_used_total']}")
    if out.get("duration_ms"):
        parts.append(f"duration={out['duration_ms']}ms")
    return " ".join(parts)


def event_line(ev: dict) -> str:
    parts = [str(ev.get("timestamp", ""))]
    for key in ("id", "source", "type", "kind", "name", "namespace", "action", "message"):
        value = ev.get(key)
        if value not in (None, ""):
            parts.append(f"{key}={value}")
    return " ".join(p for p in parts if p)

"""Message lifecycle views of a task: ``GET /v1/tasks/{name}/messages`` and ``/metrics``.

Pure functions over a stored Task (no I/O), following upstream ``api/task_observability.go``
(api.md section 9):

* Filters: ``phase`` (alias ``lifecycle``; a comma list of queued, running, retrypending,
  succeeded, deadletter, matched ignoring case, ``-`` and ``_``), ``from_agent``,
  ``to_agent``, ``branch_id``, ``trace_id`` (exact, case-insensitive, trimmed) and ``limit``
  (>= 0, keeps the **last** N, 0 = all).
* ``filtered_from`` and ``lifecycle_counts`` are computed after the agent/branch/trace filters
  and before the phase filter.
* Metrics: latency = ``processed_at - timestamp`` in whole milliseconds (truncated) when both
  parse as RFC3339 and the end is not before the start; average = integer mean; p95 =
  nearest rank (index ``ceil(0.95 n) - 1`` of the sorted sample); retries =
  ``max(attempts - 1, 0)``; ``in_flight = queued + running + retrypending``. ``per_agent``
  counts a message inbound (with its phase, retries and latency) for ``to_agent`` and
  outbound for ``from_agent``; ``per_edge`` is keyed ``from->to`` (lower-cased).
"""

from __future__ import annotations

import calendar
import datetime as dt
import math
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from orloj_ray.errors import InvalidResource

LIFECYCLE = ("queued", "running", "retrypending", "succeeded", "deadletter")
"""Message lifecycle names, in the order upstream lists them."""

PHASE_ERROR = 'invalid phase "{}": expected queued,running,retrypending,succeeded,deadletter'
LIMIT_ERROR = 'invalid limit "{}": expected non-negative integer'

_INT = re.compile(r"^[+-]?\d+$")
_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(?:([Zz])|([+-])(\d{2}):(\d{2}))$"
)


@dataclass
class MessageFilter:
    phases: frozenset[str] = field(default_factory=frozenset)
    from_agent: str = ""
    to_agent: str = ""
    branch_id: str = ""
    trace_id: str = ""
    limit: int = 0

    @property
    def phase_filtered(self) -> bool:
        return bool(self.phases)


def normalize_phase(raw: Any) -> str:
    """``RetryPending``/``retry-pending``/``retry_pending`` → ``retrypending``; ``success`` →
    ``succeeded``; anything else lower-cased without ``-``/``_``."""
    value = str(raw or "").strip().lower().replace("-", "").replace("_", "")
    return "succeeded" if value == "success" else value


def _first(query: Mapping[str, Any], key: str) -> str:
    """The first value of a query parameter (Go ``url.Values.Get``), ``""`` when absent."""
    getlist = getattr(query, "getlist", None)
    if getlist is not None:
        values = getlist(key)
        return str(values[0]) if values else ""
    value = query.get(key)
    if isinstance(value, (list, tuple)):
        return str(value[0]) if value else ""
    return "" if value is None else str(value)


def parse_filter(query: Mapping[str, Any]) -> MessageFilter:
    """Read the filter from query parameters; ``InvalidResource`` (400) for a bad phase or limit."""
    raw_phase = _first(query, "phase").strip() or _first(query, "lifecycle").strip()
    phases: set[str] = set()
    if raw_phase:
        for item in raw_phase.split(","):
            value = normalize_phase(item)
            if not value:
                continue
            if value not in LIFECYCLE:
                raise InvalidResource(PHASE_ERROR.format(item.strip()), field="phase")
            phases.add(value)
    limit = 0
    raw_limit = _first(query, "limit").strip()
    if raw_limit:
        if not _INT.match(raw_limit) or int(raw_limit) < 0:
            raise InvalidResource(LIMIT_ERROR.format(raw_limit), field="limit")
        limit = int(raw_limit)
    return MessageFilter(
        phases=frozenset(phases),
        from_agent=_first(query, "from_agent").strip(),
        to_agent=_first(query, "to_agent").strip(),
        branch_id=_first(query, "branch_id").strip(),
        trace_id=_first(query, "trace_id").strip(),
        limit=limit,
    )


def _text(msg: dict, key: str) -> str:
    value = msg.get(key)
    return "" if value is None else str(value).strip()


def _same(value: str, wanted: str) -> bool:
    return value.lower() == wanted.lower()


def task_messages(task: dict) -> list[dict]:
    """``status.messages`` records (non-objects skipped), in stored order."""
    raw = (task.get("status") or {}).get("messages") or []
    return [m for m in raw if isinstance(m, dict)] if isinstance(raw, list) else []


def filter_base(messages: Iterable[dict], f: MessageFilter) -> list[dict]:
    """Agent, branch and trace filters (everything but phase and limit)."""
    out = []
    for msg in messages:
        if f.from_agent and not _same(_text(msg, "from_agent"), f.from_agent):
            continue
        if f.to_agent and not _same(_text(msg, "to_agent"), f.to_agent):
            continue
        if f.branch_id and not _same(_text(msg, "branch_id"), f.branch_id):
            continue
        if f.trace_id and not _same(_text(msg, "trace_id"), f.trace_id):
            continue
        out.append(msg)
    return out


def filter_phase(messages: Iterable[dict], f: MessageFilter) -> list[dict]:
    if not f.phases:
        return list(messages)
    return [m for m in messages if normalize_phase(m.get("phase")) in f.phases]


def keep_last(messages: list[dict], limit: int) -> list[dict]:
    return messages[-limit:] if 0 < limit < len(messages) else messages


def lifecycle_counts(messages: Iterable[dict]) -> dict[str, int]:
    counts = dict.fromkeys(LIFECYCLE, 0)
    for msg in messages:
        phase = normalize_phase(msg.get("phase"))
        if phase in counts:
            counts[phase] += 1
    return counts


def _namespace(task: dict) -> str:
    return str((task.get("metadata") or {}).get("namespace") or "").strip() or "default"


def messages_body(task: dict, f: MessageFilter) -> dict:
    """The ``/messages`` response body."""
    base = filter_base(task_messages(task), f)
    selected = keep_last(filter_phase(base, f), f.limit)
    return {
        "name": (task.get("metadata") or {}).get("name", ""),
        "namespace": _namespace(task),
        "total": len(selected),
        "filtered_from": len(base),
        "lifecycle_counts": lifecycle_counts(base),
        "messages": selected,
    }


# --------------------------------------------------------------------------- metrics


def parse_time_ns(raw: Any) -> int | None:
    """Nanoseconds since the epoch for an RFC3339 / RFC3339Nano timestamp (offset required)."""
    if not isinstance(raw, str):
        return None
    m = _RFC3339.match(raw.strip())
    if m is None:
        return None
    year, month, day, hour, minute, second = (int(m.group(i)) for i in range(1, 7))
    try:
        dt.datetime(year, month, day, hour, minute, second)
    except ValueError:
        return None
    seconds = calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0))
    if m.group(9):
        offset = (int(m.group(10)) * 60 + int(m.group(11))) * 60
        seconds -= offset if m.group(9) == "+" else -offset
    frac = (m.group(7) or "").ljust(9, "0")
    return seconds * 1_000_000_000 + int(frac or 0)


def latency_ms(msg: dict) -> int | None:
    """``processed_at - timestamp`` in whole milliseconds, or None when either is missing or
    unparseable, or the message was processed before it was sent."""
    start, end = parse_time_ns(msg.get("timestamp")), parse_time_ns(msg.get("processed_at"))
    if start is None or end is None or end < start:
        return None
    return (end - start) // 1_000_000


def summarize_latencies(samples: list[int]) -> tuple[int, int, int]:
    """``(avg, p95, count)``: integer mean and nearest-rank 95th percentile; zeros when empty."""
    if not samples:
        return 0, 0, 0
    ordered = sorted(samples)
    n = len(ordered)
    idx = min(max(math.ceil(n * 0.95) - 1, 0), n - 1)
    return sum(ordered) // n, ordered[idx], n


def _attempts(msg: dict) -> int:
    try:
        return int(msg.get("attempts") or 0)
    except (TypeError, ValueError):
        return 0


class _Bucket:
    __slots__ = ("from_agent", "to_agent", "inbound", "outbound", "messages", "counts", "retry_count",
                 "deadletters", "latencies")

    def __init__(self) -> None:
        self.from_agent = self.to_agent = ""
        self.inbound = self.outbound = self.messages = self.retry_count = self.deadletters = 0
        self.counts = dict.fromkeys(LIFECYCLE, 0)
        self.latencies: list[int] = []

    def record(self, phase: str, retries: int, latency: int | None) -> None:
        if phase in self.counts:
            self.counts[phase] += 1
        self.retry_count += retries
        if phase == "deadletter":
            self.deadletters += 1
        if latency is not None:
            self.latencies.append(latency)

    def counters(self) -> dict[str, int]:
        avg, p95, sample = summarize_latencies(self.latencies)
        c = self.counts
        return {
            "queued": c["queued"], "running": c["running"], "retrypending": c["retrypending"],
            "succeeded": c["succeeded"], "deadletter": c["deadletter"],
            "in_flight": c["queued"] + c["running"] + c["retrypending"],
            "retry_count": self.retry_count, "deadletters": self.deadletters,
            "latency_ms_avg": avg, "latency_ms_p95": p95, "latency_sample_size": sample,
        }


def metrics_body(task: dict, f: MessageFilter, generated_at: str) -> dict:
    """The ``/metrics`` response body (``generated_at`` given by the caller)."""
    selected = keep_last(filter_phase(filter_base(task_messages(task), f), f), f.limit)
    totals = _Bucket()
    agents: dict[str, _Bucket] = {}
    edges: dict[str, _Bucket] = {}
    for msg in selected:
        phase = normalize_phase(msg.get("phase"))
        retries = max(_attempts(msg) - 1, 0)
        latency = latency_ms(msg)
        totals.messages += 1
        totals.record(phase, retries, latency)
        to, frm = _text(msg, "to_agent"), _text(msg, "from_agent")
        if to:
            acc = agents.setdefault(to, _Bucket())
            acc.inbound += 1
            acc.record(phase, retries, latency)
        if frm:
            agents.setdefault(frm, _Bucket()).outbound += 1
        key = f"{frm.lower()}->{to.lower()}"
        if key != "->":
            acc = edges.setdefault(key, _Bucket())
            acc.from_agent, acc.to_agent = frm, to
            acc.messages += 1
            acc.record(phase, retries, latency)

    per_agent = [{"agent": name, "inbound": acc.inbound, "outbound": acc.outbound, **acc.counters()}
                 for name, acc in sorted(agents.items(), key=lambda kv: (kv[0].lower(), kv[0]))]
    per_edge = [{"from_agent": acc.from_agent, "to_agent": acc.to_agent, "messages": acc.messages,
                 **acc.counters()}
                for _, acc in sorted(edges.items(), key=lambda kv: kv[0])]
    return {
        "name": (task.get("metadata") or {}).get("name", ""),
        "namespace": _namespace(task),
        "generated_at": generated_at,
        "totals": {"messages": totals.messages, **totals.counters()},
        "per_agent": per_agent,
        "per_edge": per_edge,
        "filters": {"phase_filtered": f.phase_filtered},
    }

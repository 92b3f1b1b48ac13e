"""``GET /v1/tasks/{name}/messages`` and ``/metrics`` (api.md section 9) over a MemoryStore.

The task's ``status.messages`` is written by hand the way the engine records it: a kickoff
from ``system``, a fan-out from the planner to two agents (branches b001 and b002), one
message RetryPending after 2 attempts, one DeadLetter after 3, one still Running.
"""

from __future__ import annotations

import copy
import re

import httpx
import pytest

from orloj_ray.store import MemoryStore
from serve.app import create_app
from serve.task_observability import latency_ms, parse_time_ns, summarize_latencies

TRACE = "default/report/a001"


def _msg(hop: int, frm: str, to: str, **fields) -> dict:
    mid = f"default/report/a001/h{hop:03d}/{frm}/{to}"
    record = {
        "timestamp": fields.pop("timestamp"), "message_id": mid, "idempotency_key": mid,
        "task_id": "default/report", "attempt": 1, "system": "report-system",
        "from_agent": frm, "to_agent": to, "branch_id": fields.pop("branch_id", "b001"),
        "type": fields.pop("type", "task_handoff"), "content": fields.pop("content", f"{frm} says hi to {to}"),
        "trace_id": TRACE, "max_attempts": 3,
    }
    record.update(fields)
    return record


MESSAGES = [
    _msg(1, "system", "planner", type="task_start", content="topic=AI chips", phase="Succeeded", attempts=1,
         timestamp="2026-03-29T10:00:00Z", processed_at="2026-03-29T10:00:00.5Z", worker="w1"),
    _msg(2, "planner", "research", phase="Succeeded", attempts=1, parent_id="h001",
         timestamp="2026-03-29T10:00:01Z", processed_at="2026-03-29T10:00:02.250Z", worker="w1"),
    _msg(3, "planner", "writer", branch_id="b002", parent_branch_id="b001", phase="RetryPending", attempts=2,
         timestamp="2026-03-29T10:00:01Z", next_attempt_at="2026-03-29T10:00:09Z",
         last_error="model gateway timeout (retryable=true)", worker="w2"),
    _msg(4, "research", "writer", phase="DeadLetter", attempts=3,
         timestamp="2026-03-29T10:00:03+00:00", processed_at="2026-03-29T12:00:04.000123456+02:00",
         last_error="tool \"web\" failed after 3 attempt(s)", worker="w1"),
    _msg(5, "research", "writer", branch_id="b003", phase="Running", attempts=1,
         timestamp="2026-03-29T10:00:05.123456789Z", worker="w2"),
]

TASK = {
    "apiVersion": "orloj.dev/v1", "kind": "Task",
    "metadata": {"name": "report", "namespace": "default"},
    "spec": {"system": "report-system", "input": {"topic": "AI chips"}},
    "status": {"phase": "Running", "attempts": 1, "claimedBy": "w1", "messages": MESSAGES,
               "trace": [{"timestamp": "2026-03-29T10:00:00Z", "type": "task_start", "message": "system=report-system"}],
               "history": [{"timestamp": "2026-03-29T10:00:00Z", "type": "claim", "worker": "w1", "message": "claimed"}]},
}

ZERO = {"queued": 0, "running": 0, "retrypending": 0, "succeeded": 0, "deadletter": 0}
ALL_COUNTS = {"queued": 0, "running": 1, "retrypending": 1, "succeeded": 2, "deadletter": 1}


def _counters(**kw) -> dict:
    base = {"queued": 0, "running": 0, "retrypending": 0, "succeeded": 0, "deadletter": 0, "in_flight": 0,
            "retry_count": 0, "deadletters": 0, "latency_ms_avg": 0, "latency_ms_p95": 0, "latency_sample_size": 0}
    base.update(kw)
    return base


@pytest.fixture
async def store() -> MemoryStore:
    s = MemoryStore()
    await s.create(copy.deepcopy(TASK))
    await s.create({"apiVersion": "orloj.dev/v1", "kind": "Task", "metadata": {"name": "empty", "namespace": "team-a"},
                    "spec": {"system": "report-system"}, "status": {"phase": "Pending"}})
    return s


@pytest.fixture
async def client(store):
    app = create_app(store)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test",
                                 timeout=5) as c:
        yield c


# ---------------------------------------------------------------- /messages


async def test_messages_unfiltered_returns_every_record_as_stored(client):
    r = await client.get("/v1/tasks/report/messages")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    assert r.json() == {"name": "report", "namespace": "default", "total": 5, "filtered_from": 5,
                        "lifecycle_counts": ALL_COUNTS, "messages": MESSAGES}
    assert list(r.json()) == ["name", "namespace", "total", "filtered_from", "lifecycle_counts", "messages"]


@pytest.mark.parametrize("query", ["phase=retry-pending,DEAD_LETTER", "phase=RetryPending, deadletter",
                                   "lifecycle=retrypending,deadletter", "phase=retrypending,,deadletter,"])
async def test_phase_filter_keeps_counts_from_before_it(client, query):
    body = (await client.get(f"/v1/tasks/report/messages?{query}")).json()
    assert [m["phase"] for m in body["messages"]] == ["RetryPending", "DeadLetter"]
    assert body["total"] == 2
    assert body["filtered_from"] == 5
    assert body["lifecycle_counts"] == ALL_COUNTS


async def test_phase_wins_over_lifecycle_alias(client):
    body = (await client.get("/v1/tasks/report/messages?phase=running&lifecycle=succeeded")).json()
    assert [m["phase"] for m in body["messages"]] == ["Running"]


@pytest.mark.parametrize("query, bad", [("phase=bogus", "bogus"), ("phase=queued,%20Nope%20", "Nope"),
                                        ("lifecycle=failed", "failed")])
async def test_unknown_phase_is_400(client, query, bad):
    for path in ("messages", "metrics"):
        r = await client.get(f"/v1/tasks/report/{path}?{query}")
        assert r.status_code == 400, r.text
        assert r.json() == {"error": {
            "code": "invalid", "field": "phase",
            "message": f'invalid phase "{bad}": expected queued,running,retrypending,succeeded,deadletter'}}


async def test_agent_branch_trace_filters_are_exact_and_case_insensitive(client):
    body = (await client.get("/v1/tasks/report/messages?to_agent=WRITER")).json()
    assert [m["message_id"].split("/")[3] for m in body["messages"]] == ["h003", "h004", "h005"]
    assert body["filtered_from"] == 3
    assert body["lifecycle_counts"] == {**ZERO, "running": 1, "retrypending": 1, "deadletter": 1}

    body = (await client.get("/v1/tasks/report/messages?to_agent=writer&phase=deadletter")).json()
    assert (body["total"], body["filtered_from"]) == (1, 3)
    assert body["messages"][0]["last_error"].startswith("tool")

    body = (await client.get("/v1/tasks/report/messages?from_agent=%20Planner%20")).json()
    assert [m["to_agent"] for m in body["messages"]] == ["research", "writer"]

    body = (await client.get("/v1/tasks/report/messages?from_agent=plan")).json()  # exact, not prefix
    assert body["total"] == 0 and body["messages"] == [] and body["lifecycle_counts"] == ZERO

    body = (await client.get("/v1/tasks/report/messages?branch_id=B002")).json()
    assert [m["to_agent"] for m in body["messages"]] == ["writer"]
    assert body["messages"][0]["parent_branch_id"] == "b001"

    body = (await client.get(f"/v1/tasks/report/messages?trace_id={TRACE.upper()}")).json()
    assert body["total"] == 5
    body = (await client.get("/v1/tasks/report/messages?trace_id=default/report/a002")).json()
    assert body["total"] == 0 and body["filtered_from"] == 0


async def test_limit_keeps_the_last_n_after_the_phase_filter(client):
    body = (await client.get("/v1/tasks/report/messages?limit=2")).json()
    assert body["messages"] == MESSAGES[-2:]
    assert (body["total"], body["filtered_from"]) == (2, 5)

    body = (await client.get("/v1/tasks/report/messages?limit=1&phase=succeeded")).json()
    assert [m["to_agent"] for m in body["messages"]] == ["research"]
    assert (body["total"], body["filtered_from"]) == (1, 5)

    for limit in ("0", "99", "+5"):
        assert (await client.get(f"/v1/tasks/report/messages?limit={limit}")).json()["total"] == 5


@pytest.mark.parametrize("limit", ["-1", "abc", "1.5"])
async def test_bad_limit_is_400(client, limit):
    r = await client.get(f"/v1/tasks/report/messages?limit={limit}")
    assert r.status_code == 400
    assert r.json()["error"]["message"] == f'invalid limit "{limit}": expected non-negative integer'


async def test_unknown_task_is_404_and_namespace_is_honoured(client):
    for path in ("messages", "metrics"):
        r = await client.get(f"/v1/tasks/nope/{path}")
        assert r.status_code == 404
        assert r.json() == {"error": {"code": "not_found", "message": 'task "nope" not found'}}
        assert (await client.get(f"/v1/tasks/empty/{path}")).status_code == 404  # lives in team-a
        # the filter is checked first, as upstream
        assert (await client.get(f"/v1/tasks/nope/{path}?phase=bogus")).status_code == 400

    body = (await client.get("/v1/tasks/empty/messages?namespace=team-a")).json()
    assert body == {"name": "empty", "namespace": "team-a", "total": 0, "filtered_from": 0,
                    "lifecycle_counts": ZERO, "messages": []}


async def test_only_get_is_served(client):
    r = await client.post("/v1/tasks/report/messages", json={})
    assert r.status_code == 405


# ---------------------------------------------------------------- /metrics


async def test_metrics_totals_per_agent_per_edge(client):
    r = await client.get("/v1/tasks/report/metrics")
    assert r.status_code == 200, r.text
    body = r.json()
    assert list(body) == ["name", "namespace", "generated_at", "totals", "per_agent", "per_edge", "filters"]
    assert (body["name"], body["namespace"]) == ("report", "default")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", body["generated_at"])
    # latencies: 500 (h001), 1250 (h002), 1000 (h004: +02:00 offset, nanoseconds truncated)
    assert body["totals"] == {"messages": 5, **_counters(
        running=1, retrypending=1, succeeded=2, deadletter=1, in_flight=2, retry_count=3, deadletters=1,
        latency_ms_avg=916, latency_ms_p95=1250, latency_sample_size=3)}
    assert list(body["totals"])[:1] == ["messages"]
    assert body["per_agent"] == [
        {"agent": "planner", "inbound": 1, "outbound": 2,
         **_counters(succeeded=1, latency_ms_avg=500, latency_ms_p95=500, latency_sample_size=1)},
        {"agent": "research", "inbound": 1, "outbound": 2,
         **_counters(succeeded=1, latency_ms_avg=1250, latency_ms_p95=1250, latency_sample_size=1)},
        {"agent": "system", "inbound": 0, "outbound": 1, **_counters()},
        {"agent": "writer", "inbound": 3, "outbound": 0,
         **_counters(running=1, retrypending=1, deadletter=1, in_flight=2, retry_count=3, deadletters=1,
                     latency_ms_avg=1000, latency_ms_p95=1000, latency_sample_size=1)},
    ]
    assert body["per_edge"] == [
        {"from_agent": "planner", "to_agent": "research", "messages": 1,
         **_counters(succeeded=1, latency_ms_avg=1250, latency_ms_p95=1250, latency_sample_size=1)},
        {"from_agent": "planner", "to_agent": "writer", "messages": 1,
         **_counters(retrypending=1, in_flight=1, retry_count=1)},
        {"from_agent": "research", "to_agent": "writer", "messages": 2,
         **_counters(running=1, deadletter=1, in_flight=1, retry_count=2, deadletters=1,
                     latency_ms_avg=1000, latency_ms_p95=1000, latency_sample_size=1)},
        {"from_agent": "system", "to_agent": "planner", "messages": 1,
         **_counters(succeeded=1, latency_ms_avg=500, latency_ms_p95=500, latency_sample_size=1)},
    ]
    assert body["filters"] == {"phase_filtered": False}


async def test_metrics_filters(client):
    body = (await client.get("/v1/tasks/report/metrics?phase=succeeded")).json()
    assert body["filters"] == {"phase_filtered": True}
    assert body["totals"]["messages"] == 2 and body["totals"]["in_flight"] == 0
    assert (body["totals"]["latency_ms_avg"], body["totals"]["latency_ms_p95"]) == (875, 1250)
    assert [a["agent"] for a in body["per_agent"]] == ["planner", "research", "system"]

    body = (await client.get("/v1/tasks/report/metrics?to_agent=writer&limit=1")).json()  # h005 only
    assert body["totals"] == {"messages": 1, **_counters(running=1, in_flight=1)}
    assert [(e["from_agent"], e["to_agent"]) for e in body["per_edge"]] == [("research", "writer")]

    body = (await client.get("/v1/tasks/empty/metrics?namespace=team-a")).json()
    assert body["totals"] == {"messages": 0, **_counters()}
    assert body["per_agent"] == [] and body["per_edge"] == []


async def test_agents_keep_their_spelling_and_edges_fold_case(store, client):
    task = await store.get("Task", "default", "report")
    extra = copy.deepcopy(MESSAGES[1])
    extra.update(from_agent="Planner", to_agent="Research", message_id="x", phase="Queued", attempts=0)
    extra.pop("processed_at")
    task["status"]["messages"].append(extra)
    await store.update_status("Task", "default", "report", task["status"], task["metadata"]["resourceVersion"])
    body = (await client.get("/v1/tasks/report/metrics")).json()
    assert [a["agent"] for a in body["per_agent"]] == ["Planner", "planner", "Research", "research", "system",
                                                       "writer"]
    edge = body["per_edge"][0]
    assert (edge["from_agent"], edge["to_agent"], edge["messages"], edge["queued"]) == ("Planner", "Research", 2, 1)


# ---------------------------------------------------------------- latency rules


def test_nearest_rank_p95_and_integer_average():
    assert summarize_latencies([]) == (0, 0, 0)
    assert summarize_latencies([7]) == (7, 7, 1)
    assert summarize_latencies(list(range(1, 21))) == (10, 19, 20)  # ceil(19) - 1 = index 18
    assert summarize_latencies(list(range(100, 0, -1))) == (50, 95, 100)
    assert summarize_latencies([1, 2]) == (1, 2, 2)


def test_latency_needs_both_timestamps_in_order():
    assert latency_ms({"timestamp": "2026-03-29T10:00:00Z", "processed_at": "2026-03-29T10:00:00.0019Z"}) == 1
    assert latency_ms({"timestamp": "2026-03-29T10:00:01Z", "processed_at": "2026-03-29T10:00:00Z"}) is None
    assert latency_ms({"timestamp": "2026-03-29T10:00:00Z"}) is None
    assert latency_ms({"timestamp": "2026-03-29T10:00:00", "processed_at": "2026-03-29T10:00:01Z"}) is None
    assert latency_ms({"timestamp": "yesterday", "processed_at": "2026-03-29T10:00:01Z"}) is None
    assert parse_time_ns("2026-03-29T12:00:00.000000001+02:00") == parse_time_ns("2026-03-29T10:00:00Z") + 1
    assert parse_time_ns("2026-02-30T10:00:00Z") is None

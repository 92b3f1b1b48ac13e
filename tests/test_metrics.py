"""The metrics registry (orloj_ray/observability): values, Prometheus text, snapshot and merge;
the series TaskRecorder feeds from real in-process runs; ``/metrics`` on the FastAPI app."""

from __future__ import annotations

import httpx
import pytest

from governance_support import EXAMPLES, Running, ToolServer, apply, read, task, wait_phase
from orloj_ray.observability import Registry, default_task_metrics, merge, render
from orloj_ray.observability.store_metrics import store_snapshot
from orloj_ray.resources import normalize
from orloj_ray.store import MemoryStore
from serve.app import create_app
from tests_support import load


def _lines(text: str, name: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(name) and not line.startswith("#")]


def test_counter_gauge_and_histogram_render_as_prometheus_text():
    r = Registry()
    c = r.counter("demo_total", "Demo counter.", ("agent",))
    c.inc(agent="a")
    c.inc(2, agent='we"ird\\')
    g = r.gauge("demo_depth", "Depth.\nTwo lines.")
    g.set(3.5)
    h = r.histogram("demo_seconds", "Durations.", ("agent",), buckets=(0.1, 1.0))
    for value in (0.05, 0.1, 0.5, 7):
        h.observe(value, agent="a")
    assert render(r.snapshot()) == (
        "# HELP demo_total Demo counter.\n# TYPE demo_total counter\n"
        'demo_total{agent="a"} 1\n'
        'demo_total{agent="we\\"ird\\\\"} 2\n'
        "# HELP demo_depth Depth.\\nTwo lines.\n# TYPE demo_depth gauge\ndemo_depth 3.5\n"
        "# HELP demo_seconds Durations.\n# TYPE demo_seconds histogram\n"
        'demo_seconds_bucket{agent="a",le="0.1"} 2\n'  # le is "less or equal": 0.1 lands in 0.1
        'demo_seconds_bucket{agent="a",le="1"} 3\n'
        'demo_seconds_bucket{agent="a",le="+Inf"} 4\n'
        'demo_seconds_sum{agent="a"} 7.65\n'
        'demo_seconds_count{agent="a"} 4\n'
    )


def test_misuse_is_refused_with_the_metric_named():
    r = Registry()
    c = r.counter("x_total", "x", ("agent",))
    with pytest.raises(ValueError, match="x_total: unknown label"):
        c.inc(tool="t")
    with pytest.raises(ValueError, match="can only go up"):
        c.inc(-1, agent="a")
    with pytest.raises(TypeError):
        c.observe(1.0, agent="a")
    with pytest.raises(ValueError, match="already registered"):
        r.gauge("x_total", "x")
    assert r.counter("x_total", "x", ("agent",)) is c


def test_merge_adds_counters_and_histograms_and_gauges_by_their_rule():
    def one(n: int) -> dict:
        r = Registry()
        r.counter("c_total", "c", ("agent",)).inc(n, agent="a")
        r.gauge("depth", "d", ("agent",)).set(n, agent="a")
        r.gauge("actors", "a", ("agent",), merge="max").set(n, agent="a")
        r.histogram("h_seconds", "h", buckets=(1.0,)).observe(n * 0.5)
        return r.snapshot()

    skewed = Registry()
    skewed.gauge("c_total", "a different kind under the same name").set(100)
    text = render(merge([one(1), one(3), skewed.snapshot(), {}]))
    assert 'c_total{agent="a"} 4' in text
    assert 'depth{agent="a"} 4' in text
    assert 'actors{agent="a"} 3' in text
    assert 'h_seconds_bucket{le="1"} 1' in text and 'h_seconds_bucket{le="+Inf"} 2' in text
    assert "h_seconds_sum 2" in text and "h_seconds_count 2" in text
    assert "100" not in text


def test_a_sink_sees_every_change_and_replace_zeroes_gone_gauges():
    r = Registry()
    seen = []
    g = r.gauge("g", "g", ("agent",))
    r.add_sink(lambda fam, op, value, labels: seen.append((fam.name, op, value, labels)))
    r.counter("c_total", "c").inc(2)  # registered after the sink: still seen
    g.replace({("a",): 2, ("b",): 1})
    g.replace({("b",): 5})
    assert seen[0] == ("c_total", "inc", 2, {})
    assert ("g", "set", 0.0, {"agent": "a"}) in seen and seen[-1] == ("g", "set", 5.0, {"agent": "b"})
    assert 'g{agent="a"}' not in render(r.snapshot())


def test_store_snapshot_counts_tasks_by_phase_and_inflight_messages_of_unfinished_tasks():
    tasks = [
        {"status": {"phase": "Running", "messages": [{"to_agent": "w", "phase": "Queued"},
                                                      {"to_agent": "w", "phase": "Running"},
                                                      {"to_agent": "p", "phase": "Succeeded"}]}},
        {"status": {"phase": "Succeeded", "messages": [{"to_agent": "w", "phase": "Running"}]}},  # stale: ignored
        {"status": {}},
    ]
    text = render(store_snapshot(tasks, 42))
    assert 'orloj_tasks{phase="Running"} 1' in text and 'orloj_tasks{phase="Pending"} 1' in text
    assert 'orloj_tasks{phase="DeadLetter"} 0' in text
    assert _lines(text, "orloj_inflight_messages") == ['orloj_inflight_messages{agent="w"} 2']
    assert "orloj_events_last_id 42" in text


def _value(name: str, **labels) -> float:
    return default_task_metrics().registry.get(name).value(**labels)


async def test_a_pipeline_run_feeds_upstreams_series_through_the_task_recorder():
    store = MemoryStore()
    await load(store, "pipeline")
    agents = ["bp-pipeline-planner-agent", "bp-pipeline-research-agent", "bp-pipeline-writer-agent"]
    before = {a: _value("orloj_messages_total", phase="succeeded", agent=a) for a in agents}
    durations = _value("orloj_task_duration_seconds", namespace="default", system="bp-pipeline-system",
                       status="succeeded")
    async with Running(store):
        done = await wait_phase(store, "bp-pipeline-task")
    assert done["status"]["phase"] == "Succeeded", done["status"].get("lastError")
    assert _value("orloj_task_duration_seconds", namespace="default", system="bp-pipeline-system",
                  status="succeeded") == durations + 1
    for agent in agents:  # one turn each, counted once although a write may be applied twice
        assert _value("orloj_messages_total", phase="succeeded", agent=agent) == before[agent] + 1
        assert _value("orloj_agent_turns_total", namespace="default", agent=agent, outcome="ok") >= 1
        assert _value("orloj_agent_step_duration_seconds", agent=agent, step_type="execute") >= 1
    text = render(default_task_metrics().registry.snapshot())
    assert 'orloj_tokens_used_total{agent="bp-pipeline-writer-agent",model="gpt-4o",type="' in text
    assert 'orloj_model_calls_total{namespace="default",agent="bp-pipeline-writer-agent",model="gpt-4o",' \
           'outcome="ok"}' in text
    assert 'orloj_model_tokens_total{namespace="default",agent="bp-pipeline-writer-agent",model="gpt-4o",' \
           'direction="input"}' in text


async def test_tool_calls_and_governance_denials_are_counted_by_tool_outcome_and_code():
    store = MemoryStore()
    with ToolServer().running() as server:
        await apply(store, read(EXAMPLES / "resources.yaml") + read(EXAMPLES / "compliance-checker-with-purge.yaml"),
                    tool_url=server.url, namespace="metrics-gov")
        denied = _value("orloj_governance_decisions_total", namespace="metrics-gov", decision="denied",
                        code="tool_permission_denied")
        for name, topic in (("scan", "scan-documents of the Q3 vendor contracts"),
                            ("purge", "purge-records older than seven years")):
            doc = task(name, "compliance-review", topic)
            doc["metadata"]["namespace"] = "metrics-gov"
            await store.create(normalize(doc))
        async with Running(store):
            scan = await wait_phase(store, "scan", namespace="metrics-gov")
            purge = await wait_phase(store, "purge", namespace="metrics-gov")
    assert scan["status"]["phase"] == "Succeeded" and purge["status"]["phase"] == "Failed"
    assert _value("orloj_tool_calls_total", namespace="metrics-gov", agent="compliance-checker",
                  tool="scan-documents", outcome="ok") == 1
    assert _value("orloj_tool_call_duration_seconds", namespace="metrics-gov", tool="scan-documents",
                  outcome="ok") == 1
    assert _value("orloj_governance_decisions_total", namespace="metrics-gov", decision="denied",
                  code="tool_permission_denied") == denied + 1
    assert _value("orloj_agent_turns_total", namespace="metrics-gov", agent="compliance-checker",
                  outcome="tool_permission_denied") == 1
    assert _value("orloj_deadletters_total", agent="compliance-checker") >= 1
    assert _value("orloj_task_duration_seconds", namespace="metrics-gov", system="compliance-review",
                  status="failed") == 1


async def test_the_metrics_endpoint_merges_the_store_series_with_every_source_snapshot():
    store = MemoryStore()
    await load(store, "pipeline")
    supervisor = Registry()
    supervisor.counter("orloj_retries_total", "Total message retries.", ("agent",)).inc(2, agent="w")
    other = Registry()
    other.counter("orloj_retries_total", "Total message retries.", ("agent",)).inc(3, agent="w")

    async def source() -> list[dict]:
        return [supervisor.snapshot(), other.snapshot()]

    app = create_app(store, metrics_source=source)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as client:
        resp = await client.get("/metrics")
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert 'orloj_retries_total{agent="w"} 5' in resp.text
    assert 'orloj_tasks{phase="Pending"} 1' in resp.text

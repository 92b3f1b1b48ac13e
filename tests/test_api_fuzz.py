"""The API fuzzed against its own OpenAPI document (issue 15, point 4).

Schemathesis reads ``/openapi.json`` from a real server (uvicorn on loopback over the real app
and an in-memory store holding one object of each kind, so item routes find something) and
sends generated requests to every operation but the endless event streams. Assertion: no
5xx, every response is documented and matches its schema and content type. A deeper run:
``FUZZ_EXAMPLES=500 pytest tests/test_api_fuzz.py`` (see tests/fuzz/README.md).

Hypothesis over manifests: any document the server refuses is refused with a clean 4xx
naming the problem, and nothing is stored after a refusal.
"""

from __future__ import annotations

import asyncio
import os

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from live_server import LiveServer
from orloj_ray.resources import KINDS, normalize
from orloj_ray.store import MemoryStore
from serve.app import create_app
from serve.openapi import openapi_document

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "12"))
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]

SEED = [
    {"kind": "ModelEndpoint", "metadata": {"name": "default"}, "spec": {"provider": "mock", "default_model": "m"}},
    {"kind": "Agent", "metadata": {"name": "a"}, "spec": {"model_ref": "default"}},
    {"kind": "AgentSystem", "metadata": {"name": "sys"}, "spec": {"agents": ["a"]}},
    {"kind": "Tool", "metadata": {"name": "t"}, "spec": {"endpoint": "http://127.0.0.1:9/t"}},
    {"kind": "Secret", "metadata": {"name": "s"}, "spec": {"stringData": {"value": "x"}}},
    {"kind": "Memory", "metadata": {"name": "m"}, "spec": {}},
    {"kind": "AgentPolicy", "metadata": {"name": "p"}, "spec": {}},
    {"kind": "AgentRole", "metadata": {"name": "r"}, "spec": {"permissions": ["tool:t:invoke"]}},
    {"kind": "ToolPermission", "metadata": {"name": "t"}, "spec": {}},
    {"kind": "ToolApproval", "metadata": {"name": "ta"}, "spec": {"task_ref": "default/task", "tool": "t"}},
    {"kind": "Task", "metadata": {"name": "task"}, "spec": {"system": "sys"}},
    {"kind": "TaskSchedule", "metadata": {"name": "sched"}, "spec": {"task_ref": "task", "schedule": "0 * * * *"}},
    {"kind": "TaskWebhook", "metadata": {"name": "hook"}, "spec": {"task_ref": "task", "auth": {"secret_ref": "s"}}},
    {"kind": "Worker", "metadata": {"name": "w"}, "spec": {}},
    {"kind": "McpServer", "metadata": {"name": "mcp"}, "spec": {"transport": "http", "endpoint": "http://127.0.0.1:9"}},
]


async def _seed(store: MemoryStore) -> None:
    for doc in SEED:
        await store.create(normalize(doc))


@pytest.fixture(scope="module")
def live_api():
    store = MemoryStore()
    asyncio.run(_seed(store))
    with LiveServer(create_app(store)) as server:
        yield server


SCHEMA = schemathesis.openapi.from_dict(openapi_document())
OPERATIONS = {op.label: op for op in (r.ok() for r in SCHEMA.get_all_operations())
              if not op.path.endswith(("/watch", "/stream"))}  # endless event streams


def test_the_document_served_is_the_one_fuzzed(live_api):
    assert httpx.get(f"{live_api.url}/openapi.json").json() == openapi_document()


@pytest.mark.parametrize("label", sorted(OPERATIONS))
def test_no_request_breaks_the_server(live_api, label):
    operation = OPERATIONS[label]

    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True,
              database=None)
    @given(case=operation.as_strategy())
    def fuzz(case):
        response = case.call(base_url=live_api.url, timeout=10)
        case.validate_response(response, checks=CHECKS)

    fuzz()


def test_seed_covers_every_kind():
    assert {d["kind"] for d in SEED} == {k.kind for k in KINDS}


# ------------------------------------------------------------------ hypothesis over manifests

_scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**20, 10**20), st.text(max_size=12),
                     st.floats(allow_nan=False, allow_infinity=False))
_values = st.recursive(_scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                         st.dictionaries(st.text(max_size=8), inner, max_size=3)),
                       max_leaves=12)
_FIELDS = ["model_ref", "model", "prompt", "tools", "roles", "limits", "replicas", "autoscaling", "governance",
           "memory", "execution", "type", "endpoint", "runtime", "auth", "system", "priority", "max_turns", "retry",
           "message_retry", "schedule", "time_zone", "task_ref", "data", "stringData", "provider", "default_model",
           "options", "transport", "command", "max_tokens_per_run", "apply_mode", "permissions", "tool", "ttl"]
_specs = st.dictionaries(st.sampled_from(_FIELDS), _values, max_size=5)
_names = st.one_of(st.sampled_from(["ok", "a.b", "../x", "a/b", "<s>", "", " ", "x" * 300]), st.text(max_size=10))


@st.composite
def manifests(draw):
    info = draw(st.sampled_from(KINDS))
    doc = {"kind": draw(st.sampled_from([info.kind, info.kind.lower(), "Nope", ""])),
           "metadata": {"name": draw(_names)}, "spec": draw(_specs)}
    if draw(st.booleans()):
        doc["apiVersion"] = draw(st.sampled_from(["orloj.dev/v1", "evil.example/v9", ""]))
    if draw(st.booleans()):
        doc["metadata"]["namespace"] = draw(_names)
    return info, doc


@pytest.fixture(scope="module")
def manifest_api():
    store = MemoryStore()
    with LiveServer(create_app(store)) as server, httpx.Client(base_url=server.url, timeout=10) as http:
        yield http


@settings(max_examples=int(os.environ.get("FUZZ_MANIFESTS", "150")), deadline=None,
          suppress_health_check=list(HealthCheck), derandomize=True)
@given(case=manifests())
def test_refused_manifests_are_clean_4xx_and_store_nothing(manifest_api, case):
    info, doc = case
    before = manifest_api.get(f"/v1/{info.plural}").json()["items"]
    r = manifest_api.post(f"/v1/{info.plural}", json=doc)
    assert r.status_code in (201, 400, 409), r.text
    if r.status_code == 201:
        return
    err = r.json()["error"]
    assert err["code"] and err["message"] and "Traceback" not in err["message"]
    assert manifest_api.get(f"/v1/{info.plural}").json()["items"] == before

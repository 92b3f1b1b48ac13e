"""Upstream defaults of every kind (features F005-F013) and the wire shape (Go omitempty)."""

from __future__ import annotations

import base64
from datetime import datetime, timedelta, timezone

import pytest

from orloj_ray.errors import InvalidResource
from orloj_ray.resources import KINDS, RESOURCE_MODELS, normalize, parse_resource

NOW = datetime(2025, 3, 4, 5, 6, 7, 890000, tzinfo=timezone.utc)


def doc(kind: str, spec: dict | None = None, name: str = "x", **extra) -> dict:
    return {"apiVersion": "orloj.dev/v1", "kind": kind, "metadata": {"name": name}, "spec": spec or {}, **extra}


def test_every_kind_has_a_model_named_after_it():
    assert sorted(RESOURCE_MODELS) == sorted(k.kind for k in KINDS)


def test_envelope_defaults():
    out = normalize({"kind": "Memory", "metadata": {"name": "m", "namespace": "  "}})
    assert out == {
        "apiVersion": "orloj.dev/v1",
        "kind": "Memory",
        "metadata": {"name": "m", "namespace": "default"},
        "spec": {"auth": {}},
        "status": {"phase": "Pending"},
    }


def test_api_version_other_than_v1_is_refused():
    # upstream keeps any apiVersion; orloj-ray serves only orloj.dev/v1 (docs/compatibility.md)
    with pytest.raises(InvalidResource) as info:
        normalize({**doc("Memory"), "apiVersion": "evil.example/v9"})
    assert info.value.field == "apiVersion"
    assert info.value.message == 'unsupported apiVersion "evil.example/v9": expected orloj.dev/v1'
    assert normalize({**doc("Memory"), "apiVersion": " orloj.dev/v1 "})["apiVersion"] == "orloj.dev/v1"


def test_expected_kind_fills_a_missing_kind():
    out = normalize({"metadata": {"name": "w"}}, kind="Worker")
    assert out["kind"] == "Worker" and out["spec"] == {"capabilities": {}, "max_concurrent_tasks": 1}


def test_agent_defaults_f005():
    spec = normalize(doc("Agent", {"model_ref": " openai-default "}))["spec"]
    assert spec == {
        "model_ref": "openai-default",
        "prompt": "",
        "memory": {},
        "execution": {
            "profile": "dynamic",
            "duplicate_tool_call_policy": "short_circuit",
            "on_contract_violation": "non_retryable_error",
            "tool_use_behavior": "run_llm_again",
        },
        "limits": {"max_steps": 10},
    }


def test_agent_lists_and_memory():
    spec = normalize(doc("Agent", {
        "model_ref": "m",
        "roles": ["analyst", " Analyst ", "", "writer"],
        "allowed_tools": ["a", "A"],
        "tools": ["web_search", "web_search"],
        "memory": {"ref": "mem", "allow": ["memory.read", "READ", "write"]},
        "execution": {"profile": "CONTRACT", "tool_sequence": ["a", "a"], "required_output_markers": ["X", "x", "X"]},
        "limits": {"max_steps": 0, "timeout": "1m30s"},
    }))["spec"]
    assert spec["roles"] == ["analyst", "writer"]
    assert spec["allowed_tools"] == ["a"]
    assert spec["tools"] == ["web_search", "web_search"]  # not de-duplicated by upstream either
    assert spec["memory"] == {"ref": "mem", "allow": ["read", "write"]}
    assert spec["execution"]["profile"] == "contract"
    assert spec["execution"]["tool_sequence"] == ["a"]
    assert spec["execution"]["required_output_markers"] == ["X", "x"]
    assert spec["limits"] == {"max_steps": 10, "timeout": "1m30s"}


@pytest.mark.parametrize(("risk", "isolation", "ops"), [
    ("", "none", ["read"]), ("medium", "none", ["read"]),
    ("high", "sandboxed", ["write"]), ("CRITICAL", "sandboxed", ["write"]),
])
def test_tool_defaults_by_risk_f006(risk, isolation, ops):
    spec = normalize(doc("Tool", {"endpoint": "https://x", "risk_level": risk}))["spec"]
    assert spec["runtime"] == {
        "timeout": "30s",
        "isolation_mode": isolation,
        "retry": {"max_attempts": 1, "backoff": "0s", "max_backoff": "30s", "jitter": "none"},
    }
    assert spec["operation_classes"] == ops
    assert spec["type"] == "http"
    assert spec["auth"] == {}


def test_tool_auth_defaults_to_bearer_with_a_secret():
    spec = normalize(doc("Tool", {"auth": {"secretRef": " key "}, "capabilities": ["web.read", "WEB.READ"],
                                  "operation_classes": ["Write", "write", "delete"]}))["spec"]
    assert spec["auth"] == {"profile": "bearer", "secretRef": "key"}
    assert spec["capabilities"] == ["web.read"]
    assert spec["operation_classes"] == ["write", "delete"]


def test_tool_type_is_lower_cased():
    assert normalize(doc("Tool", {"type": "External"}))["spec"]["type"] == "external"


@pytest.mark.parametrize(("provider", "base_url"), [
    ("", "https://api.openai.com/v1"),
    ("Anthropic", "https://api.anthropic.com/v1"),
    ("ollama", "http://127.0.0.1:11434"),
    ("azure-openai", None),
])
def test_model_endpoint_defaults_f007(provider, base_url):
    spec = normalize(doc("ModelEndpoint", {"provider": provider, "default_model": "m",
                                           "options": {" Max_Tokens ": " 1024 ", " ": "x"}}))["spec"]
    assert spec["provider"] == (provider.lower() or "openai")
    assert spec.get("base_url") == base_url
    assert spec["options"] == {"max_tokens": "1024"}
    assert spec["auth"] == {}


def test_secret_string_data_is_folded_into_data_f008():
    spec = normalize(doc("Secret", {"stringData": {"value": "sk-test-123"}, "data": {"other": "eA=="}}))["spec"]
    assert set(spec) == {"data"}
    assert base64.b64decode(spec["data"]["value"]) == b"sk-test-123"
    assert spec["data"]["other"] == "eA=="


def test_task_defaults_f009():
    spec = normalize(doc("Task", {"system": "s", "retry": {"backoff": "5s"}}))["spec"]
    assert spec == {
        "system": "s",
        "mode": "run",
        "priority": "normal",
        "retry": {"max_attempts": 1, "backoff": "5s"},
        "message_retry": {"max_attempts": 1, "backoff": "5s", "max_backoff": "24h", "jitter": "full"},
        "requirements": {},
    }


def test_task_message_retry_inherits_attempts():
    spec = normalize(doc("Task", {"retry": {"max_attempts": 3}, "mode": "Template",
                                  "message_retry": {"non_retryable": ["policy"]}}))["spec"]
    assert spec["message_retry"] == {"max_attempts": 3, "backoff": "0s", "max_backoff": "24h", "jitter": "full",
                                     "non_retryable": ["policy"]}
    assert spec["mode"] == "template"


def test_task_schedule_defaults_f010():
    out = normalize(doc("TaskSchedule", {"task_ref": "tmpl", "schedule": "*/5 * * * *"}))
    assert out["spec"] == {
        "task_ref": "tmpl",
        "schedule": "*/5 * * * *",
        "time_zone": "UTC",
        "starting_deadline_seconds": 300,
        "concurrency_policy": "forbid",
        "successful_history_limit": 10,
        "failed_history_limit": 3,
    }
    assert out["status"] == {"phase": "Pending"}


def test_task_webhook_endpoint_id_f010():
    out = normalize(doc("TaskWebhook", {"task_ref": "weekly-report-template",
                                        "auth": {"secret_ref": "webhook-shared-secret"}},
                        name="report-generic-webhook"))
    assert out["status"]["endpointID"] == "7ac271c5aecc685d13d98675"
    assert out["status"]["endpointPath"] == "/v1/webhook-deliveries/7ac271c5aecc685d13d98675"
    assert out["spec"]["auth"]["profile"] == "generic"
    assert out["spec"]["idempotency"] == {"event_id_header": "X-Event-Id", "dedupe_window_seconds": 86400}
    assert out["spec"]["payload"] == {"mode": "raw", "input_key": "webhook_payload"}


def test_github_webhook_defaults():
    spec = normalize(doc("TaskWebhook", {"task_ref": "ns/t", "auth": {"profile": "GitHub", "secretRef": "s"}}))["spec"]
    assert spec["auth"] == {"profile": "github", "secret_ref": "s", "signature_header": "X-Hub-Signature-256",
                            "signature_prefix": "sha256=", "max_skew_seconds": 300}
    assert spec["idempotency"] == {"event_id_header": "X-GitHub-Delivery", "dedupe_window_seconds": 259200}


def test_webhook_endpoint_id_is_kept_once_set():
    out = normalize(doc("TaskWebhook", {"task_ref": "t", "auth": {"secret_ref": "s"}},
                        status={"endpointID": "abc", "acceptedCount": 3}))
    assert out["status"] == {"phase": "Pending", "endpointID": "abc", "endpointPath": "/v1/webhook-deliveries/abc",
                             "acceptedCount": 3}


def test_tool_permission_defaults_f011():
    out = normalize(doc("ToolPermission", {"operation_rules": [{}, {"operation_class": "Write", "verdict": "DENY"}]},
                        name="web_search"))
    assert out["spec"] == {
        "tool_ref": "web_search",
        "action": "invoke",
        "match_mode": "all",
        "apply_mode": "global",
        "operation_rules": [{"operation_class": "*", "verdict": "allow"},
                            {"operation_class": "write", "verdict": "deny"}],
    }
    assert out["status"] == {"phase": "Ready"}


@pytest.mark.parametrize("kind", ["AgentPolicy", "AgentRole", "ToolPermission"])
@pytest.mark.parametrize("phase", [None, "", "Pending", "pending"])
def test_governance_kinds_are_ready(kind, phase):
    status = {} if phase is None else {"phase": phase}
    assert normalize(doc(kind, status=status))["status"] == {"phase": "Ready"}


def test_agent_role_dedupes_permissions_f011():
    spec = normalize(doc("AgentRole", {"permissions": ["tool:web_search:invoke", " TOOL:WEB_SEARCH:INVOKE ",
                                                      "capability:web.read"]}))["spec"]
    assert spec["permissions"] == ["tool:web_search:invoke", "capability:web.read"]


def test_agent_policy_defaults_to_scoped():
    assert normalize(doc("AgentPolicy"))["spec"] == {"apply_mode": "scoped"}


def test_agent_system_graph_f012():
    spec = normalize(doc("AgentSystem", {
        "agents": ["a", "b", "c"],
        "graph": {
            "a": {"next": " b ", "edges": [{"to": ""}, {"to": " c ", "labels": {"k": "v"}, "policy": {"p": "q"}}]},
            "c": {"join": {"mode": "quorum", "quorum_count": 2, "quorum_percent": 50, "on_failure": "skip"}},
        },
    }))["spec"]
    assert spec["graph"] == {
        "a": {"next": "b", "edges": [{"to": "c", "labels": {"k": "v"}, "policy": {"p": "q"}}], "join": {}},
        "c": {"join": {"mode": "quorum", "quorum_count": 2, "quorum_percent": 50, "on_failure": "skip"}},
    }


def test_agent_system_join_values_are_checked_at_apply():
    # upstream stores them as given and fails the task that runs the graph (docs/compatibility.md)
    with pytest.raises(InvalidResource) as info:
        normalize(doc("AgentSystem", {"agents": ["a"], "graph": {"a": {"join": {
            "mode": "first", "quorum_percent": 150, "on_failure": "ignore"}}}}))
    assert [p["field"] for p in info.value.problems] == [
        "spec.graph.a.join.quorum_percent", "spec.graph.a.join.mode", "spec.graph.a.join.on_failure"]
    assert info.value.problems[0]["message"] == "invalid spec.graph.a.join.quorum_percent 150: expected <= 100"


def test_worker_defaults():
    spec = normalize(doc("Worker", {"capabilities": {"gpu": True}}))["spec"]
    assert spec == {"capabilities": {"gpu": True}, "max_concurrent_tasks": 1}


def test_mcp_server_defaults_f013():
    spec = normalize(doc("McpServer", {"transport": "HTTP", "endpoint": " https://mcp ",
                                       "env": [{"name": " A ", "secret_ref": " s "}, {"name": "B", "value": " v "}],
                                       "tool_filter": {"include": [" echo ", ""]}}))["spec"]
    assert spec == {
        "transport": "http",
        "endpoint": "https://mcp",
        "env": [{"name": "A", "secretRef": "s"}, {"name": "B", "value": "v"}],
        "auth": {},
        "tool_filter": {"include": ["echo"]},
        "reconnect": {"max_attempts": 3, "backoff": "2s"},
    }


def test_tool_approval_ttl_and_expiry_f013():
    out = normalize(doc("ToolApproval", {"task_ref": "default/t1", "tool": "deploy", "operation_class": "WRITE"}),
                    now=NOW)
    assert out["spec"] == {"task_ref": "default/t1", "tool": "deploy", "operation_class": "write", "ttl": "10m"}
    assert out["status"] == {"phase": "Pending", "expires_at": "2025-03-04T05:16:07Z"}


def test_tool_approval_expiry_with_the_real_clock():
    out = normalize(doc("ToolApproval", {"task_ref": "t", "tool": "deploy", "ttl": "1h"}))
    expires = datetime.strptime(out["status"]["expires_at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    assert abs(expires - datetime.now(timezone.utc) - timedelta(hours=1)) < timedelta(seconds=5)


def test_tool_approval_expiry_is_not_touched_once_decided_or_set():
    decided = normalize(doc("ToolApproval", {"task_ref": "t", "tool": "x"},
                            status={"phase": "Approved", "decision": "approved", "decided_by": "me"}), now=NOW)
    assert decided["status"] == {"phase": "Approved", "decision": "approved", "decided_by": "me"}
    pending = normalize(doc("ToolApproval", {"task_ref": "t", "tool": "x"},
                            status={"expires_at": "2030-01-01T00:00:00Z"}), now=NOW)
    assert pending["status"]["expires_at"] == "2030-01-01T00:00:00Z"


def test_parse_resource_gives_typed_models():
    task = parse_resource(doc("Task", {"system": "s", "max_turns": "4"}))
    assert type(task).__name__ == "Task"
    assert task.spec.max_turns == 4
    assert task.spec.message_retry.max_backoff == "24h"


def test_parse_resource_refuses_a_non_mapping():
    with pytest.raises(InvalidResource, match="expected a manifest"):
        parse_resource(["not", "a", "manifest"])

"""The announcement dialect of Agent: model, tools with permissions, governance."""

from __future__ import annotations

from pathlib import Path

import copy

import pytest

from orloj_ray.errors import InvalidResource
from orloj_ray.resources import (
    agent_role_names,
    agent_tool_names,
    expand_agent,
    grant_permission,
    load_text,
    normalize,
    permission_strings,
)

ANNOUNCEMENT = (Path(__file__).resolve().parents[1] / "examples" / "governance" / "compliance-checker.yaml").read_text()

GENERATED_LABELS = {"orloj.dev/owner-agent": "compliance-checker", "orloj.dev/generated": "true"}


@pytest.fixture
def agent() -> dict:
    [manifest] = load_text(ANNOUNCEMENT, source="announcement.yaml")
    return manifest.doc


def test_announcement_loads_and_keeps_fields_as_written(agent):
    assert agent["kind"] == "Agent"
    spec = agent["spec"]
    assert spec["model"] == "gpt-4"
    assert "model_ref" not in spec
    assert spec["tools"] == [
        {"name": "scan-documents", "permissions": [{"read": "compliance_docs"}]},
        {"name": "flag-issues", "permissions": [{"write": "issue_tracker"}]},
    ]
    assert spec["governance"] == {"maxTokensPerMinute": 8000, "requireApproval": [{"write": "issue_tracker"}],
                                  "auditLog": True}
    assert spec["limits"] == {"max_steps": 10} and spec["prompt"] == ""


def test_announcement_round_trips(agent):
    assert normalize(copy.deepcopy(agent)) == agent
    stored = copy.deepcopy(agent)
    stored["metadata"].update(resourceVersion="3", generation=1, createdAt="2025-01-01T00:00:00Z")
    assert normalize(copy.deepcopy(stored)) == stored


def test_expand_agent(agent):
    role, policy = expand_agent(agent)
    assert role == {
        "apiVersion": "orloj.dev/v1",
        "kind": "AgentRole",
        "metadata": {"name": "compliance-checker-grants", "namespace": "default", "labels": GENERATED_LABELS},
        "spec": {
            "description": "Generated from the tool permissions of agent compliance-checker.",
            "permissions": ["tool:scan-documents:invoke", "tool:flag-issues:invoke",
                            "compliance_docs:read", "issue_tracker:write"],
        },
        "status": {"phase": "Ready"},
    }
    assert policy == {
        "apiVersion": "orloj.dev/v1",
        "kind": "AgentPolicy",
        "metadata": {"name": "compliance-checker-governance", "namespace": "default", "labels": GENERATED_LABELS},
        "spec": {
            "apply_mode": "scoped",
            "target_agents": ["compliance-checker"],
            "max_tokens_per_minute": 8000,
            "require_approval": ["issue_tracker:write"],
            "audit_log": True,
        },
        "status": {"phase": "Ready"},
    }
    assert [normalize(copy.deepcopy(d)) for d in (role, policy)] == [role, policy]


def test_expand_agent_follows_the_agent_namespace(agent):
    agent["metadata"]["namespace"] = "team-a"
    assert {d["metadata"]["namespace"] for d in expand_agent(agent)} == {"team-a"}


def test_generated_role_is_bound(agent):
    assert agent_role_names(agent) == ["compliance-checker-grants"]
    agent["spec"]["roles"] = ["auditor"]
    assert agent_role_names(normalize(agent)) == ["auditor", "compliance-checker-grants"]


def test_plain_upstream_agents_expand_to_nothing():
    plain = normalize({"kind": "Agent", "metadata": {"name": "a"},
                       "spec": {"model_ref": "m", "tools": ["web_search"], "roles": ["r"]}})
    assert expand_agent(plain) == []
    assert agent_role_names(plain) == ["r"]
    only_model = {"kind": "Agent", "metadata": {"name": "a"}, "spec": {"model": "gpt-4o", "tools": ["t"]}}
    assert expand_agent(only_model) == []


def test_mixed_tool_forms():
    spec = normalize({"kind": "Agent", "metadata": {"name": "a"}, "spec": {
        "model": "gpt-4o",
        "model_ref": "team/openai",
        "tools": ["web_search", {"name": " db ", "permissions": [{"Read": "orders", "write": "orders"},
                                                                 "capability:db.query"]}],
    }})["spec"]
    assert (spec["model"], spec["model_ref"]) == ("gpt-4o", "team/openai")
    assert spec["tools"] == ["web_search", {"name": "db", "permissions": [{"Read": "orders", "write": "orders"},
                                                                          "capability:db.query"]}]
    assert agent_tool_names(spec) == ["web_search", "db"]
    [role] = expand_agent({"kind": "Agent", "metadata": {"name": "a"}, "spec": spec})
    assert role["spec"]["permissions"] == ["tool:web_search:invoke", "tool:db:invoke", "orders:read",
                                           "orders:write", "capability:db.query"]


def test_governance_only():
    [policy] = expand_agent({"kind": "Agent", "metadata": {"name": "a"},
                             "spec": {"model": "m", "governance": {"auditLog": True}}})
    assert policy["spec"] == {"apply_mode": "scoped", "target_agents": ["a"], "audit_log": True}


def test_helpers():
    assert grant_permission("READ ", " compliance_docs") == "compliance_docs:read"
    with pytest.raises(ValueError):
        grant_permission("read", " ")
    assert permission_strings([{"write": "issue_tracker"}, " tool:x:invoke "]) == ["issue_tracker:write",
                                                                                    "tool:x:invoke"]
    assert agent_tool_names({"tools": ["a", {"name": "b"}, " "]}) == ["a", "b"]
    assert agent_tool_names({}) == []


@pytest.mark.parametrize(("spec", "field", "message"), [
    ({"tools": [{"permissions": [{"read": "x"}]}]}, "spec.tools[0].name", "spec.tools[0].name is required"),
    ({"tools": ["a", {"name": "b", "permissions": [{"read": ""}]}]}, "spec.tools[1].permissions[0]",
     "spec.tools[1].permissions[0]: expected a grant like {read: compliance_docs} or a permission string"),
    ({"tools": [{"name": "b", "permissions": [{}]}]}, "spec.tools[0].permissions[0]",
     "spec.tools[0].permissions[0]: expected a grant like {read: compliance_docs} or a permission string"),
    ({"tools": [{"name": "b", "permissions": "read"}]}, "spec.tools[0].permissions",
     "spec.tools[0].permissions: expected a list, got 'read'"),
    ({"governance": {"maxTokensPerMinute": 0}}, "spec.governance.maxTokensPerMinute",
     "invalid spec.governance.maxTokensPerMinute 0: expected > 0"),
    ({"governance": {"maxTokensPerMinute": "lots"}}, "spec.governance.maxTokensPerMinute",
     "spec.governance.maxTokensPerMinute: expected an integer, got 'lots'"),
    ({"governance": {"requireAproval": [{"write": "x"}]}}, "spec.governance.requireAproval",
     "spec.governance.requireAproval: unknown field"),
    ({"governance": {"requireApproval": [{"write": " "}]}}, "spec.governance.requireApproval[0]",
     "spec.governance.requireApproval[0]: expected a grant like {read: compliance_docs} or a permission string"),
    ({"governance": {"auditLog": "maybe"}}, "spec.governance.auditLog",
     "spec.governance.auditLog: expected a boolean (true or false), got 'maybe'"),
    ({"governance": ["auditLog"]}, "spec.governance", "spec.governance: expected a map, got a list"),
])
def test_dialect_errors(spec, field, message):
    with pytest.raises(InvalidResource) as info:
        normalize({"kind": "Agent", "metadata": {"name": "a"}, "spec": {"model": "m", **spec}})
    assert (info.value.field, info.value.message) == (field, message)


def test_error_in_the_announcement_names_file_document_and_field():
    broken = ANNOUNCEMENT.replace("maxTokensPerMinute: 8000", "maxTokensPerMinute: eight-thousand")
    with pytest.raises(InvalidResource) as info:
        load_text(broken, source="announcement.yaml")
    assert str(info.value) == ("announcement.yaml: document 1: spec.governance.maxTokensPerMinute: "
                               "expected an integer, got 'eight-thousand'")


def test_agent_requirements_extension_round_trips():
    doc = {"apiVersion": "orloj.dev/v1", "kind": "Agent", "metadata": {"name": "eu"},
           "spec": {"model_ref": "m", "requirements": {"region": "eu-west", "gpu": True}}}
    out = normalize(doc)
    assert out["spec"]["requirements"] == {"region": "eu-west", "gpu": True}
    assert "requirements" not in normalize({**doc, "spec": {"model_ref": "m"}})["spec"]

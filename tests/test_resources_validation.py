"""Validation errors: upstream's messages, field paths, type errors, durations and cron."""

from __future__ import annotations

import pickle
from datetime import timedelta

import pytest

from orloj_ray.errors import InvalidResource
from orloj_ray.resources import ManifestError, normalize, parse_duration
from orloj_ray.resources.cron import validate_cron


def doc(kind: str, spec: dict | None = None, **extra) -> dict:
    return {"kind": kind, "metadata": {"name": "x"}, "spec": spec or {}, **extra}


def error_of(document: dict, **kwargs) -> InvalidResource:
    with pytest.raises(InvalidResource) as info:
        normalize(document, **kwargs)
    return info.value


@pytest.mark.parametrize(("document", "field", "message"), [
    (doc("Agent"), "spec.model_ref", "spec.model_ref is required"),
    ({"kind": "Agent", "spec": {"model_ref": "m"}}, "metadata.name", "metadata.name is required"),
    ({"kind": "Agent", "metadata": {"name": "  "}, "spec": {"model_ref": "m"}}, "metadata.name",
     "metadata.name is required"),
    (doc("Agent", {"model_ref": "m", "memory": {"allow": ["read"]}}), "spec.memory.ref",
     "spec.memory.ref is required when spec.memory.allow is set"),
    (doc("Agent", {"model_ref": "m", "memory": {"ref": "r", "allow": ["read", "delete"]}}), "spec.memory.allow[1]",
     'invalid spec.memory.allow: invalid memory operation "delete": expected read, write, search, list, or ingest'),
    (doc("Agent", {"model_ref": "m", "execution": {"profile": "contract"}}), "spec.execution.tool_sequence",
     "spec.execution.tool_sequence is required when spec.execution.profile=contract"),
    (doc("Agent", {"model_ref": "m", "execution": {"tool_use_behavior": "Later"}}), "spec.execution.tool_use_behavior",
     'invalid spec.execution.tool_use_behavior "later"'),
    (doc("Agent", {"model_ref": "m", "limits": {"timeout": "soon"}}), "spec.limits.timeout",
     'invalid spec.limits.timeout "soon": time: invalid duration "soon"'),
    (doc("Tool", {"type": "ftp"}), "spec.type",
     'invalid spec.type "ftp": expected http, external, grpc, queue, webhook-callback, mcp, or wasm'),
    (doc("Tool", {"runtime": {"isolation_mode": "x"}}), "spec.runtime.isolation_mode",
     'invalid spec.runtime.isolation_mode "x": expected none, sandboxed, container, or wasm'),
    (doc("Tool", {"runtime": {"retry": {"jitter": "some"}}}), "spec.runtime.retry.jitter",
     'invalid spec.runtime.retry.jitter "some": expected none, full, or equal'),
    (doc("Tool", {"runtime": {"retry": {"max_backoff": "10"}}}), "spec.runtime.retry.max_backoff",
     'invalid spec.runtime.retry.max_backoff "10": time: missing unit in duration "10"'),
    (doc("Tool", {"operation_classes": ["read", "steal"]}), "spec.operation_classes[1]",
     'invalid spec.operation_classes value "steal": expected read, write, delete, or admin'),
    (doc("Tool", {"risk_level": "extreme"}), "spec.risk_level",
     'invalid spec.risk_level "extreme": expected low, medium, high, or critical'),
    (doc("Tool", {"type": "mcp", "mcp_tool_name": "echo"}), "spec.mcp_server_ref",
     "spec.mcp_server_ref is required when spec.type is mcp"),
    (doc("Tool", {"auth": {"profile": "basic"}}), "spec.auth.secretRef",
     "spec.auth.secretRef is required when auth.profile is set"),
    (doc("Tool", {"auth": {"profile": "api_key_header", "secretRef": "s"}}), "spec.auth.headerName",
     "spec.auth.headerName is required when auth.profile is api_key_header"),
    (doc("Tool", {"auth": {"profile": "oauth2_client_credentials", "secretRef": "s"}}), "spec.auth.tokenURL",
     "spec.auth.tokenURL is required when auth.profile is oauth2_client_credentials"),
    (doc("ModelEndpoint", {"provider": "anthropic"}), "spec.default_model", "spec.default_model is required"),
    (doc("Secret", {"data": {"value": "not_base64"}}), "spec.data.value", "spec.data.value must be valid base64"),
    (doc("Secret", {"data": {"value": " "}}), "spec.data.value", "spec.data.value is empty"),
    (doc("AgentPolicy", {"apply_mode": "everywhere"}), "spec.apply_mode",
     'unsupported spec.apply_mode "everywhere": expected scoped or global'),
    (doc("ToolPermission", {"apply_mode": "scoped"}), "spec.target_agents",
     "spec.target_agents is required when spec.apply_mode=scoped"),
    (doc("ToolPermission", {"match_mode": "most"}), "spec.match_mode",
     'unsupported spec.match_mode "most": expected all or any'),
    (doc("ToolPermission", {"operation_rules": [{}, {"verdict": "maybe"}]}), "spec.operation_rules[1].verdict",
     'invalid operation_rules[1].verdict "maybe": expected allow, deny, or approval_required'),
    (doc("ToolPermission", {"operation_rules": [{"operation_class": "all"}]}),
     "spec.operation_rules[0].operation_class",
     'invalid operation_rules[0].operation_class "all": expected read, write, delete, admin, or *'),
    (doc("ToolApproval", {"tool": "t"}), "spec.task_ref", "spec.task_ref is required"),
    (doc("ToolApproval", {"task_ref": "t"}), "spec.tool", "spec.tool is required"),
    (doc("ToolApproval", {"task_ref": "t", "tool": "x", "ttl": "1d"}), "spec.ttl",
     'invalid spec.ttl "1d": time: unknown unit "d" in duration "1d"'),
    (doc("ToolApproval", {"task_ref": "t", "tool": "x"}, status={"phase": "Maybe"}), "status.phase",
     'invalid status.phase "Maybe" for ToolApproval: expected Pending, Approved, Denied, or Expired'),
    (doc("Task", {"mode": "later"}), "spec.mode", 'invalid spec.mode "later": expected run or template'),
    (doc("Task", {"max_turns": -1}), "spec.max_turns", "invalid spec.max_turns -1: expected >= 0"),
    (doc("Task", {"retry": {"backoff": "2x"}}), "spec.retry.backoff",
     'invalid spec.retry.backoff "2x": time: unknown unit "x" in duration "2x"'),
    (doc("Task", {"message_retry": {"jitter": "lots"}}), "spec.message_retry.jitter",
     'invalid spec.message_retry.jitter "lots": expected none, full, or equal'),
    (doc("TaskSchedule", {"schedule": "* * * * *"}), "spec.task_ref", "spec.task_ref is required"),
    (doc("TaskSchedule", {"task_ref": "default/", "schedule": "* * * * *"}), "spec.task_ref",
     'invalid spec.task_ref "default/": expected name or namespace/name'),
    (doc("TaskSchedule", {"task_ref": "t"}), "spec.schedule", "spec.schedule is required"),
    (doc("TaskSchedule", {"task_ref": "t", "schedule": "* * * *"}), "spec.schedule",
     'invalid spec.schedule "* * * *": invalid cron schedule "* * * *": expected 5 fields'),
    (doc("TaskSchedule", {"task_ref": "t", "schedule": "* 24 * * *"}), "spec.schedule",
     'invalid spec.schedule "* 24 * * *": invalid hour field: value 24 out of range [0,23]'),
    (doc("TaskSchedule", {"task_ref": "t", "schedule": "* * * * *", "time_zone": "Mars/Colony"}),
     "spec.time_zone", 'invalid spec.time_zone "Mars/Colony": unknown time zone Mars/Colony'),
    (doc("TaskSchedule", {"task_ref": "t", "schedule": "* * * * *", "concurrency_policy": "sometimes"}),
     "spec.concurrency_policy", 'invalid spec.concurrency_policy "sometimes": expected forbid, allow, or replace'),
    (doc("TaskWebhook", {"task_ref": "t"}), "spec.auth.secret_ref", "spec.auth.secret_ref is required"),
    (doc("TaskWebhook", {"task_ref": "t", "auth": {"secret_ref": "s", "profile": "gitlab"}}), "spec.auth.profile",
     'invalid spec.auth.profile "gitlab": expected generic or github'),
    (doc("TaskWebhook", {"task_ref": "t", "auth": {"secret_ref": "s", "max_skew_seconds": -1}}),
     "spec.auth.max_skew_seconds", "invalid spec.auth.max_skew_seconds -1: expected >= 0"),
    (doc("TaskWebhook", {"task_ref": "t", "auth": {"secret_ref": "s"}, "payload": {"mode": "json"}}),
     "spec.payload.mode", 'invalid spec.payload.mode "json": expected raw'),
    (doc("McpServer"), "spec.transport", "spec.transport is required (stdio or http)"),
    (doc("McpServer", {"transport": "sse"}), "spec.transport", 'invalid spec.transport "sse": expected stdio or http'),
    (doc("McpServer", {"transport": "stdio"}), "spec.command", "spec.command is required for stdio transport"),
    (doc("McpServer", {"transport": "http"}), "spec.endpoint", "spec.endpoint is required for http transport"),
])
def test_upstream_messages_with_field_paths(document, field, message):
    err = error_of(document)
    assert (err.field, err.message) == (field, message)
    assert err.code == "invalid" and err.status == 400


@pytest.mark.parametrize(("document", "field", "message"), [
    (doc("Agent", {"model_ref": "m", "limits": {"max_steps": "ten"}}), "spec.limits.max_steps",
     "spec.limits.max_steps: expected an integer, got 'ten'"),
    (doc("Agent", {"model_ref": "m", "limits": {"max_steps": 2.5}}), "spec.limits.max_steps",
     "spec.limits.max_steps: expected an integer, got 2.5"),
    (doc("Agent", {"model_ref": "m", "limits": {"max_steps": True}}), "spec.limits.max_steps",
     "spec.limits.max_steps: expected an integer, got true"),
    (doc("Agent", {"model_ref": ["a"]}), "spec.model_ref", "spec.model_ref: expected a string, got a list"),
    (doc("Agent", {"model_ref": "m", "tools": "web_search"}), "spec.tools",
     "spec.tools: expected a list, got 'web_search'"),
    (doc("Agent", {"model_ref": "m", "tools": ["a", ["b"]]}), "spec.tools[1]",
     "spec.tools[1]: expected a string or a map, got a list"),
    (doc("Agent", {"model_ref": "m", "limits": ["x"]}), "spec.limits", "spec.limits: expected a map, got a list"),
    (doc("Task", {"input": {"topic": {"nested": 1}}}), "spec.input.topic",
     "spec.input.topic: expected a string, got a map"),
    (doc("Task", {"requirements": {"gpu": "sometimes"}}), "spec.requirements.gpu",
     "spec.requirements.gpu: expected a boolean (true or false), got 'sometimes'"),
    (doc("AgentSystem", {"graph": {"a": {"edges": [{"to": "b"}, {"to": "c", "labels": ["x"]}]}}}),
     "spec.graph.a.edges[1].labels", "spec.graph.a.edges[1].labels: expected a map, got a list"),
    (doc("AgentSystem", {"graph": {"a": {"join": {"quorum_count": "two"}}}}), "spec.graph.a.join.quorum_count",
     "spec.graph.a.join.quorum_count: expected an integer, got 'two'"),
    (doc("Tool", {"input_schema": "object"}), "spec.input_schema", "spec.input_schema: expected a map, got 'object'"),
    ({"kind": "Task", "metadata": {"name": "t", "labels": ["a"]}}, "metadata.labels",
     "metadata.labels: expected a map, got a list"),
    ({"kind": "Task", "metadata": "t"}, "metadata", "metadata: expected a map, got 't'"),
    (doc("Task", status=["Running"]), "status", "status: expected a map, got a list"),
    (doc("Task", status={"phase": 3}), "status.phase", "status.phase: expected a string, got 3"),
])
def test_type_errors_name_the_field(document, field, message):
    err = error_of(document)
    assert (err.field, err.message) == (field, message)


def test_camel_case_spelling_is_named_as_written():
    err = error_of(doc("Agent", {"model_ref": "m", "limits": {"maxSteps": "ten"}}))
    assert err.field == "spec.limits.maxSteps"


def test_lenient_scalars_like_upstream_yaml():
    spec = normalize(doc("Task", {"input": {"n": 3, "flag": True, "empty": None}, "max_turns": "4",
                                  "retry": {"max_attempts": 2.0}}))["spec"]
    assert spec["input"] == {"n": "3", "flag": "true", "empty": ""}
    assert spec["max_turns"] == 4
    assert spec["retry"]["max_attempts"] == 2


def test_null_means_unset():
    spec = normalize(doc("Agent", {"model_ref": "m", "tools": None, "limits": None, "prompt": None}))["spec"]
    assert spec["limits"] == {"max_steps": 10} and spec["prompt"] == "" and "tools" not in spec


@pytest.mark.parametrize(("document", "kwargs", "message"), [
    ({"metadata": {"name": "x"}}, {}, "kind is required: expected one of Agent, AgentSystem"),
    ({"kind": "Gadget", "metadata": {"name": "x"}}, {}, 'unsupported kind "Gadget": expected one of Agent,'),
    ({"kind": "Tool", "metadata": {"name": "x"}}, {"kind": "Agent"}, 'unsupported kind "Tool" for Agent'),
    ({"metadata": {"name": "x"}}, {"kind": "gadgets"}, 'unsupported kind "gadgets": expected one of'),
])
def test_kind_errors(document, kwargs, message):
    err = error_of(document, **kwargs)
    assert err.field == "kind"
    assert err.message.startswith(message)


def test_kind_matches_case_insensitively():
    assert normalize({"kind": "taskschedule", "metadata": {"name": "s"},
                      "spec": {"task_ref": "t", "schedule": "0 9 * * 1"}})["kind"] == "TaskSchedule"
    assert normalize({"kind": "AGENT", "metadata": {"name": "a"}, "spec": {"model_ref": "m"}},
                     kind="agent")["kind"] == "Agent"


def test_source_and_index_give_a_manifest_error():
    err = error_of(doc("Agent", {"model_ref": "m", "limits": {"max_steps": "ten"}}), source="agents.yaml", index=1)
    assert isinstance(err, ManifestError)
    assert (err.source, err.index, err.field) == ("agents.yaml", 1, "spec.limits.max_steps")
    assert str(err) == "agents.yaml: document 2: spec.limits.max_steps: expected an integer, got 'ten'"


def test_manifest_error_puts_the_field_before_messages_that_do_not_start_with_it():
    err = error_of(doc("Tool", {"type": "ftp"}), source="t.yaml", index=0)
    assert str(err).startswith('t.yaml: document 1: spec.type: invalid spec.type "ftp"')
    err = error_of(doc("Agent"), source="a.yaml", index=0)
    assert str(err) == "a.yaml: document 1: spec.model_ref is required"


def test_errors_survive_pickling():
    err = error_of(doc("Agent"), source="a.yaml", index=3)
    copy = pickle.loads(pickle.dumps(err))
    assert (type(copy), str(copy), copy.source, copy.index, copy.field) == (
        ManifestError, str(err), "a.yaml", 3, "spec.model_ref")
    assert copy.to_dict() == {"error": {"code": "invalid", "message": str(err), "field": "spec.model_ref"}}


@pytest.mark.parametrize(("text", "expected"), [
    ("0", timedelta(0)),
    ("30s", timedelta(seconds=30)),
    ("250ms", timedelta(milliseconds=250)),
    ("2m", timedelta(minutes=2)),
    ("1h30m", timedelta(hours=1, minutes=30)),
    ("1.5h", timedelta(hours=1, minutes=30)),
    (".5s", timedelta(milliseconds=500)),
    ("1.s", timedelta(seconds=1)),
    ("-2s", timedelta(seconds=-2)),
    ("+1m", timedelta(minutes=1)),
    ("3us", timedelta(microseconds=3)),
    ("3µs", timedelta(microseconds=3)),
    ("1500ns", timedelta(microseconds=1.5)),
    ("24h", timedelta(days=1)),
])
def test_go_durations(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize(("text", "message"), [
    ("", 'time: invalid duration ""'),
    ("1", 'time: missing unit in duration "1"'),
    ("1d", 'time: unknown unit "d" in duration "1d"'),
    ("s", 'time: invalid duration "s"'),
    (".s", 'time: invalid duration ".s"'),
    ("1h 30m", 'time: unknown unit "h " in duration "1h 30m"'),
    ("-", 'time: invalid duration "-"'),
    ("3000000h", 'time: invalid duration "3000000h"'),
])
def test_bad_go_durations(text, message):
    with pytest.raises(ValueError) as info:
        parse_duration(text)
    assert str(info.value) == message


@pytest.mark.parametrize("spec", ["* * * * *", "0 9 * * 1", "*/5 0-6 1,15 1-12/2 7", "59 23 31 12 0", "5/10 * * * *"])
def test_valid_cron(spec):
    validate_cron(spec)


@pytest.mark.parametrize(("spec", "message"), [
    ("* * * * * *", 'invalid cron schedule "* * * * * *": expected 5 fields'),
    ("60 * * * *", "invalid minute field: value 60 out of range [0,59]"),
    ("* * 0 * *", "invalid day-of-month field: value 0 out of range [1,31]"),
    ("* * * JAN *", 'invalid month field: invalid value "JAN"'),
    ("* * * * 8", "invalid day-of-week field: value 8 out of range [0,6]"),
    ("*/0 * * * *", 'invalid minute field: invalid step value in "*/0"'),
    ("5-1 * * * *", 'invalid minute field: invalid range "5-1"'),
    ("1,,2 * * * *", "invalid minute field: invalid list segment"),
    ("/5 * * * *", 'invalid minute field: invalid step base in "/5"'),
])
def test_invalid_cron(spec, message):
    with pytest.raises(ValueError) as info:
        validate_cron(spec)
    assert str(info.value) == message

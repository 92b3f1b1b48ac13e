"""Each deliberate difference from upstream listed in docs/compatibility.md, asserted."""

from __future__ import annotations

import json

import pytest

from orloj_ray.errors import InvalidResource
from orloj_ray.resources import load_text, normalize


def agent(spec: dict, **metadata) -> dict:
    return {"kind": "Agent", "metadata": {"name": "a", **metadata}, "spec": spec}


def test_1_spec_model_is_accepted_not_rejected():
    # upstream: 400 "spec.model has been removed; use spec.model_ref" (feature F004)
    spec = normalize(agent({"model": "gpt-4o"}))["spec"]
    assert spec["model"] == "gpt-4o" and "model_ref" not in spec


def test_1_model_ref_is_still_required_without_model():
    with pytest.raises(InvalidResource, match=r"^spec\.model_ref is required$"):
        normalize(agent({"prompt": "hi"}))


def test_2_agent_policy_extension_fields_round_trip_and_stay_out_when_empty():
    spec = {"apply_mode": "scoped", "target_agents": ["a", "A", " b "], "max_tokens_per_minute": 100,
            "require_approval": ["x:write", "X:WRITE"], "audit_log": True}
    out = normalize({"kind": "AgentPolicy", "metadata": {"name": "p"}, "spec": spec})["spec"]
    assert out == {"apply_mode": "scoped", "target_agents": ["a", "b"], "max_tokens_per_minute": 100,
                   "require_approval": ["x:write"], "audit_log": True}
    plain = normalize({"kind": "AgentPolicy", "metadata": {"name": "p"}, "spec": {"max_tokens_per_run": 5}})
    assert plain["spec"] == {"max_tokens_per_run": 5, "apply_mode": "scoped"}


def test_3_several_yaml_documents_are_several_resources():
    text = "kind: Worker\nmetadata: {name: w1}\n---\nkind: Worker\nmetadata: {name: w2}\n"
    assert [m.name for m in load_text(text)] == ["w1", "w2"]


def test_3_flow_style_and_comments():
    text = ("kind: Agent\nmetadata: {name: a}\nspec:\n  model_ref: m\n  tools: [web_search, vector_db]\n"
            "  limits:\n    max_steps: 3  # three steps\n")
    spec = load_text(text)[0].doc["spec"]
    assert spec["tools"] == ["web_search", "vector_db"] and spec["limits"]["max_steps"] == 3


def test_3_fields_upstream_yaml_skips_are_read():
    text = """\
kind: Tool
metadata:
  name: search
  annotations:
    owner: team-a
spec:
  description: Search the web.
  input_schema:
    type: object
    properties:
      q: {type: string}
"""
    out = load_text(text)[0].doc
    assert out["metadata"]["annotations"] == {"owner": "team-a"}
    assert out["spec"]["type"] == "http"  # upstream's reader takes input_schema's `type: object`
    assert out["spec"]["description"] == "Search the web."
    assert out["spec"]["input_schema"] == {"type": "object", "properties": {"q": {"type": "string"}}}
    allowed = load_text("kind: Agent\nmetadata: {name: a}\nspec:\n  model_ref: m\n  allowed_tools:\n    - t\n")
    assert allowed[0].doc["spec"]["allowed_tools"] == ["t"]


def test_3_blank_lines_in_a_block_prompt_are_kept():
    text = "kind: Agent\nmetadata: {name: a}\nspec:\n  model_ref: m\n  prompt: |\n    one\n\n    two\n"
    assert load_text(text)[0].doc["spec"]["prompt"] == "one\n\ntwo"


def test_3_yaml_scalars_read_as_text_like_upstream():
    text = "kind: Task\nmetadata: {name: t}\nspec:\n  input:\n    at: 12:30\n    zip: 01234\n    ok: yes\n" \
           "    version: 1.10\n    day: 2025-01-01\n"
    assert load_text(text)[0].doc["spec"]["input"] == {"at": "12:30", "zip": "01234", "ok": "yes",
                                                        "version": "1.10", "day": "2025-01-01"}


def test_4_camel_case_spellings_everywhere():
    spec = normalize(agent({"modelRef": "m", "limits": {"maxSteps": 3},
                            "execution": {"toolUseBehavior": "stop_on_first_tool"}}))["spec"]
    assert spec["model_ref"] == "m" and spec["limits"]["max_steps"] == 3
    assert spec["execution"]["tool_use_behavior"] == "stop_on_first_tool"
    tool = normalize({"kind": "Tool", "metadata": {"name": "t"},
                      "spec": {"riskLevel": "high", "auth": {"secret_ref": "s", "header_name": "X-Key",
                                                             "profile": "api_key_header"}}})["spec"]
    assert tool["risk_level"] == "high"
    assert tool["auth"] == {"profile": "api_key_header", "secretRef": "s", "headerName": "X-Key"}
    hook = normalize({"kind": "TaskWebhook", "metadata": {"name": "h"},
                      "spec": {"taskRef": "t", "auth": {"secretRef": "s"}}})["spec"]
    assert hook["task_ref"] == "t" and hook["auth"]["secret_ref"] == "s"


def test_4_scalars_in_json_like_upstream_yaml():
    body = json.dumps({"kind": "Task", "metadata": {"name": "t"}, "spec": {"system": 1, "max_turns": "2"}})
    spec = load_text(body)[0].doc["spec"]
    assert spec["system"] == "1" and spec["max_turns"] == 2


def test_5_kind_is_stored_in_canonical_spelling():
    assert normalize(agent({"model_ref": "m"}) | {"kind": "agent"})["kind"] == "Agent"


def test_5_prompt_trailing_newlines_dropped_for_json_too():
    assert normalize(agent({"model_ref": "m", "prompt": "Be brief.\n\n"}))["spec"]["prompt"] == "Be brief."


@pytest.mark.parametrize(("document", "field"), [
    (agent({"model_ref": "m", "limits": {"timeout": "20"}}), "spec.limits.timeout"),
    ({"kind": "McpServer", "metadata": {"name": "s"},
      "spec": {"transport": "stdio", "command": "npx", "reconnect": {"backoff": "soon"}}}, "spec.reconnect.backoff"),
])
def test_5_durations_checked_at_apply(document, field):
    with pytest.raises(InvalidResource) as info:
        normalize(document)
    assert info.value.field == field


def test_5_metadata_name_is_trimmed():
    assert normalize(agent({"model_ref": "m"}, name=" a "))["metadata"]["name"] == "a"


def test_5_unknown_status_keys_are_kept_and_empty_ones_dropped():
    out = normalize(agent({"model_ref": "m"}) | {"status": {"phase": "Ready", "custom": {"x": 1}, "lastError": ""}})
    assert out["status"] == {"phase": "Ready", "custom": {"x": 1}}


def test_a_list_item_ending_in_a_colon_is_the_string_upstreams_line_reader_reads():
    """``- AUTH_PATH:`` is a one-key map to YAML; upstream reads the string ``AUTH_PATH:``."""
    import yaml

    from orloj_ray.resources import normalize

    doc = yaml.safe_load("apiVersion: orloj.dev/v1\nkind: Agent\nmetadata: {name: a}\nspec:\n  model_ref: m\n"
                         "  execution:\n    profile: contract\n    tool_sequence: [t]\n"
                         "    required_output_markers:\n      - AUTH_PATH:\n      - DONE\n")
    assert normalize(doc)["spec"]["execution"]["required_output_markers"] == ["AUTH_PATH:", "DONE"]

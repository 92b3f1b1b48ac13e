"""Input that cannot break anything (issue 15, point 3) and validation that helps (issue 17,
point 4): names, ranges, enums, endpoints, every problem at once, unknown fields, and
documents that are too deep, too large or expand too much."""

from __future__ import annotations

import json
import time
import tracemalloc

import pytest

from orloj_ray.errors import InvalidResource
from orloj_ray.resources import ManifestError, ManifestErrors, check, load_path, load_text, normalize, parse_document
from orloj_ray.resources.endpoints import MEMORY_PROVIDERS, MODEL_PROVIDERS
from orloj_ray.resources.manifest import MAX_DEPTH, DocumentError


def refused(doc: dict, kind: str | None = None) -> InvalidResource:
    with pytest.raises(InvalidResource) as info:
        normalize(doc, kind=kind)
    return info.value


def agent(**spec) -> dict:
    return {"kind": "Agent", "metadata": {"name": "a"}, "spec": {"model_ref": "m", **spec}}


@pytest.mark.parametrize("name", ["../../etc/passwd", "a/b", "..", ".", "<script>alert(1)</script>", "a b",
                                  "-a", "a-", "a..b", "a\nb", "%2F", "é", "a" * 254])
def test_names_that_cannot_be_put_in_a_path_are_refused(name):
    err = refused({"kind": "Tool", "metadata": {"name": name}})
    assert err.field == "metadata.name"
    assert err.message.startswith("invalid metadata.name")


@pytest.mark.parametrize("name", ["web_search", "vector_db", "MyAgent", "a", "a.b-c_d", "srv--readFile", "a" * 253])
def test_names_upstream_and_mcp_use_are_accepted(name):
    assert normalize({"kind": "Tool", "metadata": {"name": name}})["metadata"]["name"] == name


def test_namespaces_are_checked_too():
    err = refused({"kind": "Tool", "metadata": {"name": "t", "namespace": "../x"}})
    assert err.field == "metadata.namespace"
    assert refused({"kind": "Tool", "metadata": {"name": "t", "namespace": "n" * 64}}).field == "metadata.namespace"


def test_a_watchable_kind_cannot_be_named_watch():
    assert "watch stream" in refused(agent() | {"metadata": {"name": "watch"}}).message
    assert normalize({"kind": "Tool", "metadata": {"name": "watch"}})["metadata"]["name"] == "watch"


@pytest.mark.parametrize("doc,field,message", [
    ({**agent(), "apiVersion": "evil.example/v9"}, "apiVersion",
     'unsupported apiVersion "evil.example/v9": expected orloj.dev/v1'),
    (agent(limits={"max_steps": -1}), "spec.limits.max_steps", "invalid spec.limits.max_steps -1: expected >= 0"),
    (agent(limits={"max_steps": 1e308}), "spec.limits.max_steps",
     "invalid spec.limits.max_steps a number of 309 digits: expected <= 1000"),
    (agent(limits={"max_steps": "1e308"}), "spec.limits.max_steps",
     "spec.limits.max_steps: expected an integer, got '1e308'"),
    (agent(replicas=1000000), "spec.replicas", "invalid spec.replicas 1000000: expected <= 100"),
    (agent(limits={"timeout": "-5s"}), "spec.limits.timeout",
     'invalid spec.limits.timeout "-5s": expected a duration greater than 0'),
    ({"kind": "AgentPolicy", "metadata": {"name": "p"}, "spec": {"max_tokens_per_run": -10}},
     "spec.max_tokens_per_run", "invalid spec.max_tokens_per_run -10: expected >= 0"),
    ({"kind": "Task", "metadata": {"name": "t"}, "spec": {"retry": {"max_attempts": -1}}},
     "spec.retry.max_attempts", "invalid spec.retry.max_attempts -1: expected >= 0"),
    ({"kind": "Task", "metadata": {"name": "t"}, "spec": {"message_retry": {"max_attempts": 10**12}}},
     "spec.message_retry.max_attempts", "invalid spec.message_retry.max_attempts 1000000000000: expected <= 100"),
    ({"kind": "Task", "metadata": {"name": "t"}, "spec": {"priority": "urgent"}}, "spec.priority",
     'invalid spec.priority "urgent": expected low, normal, high, or critical'),
    ({"kind": "Tool", "metadata": {"name": "t"}, "spec": {"runtime": {"timeout": "-1s"}}}, "spec.runtime.timeout",
     'invalid spec.runtime.timeout "-1s": expected a duration greater than 0'),
    ({"kind": "Tool", "metadata": {"name": "t"}, "spec": {"runtime": {"retry": {"max_attempts": 1e9}}}},
     "spec.runtime.retry.max_attempts", "invalid spec.runtime.retry.max_attempts 1000000000: expected <= 100"),
    ({"kind": "Tool", "metadata": {"name": "t"}, "spec": {"runtime": {"retry": {"backoff": "-1s"}}}},
     "spec.runtime.retry.backoff", 'invalid spec.runtime.retry.backoff "-1s": expected a duration of 0 or more'),
    ({"kind": "Tool", "metadata": {"name": "t"}, "spec": {"endpoint": "file:/etc/passwd"}}, "spec.endpoint",
     'invalid spec.endpoint "file:/etc/passwd": file: names a WebAssembly module (file:/abs/path/module.wasm) '
     "of a wasm tool only"),
    ({"kind": "Tool", "metadata": {"name": "t"}, "spec": {"endpoint": "not a url"}}, "spec.endpoint",
     'invalid spec.endpoint "not a url": expected an http:// or https:// URL with a host'),
    ({"kind": "Tool", "metadata": {"name": "t"}, "spec": {"endpoint": "gopher://x/"}}, "spec.endpoint",
     'invalid spec.endpoint "gopher://x/": expected an http:// or https:// URL with a host'),
    ({"kind": "Tool", "metadata": {"name": "t"}, "spec": {"endpoint": "exec:/bin/sh"}}, "spec.endpoint",
     'invalid spec.endpoint "exec:/bin/sh": exec:<program> runs only in a sandbox '
     "(spec.runtime.isolation_mode sandboxed or container)"),
    ({"kind": "ModelEndpoint", "metadata": {"name": "m"},
      "spec": {"default_model": "x", "options": {"timeout": "-30s"}}}, "spec.options.timeout",
     'invalid spec.options.timeout "-30s": expected a duration greater than 0'),
    ({"kind": "ModelEndpoint", "metadata": {"name": "m"},
      "spec": {"default_model": "x", "options": {"max_retries": "1000000000"}}}, "spec.options.max_retries",
     'invalid spec.options.max_retries "1000000000": expected an integer from 0 to 10'),
    ({"kind": "ModelEndpoint", "metadata": {"name": "m"}, "spec": {"default_model": "x", "provider": "bedrock"}},
     "spec.provider", 'unsupported spec.provider "bedrock": expected openai, openai-compatible, anthropic, '
                      "azure-openai, ollama, or mock"),
    ({"kind": "ModelEndpoint", "metadata": {"name": "m"}, "spec": {"default_model": "x", "base_url": "file:/x"}},
     "spec.base_url", 'invalid spec.base_url "file:/x": expected an http:// or https:// URL with a host'),
    ({"kind": "Memory", "metadata": {"name": "m"}, "spec": {"provider": "openai"}}, "spec.provider",
     'unsupported spec.provider "openai": expected in-memory (alias memory) or pgvector'),
    ({"kind": "TaskSchedule", "metadata": {"name": "s"},
      "spec": {"task_ref": "t", "schedule": "* * * * *", "starting_deadline_seconds": -1}},
     "spec.starting_deadline_seconds", "invalid spec.starting_deadline_seconds -1: expected >= 0"),
    ({"kind": "TaskSchedule", "metadata": {"name": "s"},
      "spec": {"task_ref": "t", "schedule": "* * * * *", "time_zone": "x" * 5000}}, "spec.time_zone",
     f'invalid spec.time_zone "{"x" * 40}...": unknown time zone {"x" * 40}...'),
    ({"kind": "TaskSchedule", "metadata": {"name": "s"},
      "spec": {"task_ref": "t", "schedule": "* * * * *", "time_zone": "../../../../etc/passwd"}}, "spec.time_zone",
     'invalid spec.time_zone "../../../../etc/passwd": unknown time zone ../../../../etc/passwd'),
    ({"kind": "Secret", "metadata": {"name": "s"}, "spec": {"data": {"k": "héllo=="}}}, "spec.data.k",
     "spec.data.k must be valid base64"),
    ({"kind": "McpServer", "metadata": {"name": "s"}, "spec": {"transport": "http", "endpoint": "ftp://x"}},
     "spec.endpoint", 'invalid spec.endpoint "ftp://x": expected an http:// or https:// URL with a host'),
    ({"kind": "Worker", "metadata": {"name": "w"}, "spec": {"max_concurrent_tasks": -3}},
     "spec.max_concurrent_tasks", "invalid spec.max_concurrent_tasks -3: expected >= 0"),
])
def test_out_of_range_and_unknown_values_are_refused_naming_the_field(doc, field, message):
    err = refused(doc)
    assert (err.field, err.message) == (field, message)


@pytest.mark.parametrize("spec", [
    {"type": "wasm", "endpoint": "file:/opt/tools/echo.wasm"},
    {"endpoint": "exec:/usr/bin/tool --flag", "runtime": {"isolation_mode": "sandboxed"}},
    {"type": "grpc", "endpoint": "tools.internal:50051"},
    {"endpoint": "http://127.0.0.1:8080/call"},
    {"type": "mcp", "mcp_server_ref": "s", "mcp_tool_name": "t"},
])
def test_tool_endpoints_each_runner_reads_are_accepted(spec):
    normalize({"kind": "Tool", "metadata": {"name": "t"}, "spec": spec})


def test_provider_lists_match_what_the_gateway_and_memory_serve():
    from orloj_ray.gateway import PROVIDER_ALIASES, PROVIDERS
    from orloj_ray.memory.base import PROVIDER_ALIASES as MEMORY_ALIASES

    assert set(MODEL_PROVIDERS) == set(PROVIDERS) | set(PROVIDER_ALIASES)
    assert set(MEMORY_PROVIDERS) == set(MEMORY_ALIASES) - {""}


def test_every_problem_of_a_document_is_reported_at_once():
    err = refused({"kind": "Agent", "metadata": {"name": "a/b"},
                   "spec": {"modle_ref": "m", "limits": {"max_steps": "ten"}, "replicas": -1,
                            "execution": {"profile": "fast"}}})
    assert [(p["field"], p.get("severity", "error")) for p in err.problems] == [
        ("spec.limits.max_steps", "error"), ("spec.replicas", "error"), ("metadata.name", "error"),
        ("spec.model_ref", "error"), ("spec.execution.profile", "error"), ("spec.modle_ref", "warning")]
    assert err.problems[-1]["message"] == 'spec.modle_ref: unknown field, ignored (did you mean "model_ref"?)'
    assert err.message.count(";") == 5
    body = err.to_dict()["error"]
    assert body["field"] == "spec.limits.max_steps" and len(body["details"]) == 6


def test_a_value_refused_by_type_does_not_also_report_it_missing():
    err = refused({"kind": "Agent", "metadata": {"name": "a"}, "spec": {"modelRef": ["m"]}})
    assert [p["message"] for p in err.problems] == ["spec.modelRef: expected a string, got a list"]


def test_unknown_fields_are_warnings_with_a_suggestion():
    _, warnings = check({"kind": "Agent", "metadata": {"name": "a", "lables": {}},
                         "spec": {"model_ref": "m", "promt": "hello", "tools": [{"name": "t", "permisions": []}],
                                  "limits": {"max_step": 3}}, "sepc": {}})
    assert [(w["field"], w["message"]) for w in warnings] == [
        ("metadata.lables", 'metadata.lables: unknown field, ignored (did you mean "labels"?)'),
        ("spec.promt", 'spec.promt: unknown field, ignored (did you mean "prompt"?)'),
        ("spec.tools[0].permisions", 'spec.tools[0].permisions: unknown field, ignored (did you mean "permissions"?)'),
        ("spec.limits.max_step", 'spec.limits.max_step: unknown field, ignored (did you mean "max_steps"?)'),
        ("sepc", 'sepc: unknown field, ignored (did you mean "spec"?)'),
    ]


def test_strict_makes_unknown_fields_errors():
    with pytest.raises(InvalidResource) as info:
        check(agent(promt="x"), strict=True)
    assert info.value.message == 'spec.promt: unknown field (did you mean "prompt"?)'
    # camelCase spellings and free-form maps are not unknown
    check(agent(modelRef="m", limits={"maxSteps": 3}, prompt="p") | {"status": {"anything": 1}}, strict=True)
    check({"kind": "Tool", "metadata": {"name": "t"}, "spec": {"input_schema": {"whatever": {"deep": 1}},
                                                                 "auth": {"secret_ref": "s"}}}, strict=True)


def test_upstream_examples_give_no_warnings():
    manifests = load_path("tests/conformance/upstream-examples", strict=True)
    assert len(manifests) == 98 and not [m for m in manifests if m.warnings]


def test_a_schedule_that_never_fires_is_a_warning():
    doc = {"kind": "TaskSchedule", "metadata": {"name": "s"}, "spec": {"task_ref": "t", "schedule": "30 2 30 2 *"}}
    _, warnings = check(doc)
    assert warnings == [{"field": "spec.schedule", "message": 'spec.schedule "30 2 30 2 *" never fires: no month '
                                                              "has the days of month it names"}]
    for fires in ("30 2 29 2 *", "0 0 31 1-3 *", "0 0 30 2 1", "0 0 */15 2 *", "0 0 31 4,5 *"):
        assert check({**doc, "spec": {**doc["spec"], "schedule": fires}})[1] == [], fires
    assert check({**doc, "spec": {**doc["spec"], "schedule": "0 0 31 4,6,9 *"}})[1]


def test_manifest_files_report_warnings_and_every_error(tmp_path):
    (tmp_path / "a.yaml").write_text("kind: Agent\nmetadata: {name: a}\nspec: {model_ref: m, promt: x}\n")
    (manifest,) = load_path(tmp_path / "a.yaml")
    assert manifest.warnings[0]["field"] == "spec.promt"
    (tmp_path / "b.yaml").write_text("kind: Agent\nmetadata: {name: b}\nspec: {replicas: -1, limits: {max_steps: -1}}\n")
    with pytest.raises(ManifestErrors) as info:
        load_path(tmp_path)
    assert [str(e) for e in info.value.errors] == [
        f"{tmp_path / 'b.yaml'}: document 1: spec.limits.max_steps: invalid spec.limits.max_steps -1: expected >= 0",
        f"{tmp_path / 'b.yaml'}: document 1: spec.replicas: invalid spec.replicas -1: expected >= 0",
        f"{tmp_path / 'b.yaml'}: document 1: spec.model_ref is required",
    ]
    with pytest.raises(ManifestErrors, match="unknown field"):
        load_path(tmp_path / "a.yaml", strict=True)


def billion_laughs(depth: int = 7) -> str:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, cur in zip("abcdefghij", "bcdefghijk"[: depth]):
        lines.append(f"{cur}: &{cur} [" + ",".join([f"*{prev}"] * 9) + "]")
    return "kind: Agent\nmetadata: {name: x}\nspec:\n  model_ref: m\n  extra:\n" + "\n".join(
        "    " + line for line in lines) + "\n"


def test_a_yaml_bomb_is_refused_fast_in_bounded_memory():
    text = billion_laughs(7)
    tracemalloc.start()
    started = time.monotonic()
    with pytest.raises(ManifestError, match="aliases expand the document to 5.* nodes"):
        load_text(text)
    elapsed = time.monotonic() - started
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert elapsed < 1 and peak < 5_000_000, (elapsed, peak)


def test_a_few_aliases_are_still_fine():
    text = ("kind: Tool\nmetadata: {name: t, labels: &l {team: a}}\n"
            "spec: {type: http, runtime: {retry: &r {max_attempts: 2}}, auth: {scopes: [a, b]}}\n")
    assert normalize(parse_document(text))["metadata"]["labels"] == {"team": "a"}


@pytest.mark.parametrize("text", [
    "[" * 10_000 + "]" * 10_000,
    '{"a":' * 10_000 + "1" + "}" * 10_000,
    "a: " + "[" * 10_000 + "]" * 10_000,
    "a:\n" + "".join(" " * i + "- \n" for i in range(1, 200)),
    '{"spec": ' + "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1) + "}",
])
def test_deep_nesting_is_refused_without_recursion_errors(text):
    with pytest.raises(DocumentError, match=f"nested deeper than {MAX_DEPTH} levels"):
        parse_document(text)
    with pytest.raises(ManifestError, match="nested deeper"):
        load_text(text)


@pytest.mark.parametrize("text,problem", [
    ('{"a": NaN}', "NaN is not a number JSON allows"),
    ('{"a": 1e400}', "1e400 is too large a number"),
    ('{"a": ' + "9" * 5000 + "}", "a number has more than 4300 digits"),
    ("a: " + "9" * 5000, "a number has more than 4300 digits"),
    ("a: !!binary aGVsbG8=", "unsupported YAML tag"),
    ("a: !!python/object/apply:os.system [id]", "unsupported YAML tag"),
    ("a: !!float .inf", "is not a finite number"),
])
def test_values_json_cannot_hold_are_refused(text, problem):
    with pytest.raises(DocumentError, match=problem):
        parse_document(text)


def test_yaml_reads_as_the_cli_does():
    # YAML 1.2 core scalars on the server too: no dates, no yes/no booleans, no octals
    assert parse_document("a: 2001-12-14\nb: yes\nc: 010\nd: 1.5\n1: x\n") == {
        "a": "2001-12-14", "b": "yes", "c": "010", "d": "1.5", "1": "x"}
    assert json.dumps(parse_document("a: [1, {b: null}]")) == '{"a": [1, {"b": null}]}'

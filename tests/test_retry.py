"""Retry policies, schedules, classification and decisions (orloj_ray.retry).

Expected delays are recomputed here from upstream's formulas (execution.md §8,
``computeMessageRetryDelay`` / ``computeToolRetryDelay``) with this file's own FNV-1a, itself
checked against the published FNV test vectors.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orloj_ray.retry import (
    GOVERNANCE_CODES,
    MESSAGE_MAX_BACKOFF_S,
    NEVER_RETRY_CODES,
    TOOL_MAX_BACKOFF_S,
    Classification,
    Outcome,
    RetryPolicy,
    classify,
    decide,
    delay,
    delay_ns,
    go_duration,
    jitter_unit,
)
from orloj_ray.engine.turn import TurnResult
from orloj_ray.errors import InvalidResource, NotFound, OrlojError, Unavailable
from orloj_ray.gateway import ModelError
from orloj_ray.resources import normalize
from orloj_ray.tools import ToolError

NS, MS = 1_000_000_000, 1_000_000
KEY = "Default/Report-Task/a001/h002/b001/Writer-Agent"


# -- an independent FNV-1a ------------------------------------------------------------------

def fnv1a(data: bytes, bits: int) -> int:
    offset, prime = {64: (14695981039346656037, 1099511628211), 32: (2166136261, 16777619)}[bits]
    value = offset
    for byte in data:
        value = ((value ^ byte) * prime) % (1 << bits)
    return value


def test_reference_fnv_matches_published_vectors():
    assert fnv1a(b"", 64) == 0xCBF29CE484222325
    assert fnv1a(b"a", 64) == 0xAF63DC4C8601EC8C
    assert fnv1a(b"foobar", 64) == 0x85944171F73967E8
    assert fnv1a(b"", 32) == 0x811C9DC5
    assert fnv1a(b"a", 32) == 0xE40C292C
    assert fnv1a(b"foobar", 32) == 0xBF9CF968


def message_u(key: str, attempts: int) -> float:
    return (fnv1a(f"{key.strip().lower()}|{attempts}".encode(), 64) % 1_000_000) / 1_000_000


def tool_u(tool: str, attempts: int) -> float:
    return (fnv1a(f"{tool.strip()}:{attempts}".encode(), 32) % 10_000) / 10_000


def task(spec: dict) -> dict:
    return normalize({"apiVersion": "orloj.dev/v1", "kind": "Task", "metadata": {"name": "t"},
                      "spec": {"system": "s", **spec}})


def tool(runtime: dict) -> dict:
    return normalize({"apiVersion": "orloj.dev/v1", "kind": "Tool", "metadata": {"name": "web_search"},
                      "spec": {"endpoint": "http://tool.local", "runtime": runtime}})


# -- policies from specs --------------------------------------------------------------------

def test_bare_policy_is_upstreams_message_default():
    assert RetryPolicy() == RetryPolicy(max_attempts=1, backoff=0.0, max_backoff=24 * 3600.0, jitter="full",
                                        non_retryable=(), scope="message")


def test_defaults_from_an_empty_task():
    spec = task({})["spec"]
    assert RetryPolicy.for_task(spec) == RetryPolicy(1, 0.0, MESSAGE_MAX_BACKOFF_S, "none", (), "task")
    assert RetryPolicy.for_messages(spec) == RetryPolicy(1, 0.0, MESSAGE_MAX_BACKOFF_S, "full", (), "message")
    assert RetryPolicy.for_messages({}) == RetryPolicy.for_messages(spec)  # raw, unnormalized: same fallbacks
    assert RetryPolicy.for_task({}) == RetryPolicy.for_task(spec)


def test_message_retry_inherits_retry():
    retry = {"retry": {"max_attempts": 4, "backoff": "250ms"}}
    for spec in (task(retry)["spec"], retry):  # normalized, and the raw fallbacks
        policy = RetryPolicy.for_messages(spec)
        assert (policy.max_attempts, policy.backoff, policy.max_backoff, policy.jitter) == (4, 0.25, 86400.0, "full")
    assert RetryPolicy.for_task(retry) == RetryPolicy(4, 0.25, MESSAGE_MAX_BACKOFF_S, "none", (), "task")


def test_message_retry_overrides_retry():
    spec = task({"retry": {"max_attempts": 2, "backoff": "1s"},
                 "message_retry": {"max_attempts": 5, "backoff": "100ms", "max_backoff": "3s", "jitter": "Equal",
                                   "non_retryable": ["quota exceeded", "model_error"]}})
    assert RetryPolicy.for_messages(spec) == RetryPolicy(5, 0.1, 3.0, "equal", ("quota exceeded", "model_error"))
    assert RetryPolicy.for_task(spec).max_attempts == 2


def test_partial_message_retry_falls_back_field_by_field():
    raw = {"retry": {"max_attempts": 3, "backoff": "2s"}, "message_retry": {"max_attempts": 0, "jitter": "none"}}
    assert RetryPolicy.for_messages(raw) == RetryPolicy(3, 2.0, MESSAGE_MAX_BACKOFF_S, "none")
    raw = {"retry": {"max_attempts": 3}, "message_retry": {"backoff": "1s"}}
    assert RetryPolicy.for_messages(raw) == RetryPolicy(3, 1.0, MESSAGE_MAX_BACKOFF_S, "full")


def test_whole_resources_are_accepted():
    doc = task({"message_retry": {"max_attempts": 2}})
    assert RetryPolicy.for_messages(doc) == RetryPolicy.for_messages(doc["spec"])
    assert RetryPolicy.for_tool(tool({})) == RetryPolicy.for_tool(tool({})["spec"])


def test_non_positive_durations_mean_unset_as_upstream():
    raw = {"message_retry": {"backoff": "-5s", "max_backoff": "0s"}}
    assert RetryPolicy.for_messages(raw) == RetryPolicy(1, 0.0, MESSAGE_MAX_BACKOFF_S, "full")
    assert RetryPolicy.for_tool({"runtime": {"retry": {"max_backoff": "0s"}}}).max_backoff == TOOL_MAX_BACKOFF_S


def test_tool_defaults_and_values():
    assert RetryPolicy.for_tool(tool({})) == RetryPolicy(1, 0.0, TOOL_MAX_BACKOFF_S, "none", (), "tool")
    assert RetryPolicy.for_tool({}) == RetryPolicy.for_tool(tool({}))
    spec = tool({"retry": {"max_attempts": 3, "backoff": "250ms", "max_backoff": "2s", "jitter": "full"}})
    assert RetryPolicy.for_tool(spec) == RetryPolicy(3, 0.25, 2.0, "full", (), "tool")


# -- validation -----------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, field", [
    ({"max_attempts": 0}, "max_attempts"),
    ({"max_attempts": True}, "max_attempts"),
    ({"max_attempts": 2.0}, "max_attempts"),
    ({"backoff": -1}, "backoff"),
    ({"backoff": float("nan")}, "backoff"),
    ({"backoff": "1s"}, "backoff"),
    ({"max_backoff": 0}, "max_backoff"),
    ({"max_backoff": float("inf")}, "max_backoff"),
    ({"jitter": "random"}, "jitter"),
    ({"jitter": "FULL"}, "jitter"),
    ({"scope": "workflow"}, "scope"),
    ({"non_retryable": [1]}, "non_retryable"),
    ({"non_retryable": 5}, "non_retryable"),
])
def test_invalid_policy_names_the_field(kwargs, field):
    with pytest.raises(ValueError, match=rf"RetryPolicy\.{field}\b"):
        RetryPolicy(**kwargs)


def test_policy_is_frozen_and_normalizes_non_retryable():
    policy = RetryPolicy(non_retryable=["  quota ", "", "  "])
    assert policy.non_retryable == ("quota",)
    assert RetryPolicy(non_retryable="quota").non_retryable == ("quota",)
    with pytest.raises(dataclasses.FrozenInstanceError):
        policy.max_attempts = 3  # type: ignore[misc]


@pytest.mark.parametrize("build, spec, field", [
    (RetryPolicy.for_messages, {"message_retry": {"backoff": "soon"}}, "spec.message_retry.backoff"),
    (RetryPolicy.for_messages, {"retry": {"backoff": "1 s"}}, "spec.retry.backoff"),
    (RetryPolicy.for_messages, {"message_retry": {"max_backoff": "1d"}}, "spec.message_retry.max_backoff"),
    (RetryPolicy.for_messages, {"message_retry": {"jitter": "random"}}, "spec.message_retry.jitter"),
    (RetryPolicy.for_messages, {"message_retry": {"max_attempts": "many"}}, "spec.message_retry.max_attempts"),
    (RetryPolicy.for_messages, {"message_retry": {"non_retryable": "quota"}}, "spec.message_retry.non_retryable"),
    (RetryPolicy.for_task, {"retry": {"max_attempts": 2.5}}, "spec.retry.max_attempts"),
    (RetryPolicy.for_tool, {"runtime": {"retry": {"backoff": "x"}}}, "spec.runtime.retry.backoff"),
    (RetryPolicy.for_tool, {"runtime": {"retry": {"jitter": "some"}}}, "spec.runtime.retry.jitter"),
])
def test_invalid_spec_names_the_spec_field(build, spec, field):
    with pytest.raises(ValueError, match=field.replace(".", r"\.")):
        build(spec)


# -- message schedule -----------------------------------------------------------------------

def test_message_delays_match_upstream_formula_for_each_jitter_mode():
    base = {"max_attempts": 10, "backoff": 0.1, "max_backoff": 5.0}
    for attempts in range(1, 8):
        capped = min(100 * MS * 2 ** (attempts - 1), 5 * NS)
        u = message_u(KEY, attempts)
        expected = {
            "none": capped,
            "full": int(float(capped) * u) or MS,
            "equal": int(capped / 2 + capped / 2 * u) or MS,
        }
        for mode, ns in expected.items():
            policy = RetryPolicy(**base, jitter=mode)
            assert delay_ns(policy, attempts, KEY) == ns, (mode, attempts)
            assert delay(policy, attempts, KEY) == ns / NS


def test_jitter_units_pinned_values():
    # Pinned, so that a change of hash input (separator, case, attempt) is caught even if the
    # reference implementation above were changed the same way.
    assert [message_u(KEY, n) for n in (1, 2, 3)] == [0.712442, 0.084231, 0.45602]
    assert [jitter_unit(RetryPolicy(), n, KEY) for n in (1, 2, 3)] == [0.712442, 0.084231, 0.45602]
    assert [tool_u("web_search", n) for n in (1, 2, 3)] == [0.6923, 0.4542, 0.2161]
    assert [jitter_unit(RetryPolicy(scope="tool"), n, "web_search") for n in (1, 2, 3)] == [0.6923, 0.4542, 0.2161]
    # and so the message delays for backoff 100 ms, attempts 1..3: d = 100, 200, 400 ms
    policy = RetryPolicy(max_attempts=5, backoff=0.1, max_backoff=5.0, jitter="full")
    assert [delay_ns(policy, n, KEY) for n in (1, 2, 3)] == [71_244_200, 16_846_200, 182_408_000]
    policy = RetryPolicy(max_attempts=5, backoff=0.1, max_backoff=5.0, jitter="equal")
    assert [delay_ns(policy, n, KEY) for n in (1, 2, 3)] == [85_622_100, 108_423_100, 291_204_000]


def test_message_jitter_ignores_case_and_surrounding_space_of_the_key():
    policy = RetryPolicy(backoff=1.0, max_attempts=5)
    assert delay(policy, 2, KEY) == delay(policy, 2, f"  {KEY.upper()} ")


def test_upstream_test_vectors():
    # TestComputeMessageRetryDelayCappedAndJitterModes (runtime/agent_message_consumer_test.go)
    assert delay(RetryPolicy(backoff=0.05, max_backoff=0.12, jitter="none"), 3, "msg-delay") == 0.12
    full = delay(RetryPolicy(backoff=0.1, max_backoff=5, jitter="full"), 1, "msg-delay")
    assert 0 < full <= 0.1
    equal = delay(RetryPolicy(backoff=0.1, max_backoff=5, jitter="equal"), 1, "msg-delay")
    assert 0.05 <= equal <= 0.1


def test_zero_backoff_is_immediate_in_every_mode():
    for mode in ("none", "full", "equal"):
        for scope in ("task", "message", "tool"):
            assert delay(RetryPolicy(jitter=mode, scope=scope), 7, KEY) == 0.0


def test_a_jittered_delay_that_truncates_to_zero_becomes_one_millisecond():
    policy = RetryPolicy(backoff=1e-9, jitter="full")  # 1 ns × u < 1 ns
    assert delay_ns(policy, 1, KEY) == MS
    assert delay(RetryPolicy(backoff=1e-9, jitter="none"), 1, KEY) == 1e-9  # `none` is not floored
    assert delay_ns(RetryPolicy(backoff=1e-9, jitter="full", scope="tool"), 1, "t") == MS


def test_cap_and_exponent_cap():
    policy = RetryPolicy(backoff=1e-6, max_backoff=1e9, jitter="none")
    assert delay_ns(policy, 21, KEY) == 1_000 * 2**20
    assert delay_ns(policy, 500, KEY) == 1_000 * 2**20  # exponent stays at 20, no overflow
    for scope in ("task", "tool"):
        capped = RetryPolicy(backoff=1e-6, max_backoff=1e9, jitter="none", scope=scope)
        assert delay_ns(capped, 11, KEY) == delay_ns(capped, 40, KEY) == 1_000 * 2**10
    big = RetryPolicy(backoff=1.0, jitter="none")
    assert delay(big, 10_000, KEY) == MESSAGE_MAX_BACKOFF_S
    assert delay(RetryPolicy(backoff=10.0, max_backoff=3.0, jitter="none"), 1, KEY) == 3.0


def test_jitter_applies_to_the_capped_delay():
    policy = RetryPolicy(backoff=1.0, max_backoff=3.0, jitter="full")
    assert delay_ns(policy, 6, KEY) == int(3 * NS * message_u(KEY, 6))


def test_task_schedule_is_doubling_without_jitter():
    policy = RetryPolicy.for_task({"retry": {"max_attempts": 20, "backoff": "2s"}})
    assert [delay(policy, n) for n in (1, 2, 3, 4)] == [2.0, 4.0, 8.0, 16.0]
    assert delay(policy, 11) == delay(policy, 15) == 2.0 * 2**10


# -- tool schedule --------------------------------------------------------------------------

def test_tool_delays_match_upstream_formula():
    for attempts in range(1, 6):
        capped = min(250 * MS * 2 ** (attempts - 1), 2 * NS)
        f = tool_u("web_search", attempts)
        floor = int(float(capped) * 0.5)
        expected = {
            "none": capped,
            "full": int(float(capped) * f) or MS,
            "equal": floor + int(float(capped - floor) * f),
        }
        for mode, ns in expected.items():
            policy = RetryPolicy(backoff=0.25, max_backoff=2.0, jitter=mode, scope="tool")
            assert delay_ns(policy, attempts, "web_search") == ns, (mode, attempts)


def test_tool_jitter_unit_is_case_sensitive_like_upstream():
    policy = RetryPolicy(scope="tool")
    assert jitter_unit(policy, 1, " web_search ") == tool_u("web_search", 1)
    assert jitter_unit(policy, 1, "Web_Search") == tool_u("Web_Search", 1) != tool_u("web_search", 1)


# -- determinism ----------------------------------------------------------------------------

def test_schedule_is_the_same_in_a_fresh_process():
    policy = RetryPolicy(max_attempts=9, backoff=0.3, max_backoff=60, jitter="equal")
    here = [delay_ns(policy, n, KEY) for n in range(1, 9)]
    code = ("from orloj_ray.retry import RetryPolicy, delay_ns;"
            f"p = RetryPolicy(max_attempts=9, backoff=0.3, max_backoff=60, jitter='equal');"
            f"print([delay_ns(p, n, {KEY!r}) for n in range(1, 9)])")
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root,
                         env={**os.environ, "PYTHONHASHSEED": "12345"})
    assert out.stdout.strip() == str(here)


policies = st.builds(
    RetryPolicy,
    max_attempts=st.integers(1, 50),
    backoff=st.sampled_from([0.0, 1e-9, 0.001, 0.05, 0.25, 1.0, 7.5, 3600.0]),
    max_backoff=st.sampled_from([0.001, 0.12, 1.0, 30.0, 86400.0]),
    jitter=st.sampled_from(["none", "full", "equal"]),
    scope=st.sampled_from(["task", "message", "tool"]),
)


@settings(max_examples=300, derandomize=True, deadline=None, database=None)
@given(policy=policies, attempts=st.integers(1, 200), key=st.text(max_size=40))
def test_delay_properties(policy, attempts, key):
    ns = delay_ns(policy, attempts, key)
    assert ns == delay_ns(policy, attempts, key)  # deterministic
    base = round(policy.backoff * NS)
    if base == 0:
        assert ns == 0
        return
    capped = min(base * 2 ** min(attempts - 1, 20 if policy.scope == "message" else 10),
                 round(policy.max_backoff * NS))
    if policy.jitter == "none":
        assert ns == capped
    else:
        assert 0 < ns <= max(capped, MS)
        if policy.jitter == "equal":
            assert ns >= capped // 2


# -- classification -------------------------------------------------------------------------

@pytest.mark.parametrize("error, retryable, code, reason", [
    (OrlojError("boom"), False, "orloj.error", "orloj.error"),
    (Unavailable("store down"), True, "unavailable", "unavailable"),
    (NotFound("no such agent"), False, "not_found", "not_found"),
    (InvalidResource("bad"), False, "invalid", "invalid"),
    (ModelError("HTTP 503", retryable=True), True, "model_error", "model_error"),
    (ModelError("HTTP 400", retryable=False), False, "model_error", "model_error"),
    (ModelError("rate limited", retryable=True, code="model_gateway_http_429"), True,
     "model_gateway_http_429", "model_gateway_http_429"),
    (ToolError("HTTP 502", retryable=True), True, "execution_failed", "tool_backend_failure"),
    (ToolError("HTTP 404"), False, "execution_failed", "tool_backend_failure"),
    (ToolError("slow", code="timeout", retryable=True), True, "timeout", "tool_execution_timeout"),
    (ToolError("no secret", code="secret_resolution_failed"), False, "secret_resolution_failed",
     "tool_secret_resolution_failed"),
    (asyncio.TimeoutError(), True, "timeout", "timeout"),
    (TimeoutError("read timed out"), True, "timeout", "timeout"),
    (asyncio.CancelledError(), False, "canceled", "canceled"),
    (ConnectionRefusedError("refused"), True, "transient", "transient"),
    (ConnectionResetError("reset"), True, "transient", "transient"),
    (OSError(101, "Network is unreachable"), True, "transient", "transient"),
    (FileNotFoundError("prompt.txt"), False, "internal_error", "internal_error"),
    (PermissionError("read-only"), False, "internal_error", "internal_error"),
    (KeyError("x"), False, "internal_error", "internal_error"),
    (RuntimeError("bug"), False, "internal_error", "internal_error"),
])
def test_classify_exceptions_by_type_and_code(error, retryable, code, reason):
    c = classify(error)
    assert (c.retryable, c.code, c.reason) == (retryable, code, reason)
    assert c.message


def test_classify_does_not_read_the_text():
    assert classify(RuntimeError("temporary connection reset, retryable=true")).retryable is False
    assert classify(Unavailable("policy permission denied")).retryable is True


def test_classify_turn_results():
    timed_out = TurnResult(agent="a", model="m", error_code="agent_timeout", error="agent a timed out after 5s",
                           retryable=True)
    assert classify(timed_out) == Classification(True, "agent_timeout", "agent_timeout", "agent a timed out after 5s")
    failed = TurnResult(agent="a", model="m", error_code="model_error", error="agent a model execution failed: x")
    assert classify(failed).retryable is False
    with pytest.raises(ValueError, match="no error_code"):
        classify(TurnResult(agent="a", model="m"))
    with pytest.raises(TypeError):
        classify("connection reset")  # type: ignore[arg-type]


BRIEF_GOVERNANCE = ["tool_permission_denied", "model_not_allowed", "tool_blocked", "token_budget_exceeded",
                    "approval_denied", "approval_expired", "task_invalid", "unsupported_tool",
                    "runtime_policy_invalid", "isolation_unavailable"]


@pytest.mark.parametrize("code", sorted(set(BRIEF_GOVERNANCE) | NEVER_RETRY_CODES))
def test_governance_and_invalid_codes_are_never_retried(code):
    errors = [
        ToolError("x", code=code, retryable=True),
        ModelError("x", code=code, retryable=True),
        Unavailable("x", code=code),
        TurnResult(agent="a", model="m", error_code=code, error="x", retryable=True),
        TurnResult(agent="a", model="m", error_code=code.upper(), error="x", retryable=True),
    ]
    for error in errors:
        assert classify(error).retryable is False, error
        outcome = decide(RetryPolicy(max_attempts=10, backoff=1.0), 1, error, KEY)
        assert outcome.final and outcome.phase == "DeadLetter" and not outcome.exhausted


def test_governance_reasons_follow_upstream():
    assert classify(ModelError("x", code="model_not_allowed")).reason == "policy_error"
    budget = TurnResult(agent="a", model="m", error_code="token_budget_exceeded", error="x")
    assert classify(budget).reason == "policy_error"
    assert classify(TurnResult(agent="a", model="m", error_code="tool_permission_denied", error="x")).reason == \
        "tool_permission_denied"
    assert classify(ToolError("denied", code="permission_denied", retryable=True)).reason == "tool_permission_denied"
    assert classify(ToolError("x", code="unsupported_tool")).reason == "tool_unsupported"
    assert classify(TurnResult(agent="a", model="m", error_code="task_invalid", error="x")).reason == "task_invalid"
    assert "permission_denied" in GOVERNANCE_CODES


def test_non_retryable_by_code_and_by_substring():
    flaky = ModelError("upstream said: Quota Exceeded for project", retryable=True)
    assert classify(flaky).retryable is True
    by_code = classify(flaky, ["model_error"])
    assert (by_code.retryable, by_code.reason) == (False, "configured_non_retryable")
    assert classify(flaky, ["MODEL_ERROR"]).retryable is False
    assert classify(flaky, ["quota exceeded"]) == Classification(False, "model_error", "configured_non_retryable",
                                                                  flaky.message)
    assert classify(flaky, "quota").retryable is False  # a lone string is one entry, not characters
    assert classify(flaky, ["", "  "]).retryable is True
    assert classify(flaky, ["model_err"]).retryable is True  # codes match exactly, only the text by substring
    assert classify(ToolError("HTTP 503", retryable=True), ["execution_failed"]).retryable is False
    assert classify(TimeoutError("deadline"), ["timeout"]).retryable is False


# -- decisions ------------------------------------------------------------------------------

def test_decide_retries_until_the_last_attempt():
    policy = RetryPolicy(max_attempts=3, backoff=0.5, max_backoff=60, jitter="full")
    error = ToolError("HTTP 503", retryable=True)
    first, second, last = (decide(policy, n, error, KEY) for n in (1, 2, 3))
    for n, outcome in ((1, first), (2, second)):
        assert not outcome.final and outcome.phase == "RetryPending"
        assert outcome.delay_s == delay(policy, n, KEY) > 0
        assert (outcome.attempts, outcome.max_attempts) == (n, 3)
    assert last.final and last.phase == "DeadLetter" and last.delay_s == 0.0 and last.exhausted
    assert (last.code, last.reason, last.error) == ("execution_failed", "tool_backend_failure", "HTTP 503")
    assert decide(policy, 4, error, KEY).phase == "DeadLetter"
    text = f"message m1 dead-lettered after {last.attempts} attempts: {last.error}"
    assert text == "message m1 dead-lettered after 3 attempts: HTTP 503"


def test_decide_single_attempt_and_non_retryable():
    error = ToolError("HTTP 503", retryable=True)
    assert decide(RetryPolicy(), 1, error, KEY).phase == "DeadLetter"
    outcome = decide(RetryPolicy(max_attempts=5, backoff=1), 1, RuntimeError("bug"), KEY)
    assert outcome == Outcome(final=True, delay_s=0.0, code="internal_error", reason="internal_error",
                              phase="DeadLetter", retryable=False, attempts=1, max_attempts=5, error="bug")
    assert not outcome.exhausted
    configured = decide(RetryPolicy(max_attempts=5, non_retryable=("quota",)), 1,
                        ModelError("quota hit", retryable=True), KEY)
    assert configured.final and configured.reason == "configured_non_retryable"


def test_decide_at_task_level_fails_permanent_errors_and_dead_letters_exhausted_ones():
    policy = RetryPolicy.for_task({"retry": {"max_attempts": 2, "backoff": "1s"}})
    assert decide(policy, 1, TimeoutError()).delay_s == 1.0
    assert decide(policy, 2, TimeoutError()).phase == "DeadLetter"
    assert decide(policy, 1, ModelError("x", code="model_not_allowed")).phase == "Failed"


def test_decide_tool_level_uses_the_tool_schedule():
    policy = RetryPolicy.for_tool({"runtime": {"retry": {"max_attempts": 3, "backoff": "100ms", "jitter": "equal"}}})
    outcome = decide(policy, 2, ToolError("slow", code="timeout", retryable=True), "web_search")
    assert outcome.delay_s == delay(policy, 2, "web_search")
    assert delay_ns(policy, 2, "web_search") == 100 * MS + int(100 * MS * tool_u("web_search", 2))


@pytest.mark.parametrize("attempts", [0, -1, True, 1.0])
def test_attempts_must_count_the_failed_try(attempts):
    with pytest.raises(ValueError, match="attempts"):
        decide(RetryPolicy(), attempts, TimeoutError(), KEY)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="attempts"):
        delay(RetryPolicy(backoff=1), attempts, KEY)  # type: ignore[arg-type]


def test_outcome_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        decide(RetryPolicy(), 1, TimeoutError()).final = False  # type: ignore[misc]


@pytest.mark.parametrize("seconds, text", [
    (0, "0s"), (5e-7, "500ns"), (1.5e-6, "1.5µs"), (0.001, "1ms"), (0.25, "250ms"), (0.1703, "170.3ms"),
    (1, "1s"), (1.5, "1.5s"), (90, "1m30s"), (3600, "1h0m0s"), (86400, "24h0m0s"), (3723.25, "1h2m3.25s"),
    (-2, "-2s"),
])
def test_go_duration(seconds, text):
    assert go_duration(seconds) == text


def test_backoff_doubles_to_its_cap_and_starts_over_after_a_reset():
    from orloj_ray.retry import Backoff

    b = Backoff(0.5, 3.0)
    assert [b.next() for _ in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    b.reset()
    assert b.next() == 0.5
    assert Backoff(0.5, 10.0, attempt=2).next() == 2.0  # resuming at a known attempt

"""Real model providers over HTTP against fake provider servers on 127.0.0.1.

Each provider runs a whole two-agent task in-process (Controller + LocalAgentRuntime over a
MemoryStore): the researcher's model asks for a tool, the tool (a loopback HTTP server)
answers, the result goes back to the model, whose final text is handed to the writer, whose
text is the task's output. The fake servers record every request, which is checked field by
field against the provider's wire format. Then retries, Retry-After, timeouts and error codes.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from email.utils import formatdate

import httpx
import pytest

from fake_model_servers import (
    FakeServer,
    Recorded,
    Reply,
    anthropic_error,
    anthropic_text,
    anthropic_tool_use,
    echo_tool,
    ollama_text,
    ollama_tool_call,
    openai_error,
    openai_text,
    openai_tool_call,
    scripted,
)
from orloj_ray.engine.controller import Controller
from orloj_ray.engine.resolve import resolve_endpoint
from orloj_ray.engine.runtime import LocalAgentRuntime
from orloj_ray.engine.turn import TurnRequest, run_turn
from orloj_ray.gateway import (
    AnthropicProvider,
    CompletionRequest,
    Endpoint,
    HttpSettings,
    Message,
    ModelError,
    ModelGateway,
    OpenAIProvider,
    ToolSpec,
    canonical_provider,
    default_gateway,
    env_api_key,
)
from orloj_ray.gateway.http import retry_after_seconds
from orloj_ray.gateway.toolnames import sanitize_tool_name
from orloj_ray.resources import load_text
from orloj_ray.store import MemoryStore
from orloj_ray.tools import EgressGuard, HttpToolRunner

KEY = "sk-test-0123456789abcdefSECRET"
TOOL = "web.search"
"""A dot in the name: providers get ``web_search`` and the reply is mapped back."""
RESEARCHER_PROMPT = "You are the researcher. Use the search tool."
WRITER_PROMPT = "You are the writer. Turn findings into a report."
LOOPBACK_TOOLS = ["127.0.0.0/8"]
"""The tool server is on loopback, which the tool egress guard refuses unless allowed."""
FAST = HttpSettings(timeout_s=5, max_attempts=3, backoff_s=0.01, max_backoff_s=0.05, max_retry_after_s=5)


# ---------------------------------------------------------------------------------------------
# Fake model "brains": each answers in its provider's format, by agent and conversation state.


def _openai_brain(rec: Recorded) -> Reply:
    messages = rec.body["messages"]
    system = messages[0]["content"] if messages[0]["role"] == "system" else ""
    if "researcher" in system:
        results = [m for m in messages if m["role"] == "tool"]
        if not results:
            return openai_tool_call("call_abc123", "web_search", {"input": "edge chips"},
                                    prompt_tokens=31, completion_tokens=7)
        return openai_text(f"findings: {results[-1]['content']}", prompt_tokens=45, completion_tokens=11)
    user = next(m["content"] for m in messages if m["role"] == "user")
    return openai_text(f"report <<{user.split('Handoff from researcher:', 1)[-1].strip()}>>",
                       prompt_tokens=50, completion_tokens=20)


def _anthropic_brain(rec: Recorded) -> Reply:
    system, messages = rec.body.get("system", ""), rec.body["messages"]
    if "researcher" in system:
        results = [b for m in messages if isinstance(m["content"], list) for b in m["content"]
                   if b["type"] == "tool_result"]
        if not results:
            return anthropic_tool_use("toolu_01XYZ", "web_search", {"input": "edge chips"}, text="Searching.",
                                      input_tokens=30, output_tokens=8)
        return anthropic_text(f"findings: {results[-1]['content']}", input_tokens=40, output_tokens=10,
                              cache_read=5, cache_creation=2)
    user = messages[0]["content"]
    return anthropic_text(f"report <<{user.split('Handoff from researcher:', 1)[-1].strip()}>>",
                          input_tokens=50, output_tokens=20)


def _ollama_brain(rec: Recorded) -> Reply:
    messages = rec.body["messages"]
    system = messages[0]["content"] if messages[0]["role"] == "system" else ""
    if "researcher" in system:
        results = [m for m in messages if m["role"] == "tool"]
        if not results:
            return ollama_tool_call("web_search", {"input": "edge chips"}, prompt_eval_count=33, eval_count=9)
        return ollama_text(f"findings: {results[-1]['content']}", prompt_eval_count=44, eval_count=12)
    user = next(m["content"] for m in messages if m["role"] == "user")
    return ollama_text(f"report <<{user.split('Handoff from researcher:', 1)[-1].strip()}>>",
                       prompt_eval_count=50, eval_count=20)


# ---------------------------------------------------------------------------------------------
# The task


def _manifests(provider: str, base_url: str, tool_url: str, options: dict, with_key: bool) -> str:
    auth = "  auth:\n    secretRef: model-key\n" if with_key else ""
    opts = "".join(f'    {k}: "{v}"\n' for k, v in options.items())
    opts = f"  options:\n{opts}" if opts else ""
    secret = base64.b64encode(KEY.encode()).decode()
    return f"""
apiVersion: orloj.dev/v1
kind: Secret
metadata: {{name: model-key}}
spec:
  data: {{value: {secret}}}
---
apiVersion: orloj.dev/v1
kind: ModelEndpoint
metadata: {{name: llm}}
spec:
  provider: {provider}
  base_url: {base_url}
  default_model: test-model
{opts}{auth}---
apiVersion: orloj.dev/v1
kind: Tool
metadata: {{name: {TOOL}}}
spec:
  type: http
  endpoint: {tool_url}
  description: Search the web
---
apiVersion: orloj.dev/v1
kind: Agent
metadata: {{name: researcher}}
spec:
  model_ref: llm
  prompt: {RESEARCHER_PROMPT}
  tools: [{TOOL}]
  limits: {{max_steps: 4, timeout: 20s}}
---
apiVersion: orloj.dev/v1
kind: Agent
metadata: {{name: writer}}
spec:
  model_ref: llm
  prompt: {WRITER_PROMPT}
  limits: {{max_steps: 2, timeout: 20s}}
---
apiVersion: orloj.dev/v1
kind: AgentSystem
metadata: {{name: duo}}
spec:
  agents: [researcher, writer]
  graph:
    researcher:
      edges: [{{to: writer}}]
---
apiVersion: orloj.dev/v1
kind: Task
metadata: {{name: duo-task}}
spec:
  system: duo
  input: {{topic: edge AI chips}}
"""


async def _run_task(text: str, gateway: ModelGateway, timeout: float = 20.0, runtime=LocalAgentRuntime) -> dict:
    """Run the manifests' task in-process; ``runtime(gateway, tools)`` runs the turns."""
    store = MemoryStore()
    for manifest in load_text(text, source="providers.yaml"):
        doc = manifest.doc
        doc["metadata"]["namespace"] = "default"
        if doc["kind"] == "Task":
            doc["status"] = {"phase": "Pending"}
        await store.create(doc)
    tools = HttpToolRunner(guard=EgressGuard(LOOPBACK_TOOLS))
    controller = Controller(store, runtime(gateway, tools), worker="test-worker")
    loop = asyncio.create_task(controller.run())
    try:
        async with asyncio.timeout(timeout):
            while True:
                task = await store.get("Task", "default", "duo-task")
                if task["status"].get("phase") in ("Succeeded", "Failed", "DeadLetter"):
                    return task
                await asyncio.sleep(0.02)
    finally:
        controller.stop()
        await loop
        await gateway.aclose()


def _model_calls(task: dict, agent: str) -> list[dict]:
    return [r for r in task["status"]["trace"] if r["type"] == "model_call" and r["agent"] == agent]


def _check_task(task: dict, tool: FakeServer, usage: list[tuple[int, int]]) -> None:
    status = task["status"]
    assert status["phase"] == "Succeeded", status.get("lastError")
    # the tool got the model's argument, with the step's idempotency key
    (call,) = tool.requests
    assert call.raw == b"edge chips"
    assert call.header("idempotency-key")
    # the tool's answer went back to the model, and the researcher's final text to the writer
    final = status["output"]["final_output"]
    assert final == "report <<findings: RESULT(edge chips)>>"
    tool_rows = [r for r in status["trace"] if r["type"] == "tool_call"]
    assert [(r["agent"], r["tool"], r["output"]) for r in tool_rows] == [("researcher", TOOL, "RESULT(edge chips)")]
    # provider token counts recorded per model call
    calls = _model_calls(task, "researcher") + _model_calls(task, "writer")
    assert [(r["input_tokens"], r["output_tokens"]) for r in calls] == usage
    assert {r["token_usage_source"] for r in calls} == {"provider"}
    assert KEY not in json.dumps(task)


# ---------------------------------------------------------------------------------------------
# One whole task per provider


async def test_openai_task_with_tool_call_round_trip():
    with FakeServer(_openai_brain) as model, FakeServer(echo_tool()) as tool:
        task = await _run_task(_manifests("openai", model.url + "/v1", tool.url, {}, True), default_gateway())
    _check_task(task, tool, [(31, 7), (45, 11), (50, 20)])
    first, second, writer = model.requests
    for rec in model.requests:
        assert rec.path == "/v1/chat/completions"
        assert rec.header("authorization") == f"Bearer {KEY}"
        assert rec.header("content-type") == "application/json"
        assert rec.body["model"] == "test-model"
    # pooled: all three calls on one keep-alive connection
    assert len({r.client_port for r in model.requests}) == 1
    assert first.body["messages"][0] == {"role": "system", "content": RESEARCHER_PROMPT}
    user = first.body["messages"][1]
    assert user["role"] == "user" and "topic: edge AI chips" in user["content"]
    assert first.body["tools"] == [{"type": "function", "function": {
        "name": "web_search", "description": "Search the web",
        "parameters": {"type": "object", "properties": {"input": {"type": "string"}}, "additionalProperties": True}}}]
    assert first.body["tool_choice"] == "auto"
    # step 2: the assistant's call and the tool result, tied by the provider's call id
    assistant, result = second.body["messages"][2:4]
    assert assistant == {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_abc123", "type": "function",
         "function": {"name": "web_search", "arguments": json.dumps({"input": "edge chips"})}}]}
    assert result == {"role": "tool", "tool_call_id": "call_abc123", "content": "RESULT(edge chips)"}
    # the tool stays offered after it was used (upstream short-circuits only a repeat of the same call)
    assert [t["function"]["name"] for t in second.body["tools"]] == ["web_search"]
    # the writer has no tools and got the researcher's output as its handoff
    assert "tools" not in writer.body and writer.body["messages"][0]["content"] == WRITER_PROMPT
    assert "findings: RESULT(edge chips)" in writer.body["messages"][1]["content"]


async def test_openai_compatible_without_key_sends_no_authorization_and_maps_options():
    with FakeServer(_openai_brain) as model, FakeServer(echo_tool()) as tool:
        task = await _run_task(_manifests("openai_compatible", model.url + "/v1/", tool.url,
                                          {"temperature": "0.2", "max_tokens": "256"}, False), default_gateway())
    _check_task(task, tool, [(31, 7), (45, 11), (50, 20)])
    for rec in model.requests:
        assert rec.path == "/v1/chat/completions"
        assert rec.header("authorization") is None
        assert rec.body["temperature"] == 0.2 and rec.body["max_tokens"] == 256


async def test_azure_openai_task_uses_deployment_path_api_version_and_api_key_header():
    with FakeServer(_openai_brain) as model, FakeServer(echo_tool()) as tool:
        task = await _run_task(_manifests("azure-openai", model.url, tool.url, {"api_version": "2025-01-01-preview"},
                                          True), default_gateway())
    _check_task(task, tool, [(31, 7), (45, 11), (50, 20)])
    for rec in model.requests:
        assert rec.path == "/openai/deployments/test-model/chat/completions"
        assert rec.query == {"api-version": ["2025-01-01-preview"]}
        assert rec.header("api-key") == KEY and rec.header("authorization") is None
    assert model.requests[1].body["messages"][3] == {"role": "tool", "tool_call_id": "call_abc123",
                                                     "content": "RESULT(edge chips)"}


async def test_azure_default_api_version_and_deployment_option():
    with FakeServer(scripted(openai_text("hi"))) as model:
        endpoint = Endpoint("az", "azure-openai", model.url, "gpt-4o", {"Deployment": " prod-4o "}, KEY)
        reply = await _complete(endpoint)
    assert reply.text == "hi"
    (rec,) = model.requests
    assert rec.path == "/openai/deployments/prod-4o/chat/completions"
    assert rec.query == {"api-version": ["2024-10-21"]} and rec.body["model"] == "prod-4o"


async def test_anthropic_task_with_tool_use_and_tool_result_blocks():
    with FakeServer(_anthropic_brain) as model, FakeServer(echo_tool()) as tool:
        task = await _run_task(_manifests("anthropic", model.url + "/v1", tool.url, {"max_tokens": "512"}, True),
                               default_gateway())
    # usage: input + cache read + cache creation
    _check_task(task, tool, [(30, 8), (47, 10), (50, 20)])
    first, second, writer = model.requests
    for rec in model.requests:
        assert rec.path == "/v1/messages"
        assert rec.header("x-api-key") == KEY and rec.header("authorization") is None
        assert rec.header("anthropic-version") == "2023-06-01"
        assert rec.body["model"] == "test-model" and rec.body["max_tokens"] == 512
        assert all(m["role"] in ("user", "assistant") for m in rec.body["messages"])
    assert first.body["system"] == RESEARCHER_PROMPT
    assert first.body["messages"][0]["role"] == "user"
    assert first.body["tools"] == [{"name": "web_search", "description": "Search the web", "input_schema": {
        "type": "object", "properties": {"input": {"type": "string"}}, "additionalProperties": True}}]
    assert second.body["messages"][1:] == [
        {"role": "assistant", "content": [
            {"type": "text", "text": "Searching."},
            {"type": "tool_use", "id": "toolu_01XYZ", "name": "web_search", "input": {"input": "edge chips"}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_01XYZ", "content": "RESULT(edge chips)"}]},
    ]
    # the tool stays offered after it was used (upstream short-circuits only a repeat of the same call)
    assert second.body["tools"] == first.body["tools"]
    assert "tool_choice" not in first.body and "tool_choice" not in second.body
    assert writer.body["system"] == WRITER_PROMPT and "tools" not in writer.body


async def test_ollama_task_without_key_and_with_tool_messages():
    with FakeServer(_ollama_brain) as model, FakeServer(echo_tool()) as tool:
        task = await _run_task(_manifests("ollama", model.url, tool.url, {"temperature": "0"}, False),
                               default_gateway())
    _check_task(task, tool, [(33, 9), (44, 12), (50, 20)])
    first, second, _ = model.requests
    for rec in model.requests:
        assert rec.path == "/api/chat" and rec.body["stream"] is False
        assert rec.header("authorization") is None and rec.header("x-api-key") is None
        assert rec.body["model"] == "test-model" and rec.body["options"] == {"temperature": 0.0}
    assert first.body["tools"][0]["type"] == "function"
    assert first.body["tools"][0]["function"]["name"] == "web_search"
    assert second.body["messages"][2:] == [
        {"role": "assistant", "content": "",
         "tool_calls": [{"function": {"name": "web_search", "arguments": {"input": "edge chips"}}}]},
        {"role": "tool", "content": "RESULT(edge chips)", "tool_name": "web_search"},
    ]


# ---------------------------------------------------------------------------------------------
# Retries and errors


def _endpoint(url: str, provider: str = "openai", options: dict | None = None) -> Endpoint:
    return Endpoint("llm", provider, url, "test-model", dict(options or {}), KEY)


def _request() -> CompletionRequest:
    return CompletionRequest([Message("system", "be brief"), Message("user", "hello")],
                             [ToolSpec("lookup")], {"agent": "a", "step": 1})


async def _complete(endpoint: Endpoint, settings: HttpSettings = FAST):
    provider = {"openai": OpenAIProvider, "anthropic": AnthropicProvider}.get(endpoint.provider)
    gateway = default_gateway() if provider is None else ModelGateway({endpoint.provider: provider(settings)})
    try:
        return await gateway.complete(endpoint, _request())
    finally:
        await gateway.aclose()


async def test_429_with_retry_after_seconds_waits_then_succeeds():
    script = scripted(openai_error(429, "Rate limit reached", {"Retry-After": "1"}), openai_text("ok", prompt_tokens=3,
                                                                                                completion_tokens=1))
    with FakeServer(script) as model:
        started = time.monotonic()
        reply = await _complete(_endpoint(model.url))
        elapsed = time.monotonic() - started
    assert reply.text == "ok" and (reply.usage.input_tokens, reply.usage.output_tokens) == (3, 1)
    assert len(model.requests) == 2
    assert 0.95 <= elapsed < 10  # backoff alone would have been ~0.01 s


async def test_429_with_retry_after_http_date_is_honoured():
    when = formatdate(time.time() + 2, usegmt=True)
    script = scripted(anthropic_error(429, "rate limited", {"Retry-After": when}), anthropic_text("ok"))
    with FakeServer(script) as model:
        started = time.monotonic()
        reply = await _complete(_endpoint(model.url, "anthropic"))
        elapsed = time.monotonic() - started
    assert reply.text == "ok" and len(model.requests) == 2
    assert 0.9 <= elapsed < 10


async def test_5xx_retried_with_backoff_then_succeeds():
    script = scripted(openai_error(500, "internal"), openai_error(503, "overloaded"), openai_text("third time"))
    with FakeServer(script) as model:
        reply = await _complete(_endpoint(model.url))
    assert reply.text == "third time" and len(model.requests) == 3


async def test_5xx_exhausts_bounded_attempts_with_retryable_error():
    script = scripted(*[openai_error(502, "bad gateway")] * 5)
    with FakeServer(script) as model:
        with pytest.raises(ModelError) as info:
            await _complete(_endpoint(model.url))
    assert len(model.requests) == FAST.max_attempts
    err = info.value
    assert err.retryable and err.code == "model_gateway_http_502"
    assert err.message == "model request failed status=502: bad gateway"


async def test_401_is_not_retried_and_never_shows_the_key(caplog):
    caplog.set_level(logging.DEBUG)
    message = f"Incorrect API key provided: {KEY}. You can find your API key at https://platform.openai.com."
    with FakeServer(scripted(openai_error(401, message), openai_text("never"))) as model:
        with pytest.raises(ModelError) as info:
            await _complete(_endpoint(model.url))
    assert len(model.requests) == 1
    err = info.value
    assert not err.retryable and err.code == "model_gateway_http_401"
    assert err.message.startswith("model request failed status=401: Incorrect API key provided: [REDACTED]")
    assert 'check the API key of model endpoint "llm"' in err.message
    assert KEY not in str(err) and KEY not in repr(err) and KEY not in caplog.text
    assert KEY[:12] not in str(err)


async def test_400_is_not_retried():
    with FakeServer(scripted(anthropic_error(400, "max_tokens: must be positive"), anthropic_text("x"))) as model:
        with pytest.raises(ModelError) as info:
            await _complete(_endpoint(model.url, "anthropic"))
    assert len(model.requests) == 1 and not info.value.retryable
    assert info.value.message == "model request failed status=400: max_tokens: must be positive"


async def test_retry_after_beyond_the_cap_fails_at_once_and_retryable():
    with FakeServer(scripted(openai_error(429, "slow down", {"Retry-After": "120"}))) as model:
        started = time.monotonic()
        with pytest.raises(ModelError) as info:
            await _complete(_endpoint(model.url))
    assert time.monotonic() - started < 10 and len(model.requests) == 1
    assert info.value.retryable and info.value.code == "model_gateway_http_429"
    assert "retry after 120s" in info.value.message


async def test_timeout_option_and_max_retries_option():
    with FakeServer(scripted(Reply(delay_s=4, body={"choices": []}))) as model:
        started = time.monotonic()
        with pytest.raises(ModelError) as info:
            await _complete(_endpoint(model.url, options={"timeout": "300ms", "max_retries": "0"}))
    assert time.monotonic() - started < 3 and len(model.requests) == 1
    assert info.value.code == "model_timeout" and info.value.retryable
    assert "timed out after 0.3s" in info.value.message


async def test_connection_refused_is_retryable_unavailable():
    with FakeServer(scripted()) as model:
        url = model.url
    with pytest.raises(ModelError) as info:
        await _complete(_endpoint(url, options={"max_retries": "1"}))
    assert info.value.code == "model_unavailable" and info.value.retryable
    assert KEY not in info.value.message


@pytest.mark.parametrize("options,expected", [
    ({"timeout": "soon"}, 'invalid model endpoint timeout "soon"'),
    ({"max_tokens": "lots"}, 'invalid option max_tokens "lots"'),
    ({"temperature": "warm"}, 'invalid option temperature "warm"'),
])
async def test_bad_options_are_config_errors_before_any_request(options, expected):
    with FakeServer(scripted(openai_text("x"))) as model:
        with pytest.raises(ModelError) as info:
            await _complete(_endpoint(model.url, options=options))
    assert model.requests == []
    assert info.value.code == "model_config_invalid" and not info.value.retryable and expected in info.value.message


@pytest.mark.parametrize("reply", [
    Reply(body="<html>gateway page</html>"),
    Reply(body={"choices": [{"message": "not an object"}]}),
    Reply(body={"choices": []}),
])
async def test_malformed_2xx_answers_are_retryable_bad_responses(reply):
    with FakeServer(scripted(reply)) as model:
        with pytest.raises(ModelError) as info:
            await _complete(_endpoint(model.url))
    assert len(model.requests) == 1 and info.value.retryable
    assert info.value.code == "model_bad_response"


async def test_missing_key_and_missing_azure_base_url_are_config_errors():
    with pytest.raises(ModelError, match="an API key is required"):
        await _complete(Endpoint("llm", "anthropic", "http://127.0.0.1:9", "m"))
    with pytest.raises(ModelError, match="spec.base_url is required"):
        await _complete(Endpoint("llm", "azure-openai", "", "dep", {}, KEY))


async def test_401_in_a_turn_fails_the_agent_without_retrying_steps():
    agent = {"metadata": {"name": "a"}, "spec": {"prompt": "p", "limits": {"max_steps": 3}}}
    with FakeServer(scripted(openai_error(401, "invalid x-api-key"), openai_text("never"))) as model:
        gateway = ModelGateway({"openai": OpenAIProvider(FAST)})
        result = await run_turn(TurnRequest("default", "t", 1, agent, _endpoint(model.url)), gateway, HttpToolRunner())
        await gateway.aclose()
    assert len(model.requests) == 1
    assert result.error_code == "model_gateway_http_401" and not result.retryable
    assert result.error.startswith("agent a model execution failed: model request failed status=401: invalid x-api-key")
    assert KEY not in json.dumps(result.trace)


async def test_one_client_per_provider_instance_is_reused_across_calls():
    with FakeServer(scripted(openai_text("1"), openai_text("2"), openai_text("3"))) as model:
        provider = OpenAIProvider(FAST)
        gateway = ModelGateway({"openai": provider})
        for _ in range(3):
            await gateway.complete(_endpoint(model.url), _request())
        client = provider._http()
        await gateway.aclose()
    assert len({r.client_port for r in model.requests}) == 1
    assert client.is_closed


async def test_embeddings_for_memory_search_openai_azure_and_ollama():
    vectors = [[0.1, 0.2], [0.3, 0.4]]
    openai_body = {"object": "list", "data": [{"index": 1, "embedding": vectors[1]},
                                              {"index": 0, "embedding": vectors[0]}]}
    ollama_body = {"model": "nomic-embed-text", "embeddings": vectors}
    gateway = default_gateway()
    try:
        with FakeServer(scripted(Reply(body=openai_body), Reply(body=openai_body), Reply(body=ollama_body))) as srv:
            assert await gateway.embed(_endpoint(srv.url + "/v1"), ["a", "b"]) == vectors
            azure = Endpoint("e", "azure-openai", srv.url, "emb-dep", {}, KEY)
            assert await gateway.embed(azure, ["a", "b"]) == vectors
            assert await gateway.embed(Endpoint("e", "ollama", srv.url, "nomic-embed-text"), ["a", "b"]) == vectors
        assert not gateway.can_embed("anthropic")
    finally:
        await gateway.aclose()
    oa, az, ol = srv.requests
    assert oa.path == "/v1/embeddings" and oa.body == {"model": "test-model", "input": ["a", "b"]}
    assert oa.header("authorization") == f"Bearer {KEY}"
    assert az.path == "/openai/deployments/emb-dep/embeddings" and az.query == {"api-version": ["2024-10-21"]}
    assert az.header("api-key") == KEY
    assert ol.path == "/api/embed" and ol.body == {"model": "nomic-embed-text", "input": ["a", "b"]}


# ---------------------------------------------------------------------------------------------
# Pure pieces


def test_retry_after_parsing():
    assert retry_after_seconds(httpx.Headers({"Retry-After": "7"})) == 7
    assert retry_after_seconds(httpx.Headers({"Retry-After": "-3"})) == 0
    assert retry_after_seconds(httpx.Headers({"retry-after-ms": "250", "Retry-After": "9"})) == 0.25
    now = 1_700_000_000.0
    date = formatdate(now + 30, usegmt=True)
    assert retry_after_seconds(httpx.Headers({"Retry-After": date}), now=now) == pytest.approx(30, abs=1)
    assert retry_after_seconds(httpx.Headers({"Retry-After": formatdate(now - 30, usegmt=True)}), now=now) == 0
    assert retry_after_seconds(httpx.Headers({"Retry-After": "tomorrow-ish"})) is None
    assert retry_after_seconds(httpx.Headers({})) is None


def test_backoff_is_capped_exponential_with_equal_jitter():
    s = HttpSettings(backoff_s=0.5, max_backoff_s=3)
    assert [s.backoff(n, 1.0) for n in (1, 2, 3, 4, 5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert [s.backoff(n, 0.0) for n in (1, 2, 3)] == [0.25, 0.5, 1.0]
    with pytest.raises(ValueError, match="max_attempts"):
        HttpSettings(max_attempts=0)


def test_tool_names_are_sanitized_and_deduplicated():
    used: set[str] = set()
    assert sanitize_tool_name("web.search", used) == "web_search"
    assert sanitize_tool_name("web/search", used) == "web_search_2"
    assert sanitize_tool_name("..", used) == "tool"
    assert len(sanitize_tool_name("x" * 300, used)) == 128


def test_provider_aliases_and_repr_never_show_the_key():
    assert [canonical_provider(p) for p in ("", "OpenAI", "azure", "azure_openai", "openai_compatible")] == [
        "openai", "openai", "azure-openai", "azure-openai", "openai-compatible"]
    assert KEY not in repr(_endpoint("http://x")) and KEY not in repr(OpenAIProvider())


def test_env_key_only_for_the_providers_own_host(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env-openai-123456")
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", "azure-env")
    assert env_api_key("openai", "") == "sk-env-openai-123456"
    assert env_api_key("openai", "https://api.openai.com/v1") == "sk-env-openai-123456"
    assert env_api_key("openai", "https://evil.example/v1") == ""
    assert env_api_key("openai", "http://api.openai.com/v1") == ""
    assert env_api_key("openai-compatible", "") == ""
    assert env_api_key("azure-openai", "https://res.openai.azure.com") == "azure-env"
    assert env_api_key("azure-openai", "https://openai.azure.com.evil.example") == ""
    assert env_api_key("anthropic", "") == ""


async def test_resolve_endpoint_falls_back_to_the_env_key_and_names_it_when_missing(monkeypatch):
    store = MemoryStore()
    for name, url in (("official", ""), ("elsewhere", "https://proxy.example/v1")):
        await store.create({"apiVersion": "orloj.dev/v1", "kind": "ModelEndpoint",
                            "metadata": {"name": name, "namespace": "default"},
                            "spec": {"provider": "openai", "base_url": url, "default_model": "gpt-4o"}})
    agent = {"metadata": {"name": "a"}, "spec": {"model_ref": "official"}}
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(LookupError, match=r'"official" requires auth.secretRef \(or set OPENAI_API_KEY'):
        await resolve_endpoint(store, "default", agent)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env-openai-123456")
    endpoint = await resolve_endpoint(store, "default", agent)
    assert endpoint.api_key == "sk-env-openai-123456" and endpoint.provider == "openai"
    with pytest.raises(LookupError, match="requires auth.secretRef"):
        await resolve_endpoint(store, "default", {"metadata": {"name": "a"}, "spec": {"model_ref": "elsewhere"}})


async def test_a_model_endpoint_on_a_metadata_address_is_refused_before_any_request():
    from orloj_ray.gateway import Endpoint, ModelError
    from orloj_ray.gateway.http import refuse_metadata_hosts

    for url in ("http://169.254.169.254/v1/chat/completions", "http://[fe80::1]/api/chat",
                "http://[::ffff:169.254.169.254]/x"):
        with pytest.raises(ModelError, match="cloud-metadata or link-local") as info:
            await refuse_metadata_hosts(Endpoint(name="evil", provider="openai", base_url="", model="m"), url)
        assert info.value.code == "model_egress_denied" and not info.value.retryable
    await refuse_metadata_hosts(Endpoint(name="local", provider="ollama", base_url="", model="m"), "http://127.0.0.1:11434/api/chat")

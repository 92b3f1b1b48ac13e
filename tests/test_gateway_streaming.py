"""Streaming model calls against the loopback fake providers, and the mock provider streaming.

Each provider runs the same two-agent task twice, once with plain calls and once streamed: the
trace (text, tool calls, tokens), the output and the tool's traffic must be identical, and the
text handed to the sink must be the text recorded. Then what a broken stream does: a cut
connection or a stream without its end marker is a retryable ``model_unavailable``, retried in
the call (the sink told to restart), with the same timeout and retry rules as a plain call.
"""

from __future__ import annotations

import asyncio
import json
import re
import time

import pytest

from fake_model_servers import FakeServer, Reply, anthropic_text, echo_tool, ollama_text, openai_text, scripted
from orloj_ray.engine.runtime import LocalAgentRuntime
from orloj_ray.gateway import (
    AnthropicProvider,
    CompletionRequest,
    Endpoint,
    Message,
    MockProvider,
    ModelError,
    ModelGateway,
    OllamaProvider,
    OpenAIProvider,
    default_gateway,
)
from test_gateway_providers import (
    FAST,
    KEY,
    _anthropic_brain,
    _manifests,
    _ollama_brain,
    _openai_brain,
    _run_task,
)


class Tokens:
    """A turn-level sink: ``(agent, step) -> text`` as streamed, with every restart noted."""

    def __init__(self):
        self.text: dict[tuple[str, int], str] = {}
        self.restarts: list[tuple[str, int]] = []
        self.calls = 0

    def for_agent(self, agent: str):
        def sink(step: int, delta: str, restart: bool = False) -> None:
            self.calls += 1
            if restart:
                self.restarts.append((agent, step))
                self.text[(agent, step)] = ""
            else:
                self.text[(agent, step)] = self.text.get((agent, step), "") + delta
        return sink


class StreamingRuntime(LocalAgentRuntime):
    """Every turn streamed into ``tokens`` (what an agent actor does when someone watches)."""

    def __init__(self, gateway, tools, tokens: Tokens):
        super().__init__(gateway, tools)
        self.tokens = tokens

    async def run_turn(self, request, sink=None):
        return await super().run_turn(request, sink=self.tokens.for_agent(request.agent_name))


def _recorded(task: dict) -> list[dict]:
    """The trace without what differs run to run (times, durations)."""
    timing = ("timestamp", "latency_ms", "duration_ms", "elapsed_ms")
    return [{k: re.sub(r"duration_ms=\d+", "", v) if k == "message" else v for k, v in row.items() if k not in timing}
            for row in task["status"]["trace"]]


async def _both(provider: str, brain, base: str, options: dict, with_key: bool):
    """``(task, tokens, model requests, tool requests)`` of a plain run, then of a streamed one."""
    runs = []
    for streamed in (False, True):
        tokens = Tokens()
        runtime = (lambda g, t: StreamingRuntime(g, t, tokens)) if streamed else LocalAgentRuntime
        with FakeServer(brain) as model, FakeServer(echo_tool()) as tool:
            task = await _run_task(_manifests(provider, model.url + base, tool.url, options, with_key),
                                   default_gateway(), runtime=runtime)
        assert task["status"]["phase"] == "Succeeded", task["status"].get("lastError")
        runs.append((task, tokens, model.requests, tool.requests))
    return runs


@pytest.mark.parametrize("provider,brain,base,options,with_key", [
    ("openai", _openai_brain, "/v1", {}, True),
    ("openai-compatible", _openai_brain, "/v1", {}, False),
    ("azure-openai", _openai_brain, "", {}, True),
    ("anthropic", _anthropic_brain, "/v1", {"max_tokens": "512"}, True),
    ("ollama", _ollama_brain, "", {}, False),
])
async def test_a_streamed_task_records_exactly_what_the_plain_one_does(provider, brain, base, options, with_key):
    (plain, no_tokens, plain_calls, plain_tool), (streamed, tokens, stream_calls, stream_tool) = await _both(
        provider, brain, base, options, with_key)
    assert _recorded(streamed) == _recorded(plain)
    untimed = lambda out: {k: v for k, v in out.items() if not k.endswith(("duration_ms", "elapsed_ms"))}  # noqa: E731
    assert untimed(streamed["status"]["output"]) == untimed(plain["status"]["output"])
    assert [r.raw for r in stream_tool] == [r.raw for r in plain_tool] == [b"edge chips"]
    # the plain run asked for no stream; the streamed one asked for one on every call
    assert no_tokens.calls == 0
    assert all(not r.body.get("stream") for r in plain_calls)
    assert len(stream_calls) == len(plain_calls) == 3 and all(r.body["stream"] is True for r in stream_calls)
    if provider in ("openai", "openai-compatible", "azure-openai"):
        assert all(r.body["stream_options"] == {"include_usage": True} for r in stream_calls)
        assert all(r.header("accept") == "text/event-stream" for r in stream_calls)
    # the request is otherwise the plain one
    strip = ("stream", "stream_options")
    assert [{k: v for k, v in r.body.items() if k not in strip} for r in stream_calls] == [
        {k: v for k, v in r.body.items() if k not in strip} for r in plain_calls]
    # what was streamed is what was recorded, step by step
    model_calls = [r for r in streamed["status"]["trace"] if r["type"] == "model_call"]
    texts = {(r["agent"], r["step"]): r.get("output", "") for r in model_calls}
    assert {k: v.strip() for k, v in tokens.text.items()} == {k: v for k, v in texts.items() if v}
    assert tokens.text[("writer", 1)].startswith("report <<findings:") and not tokens.restarts
    assert KEY not in json.dumps(streamed)


# ---------------------------------------------------------------------------------------------
# One streamed call


def _request() -> CompletionRequest:
    return CompletionRequest([Message("system", "be brief"), Message("user", "hello")], [], {"agent": "a", "step": 1})


class Collect:
    def __init__(self):
        self.deltas: list[str] = []
        self.restarts = 0
        self.times: list[float] = []

    def __call__(self, delta: str, *, restart: bool = False) -> None:
        if restart:
            self.restarts += 1
            self.deltas.append("<restart>")
        else:
            self.deltas.append(delta)
            self.times.append(time.monotonic())


PROVIDERS = {"openai": (OpenAIProvider, "/v1", openai_text), "anthropic": (AnthropicProvider, "/v1", anthropic_text),
             "ollama": (OllamaProvider, "", ollama_text)}


async def _stream(provider: str, url: str, options: dict | None = None, sink=None):
    cls, base, _ = PROVIDERS[provider]
    gateway = ModelGateway({provider: cls(FAST)})
    sink = sink if sink is not None else Collect()
    try:
        reply = await gateway.complete(Endpoint("llm", provider, url + base, "test-model", options or {}, KEY),
                                       _request(), sink=sink)
    finally:
        await gateway.aclose()
    return reply, sink


@pytest.mark.parametrize("provider,cut_after", [("openai", 3), ("anthropic", 5), ("ollama", 2)])
async def test_a_stream_cut_mid_way_is_retried_and_the_sink_told_to_restart(provider, cut_after):
    answer = PROVIDERS[provider][2]
    first = answer("the quick brown fox jumps")
    first.cut_after = cut_after  # two pieces of text sent, then the connection closes mid-body
    with FakeServer(scripted(first, answer("the quick brown fox jumps"))) as model:
        reply, sink = await _stream(provider, model.url)
    assert len(model.requests) == 2
    assert reply.text == "the quick brown fox jumps"
    assert sink.restarts == 1
    after = "".join(sink.deltas[sink.deltas.index("<restart>") + 1:])
    assert after == "the quick brown fox jumps"
    assert "".join(sink.deltas[:sink.deltas.index("<restart>")]) != ""  # some text came before the cut


@pytest.mark.parametrize("provider", sorted(PROVIDERS))
async def test_a_cut_stream_with_no_retries_left_is_a_retryable_model_unavailable(provider):
    answer = PROVIDERS[provider][2]("never finished")
    answer.cut_after = 2
    with FakeServer(scripted(answer)) as model:
        with pytest.raises(ModelError) as info:
            await _stream(provider, model.url, {"max_retries": "0"})
    assert len(model.requests) == 1
    assert info.value.code == "model_unavailable" and info.value.retryable
    assert KEY not in info.value.message


async def test_a_stream_that_ends_cleanly_without_its_end_marker_is_unavailable():
    chunks = [b'data: {"choices": [{"index": 0, "delta": {"content": "half"}}]}\n\n']  # no finish, no [DONE]
    with FakeServer(scripted(Reply(chunks=chunks), Reply(chunks=chunks))) as model:
        with pytest.raises(ModelError) as info:
            await _stream("openai", model.url, {"max_retries": "1"})
    assert len(model.requests) == 2
    assert info.value.code == "model_unavailable" and info.value.retryable and "ended early" in info.value.message


async def test_a_malformed_event_is_a_bad_response_not_retried_in_the_call():
    with FakeServer(scripted(Reply(chunks=[b"data: {not json\n\n"]), openai_text("never"))) as model:
        with pytest.raises(ModelError) as info:
            await _stream("openai", model.url)
    assert len(model.requests) == 1
    assert info.value.code == "model_bad_response" and info.value.retryable


async def test_an_error_event_mid_stream_is_the_providers_error():
    events = [b'event: message_start\ndata: {"type": "message_start", "message": {"model": "m", "usage": {}}}\n\n',
              b'event: error\ndata: {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}\n\n']
    with FakeServer(scripted(Reply(chunks=events))) as model:
        with pytest.raises(ModelError) as info:
            await _stream("anthropic", model.url)
    assert info.value.code == "model_provider_error" and info.value.retryable and "Overloaded" in info.value.message


async def test_a_server_that_ignores_stream_true_answers_json_and_the_call_stands():
    reply_json = openai_text("whole answer", prompt_tokens=3, completion_tokens=2)
    reply_json.stream = False
    with FakeServer(scripted(reply_json)) as model:
        reply, sink = await _stream("openai", model.url)
    assert reply.text == "whole answer" and (reply.usage.input_tokens, reply.usage.output_tokens) == (3, 2)
    assert sink.deltas == []


async def test_the_timeout_bounds_the_whole_streamed_answer_as_it_bounds_a_plain_one():
    slow = openai_text("one two three four five six seven eight")
    slow.chunk_delay_s = 0.25  # every chunk within the read timeout, the whole answer not
    with FakeServer(scripted(slow)) as model:
        started = time.monotonic()
        with pytest.raises(ModelError) as info:
            await _stream("openai", model.url, {"timeout": "600ms", "max_retries": "0"})
    assert info.value.code == "model_timeout" and info.value.retryable
    assert time.monotonic() - started < 1.5


async def test_http_errors_before_the_stream_keep_their_codes_and_retries():
    from fake_model_servers import openai_error

    script = scripted(openai_error(503, "overloaded"), openai_text("second try"))
    with FakeServer(script) as model:
        reply, sink = await _stream("openai", model.url)
    assert reply.text == "second try" and len(model.requests) == 2 and sink.restarts == 0
    with FakeServer(scripted(openai_error(401, f"bad key {KEY}"))) as model:
        with pytest.raises(ModelError) as info:
            await _stream("openai", model.url)
    assert info.value.code == "model_gateway_http_401" and KEY not in info.value.message


async def test_a_failing_sink_never_breaks_the_call():
    def broken(delta: str, *, restart: bool = False) -> None:
        raise RuntimeError("watcher went away")

    with FakeServer(scripted(openai_text("still fine", prompt_tokens=1, completion_tokens=2))) as model:
        reply, _ = await _stream("openai", model.url, sink=broken)
    assert reply.text == "still fine"


# ---------------------------------------------------------------------------------------------
# The mock provider


async def test_the_mock_streams_the_same_reply_word_by_word():
    gateway = ModelGateway({"mock": MockProvider()})
    endpoint = Endpoint("m", "mock", "", "gpt-4o")
    request = CompletionRequest([Message("system", "You are the planner."), Message("user", "go")], [],
                                {"agent": "planner", "step": 1, "topic": "edge chips"})
    plain = await gateway.complete(endpoint, request)
    sink = Collect()
    streamed = await gateway.complete(endpoint, request, sink=sink)
    assert (streamed.text, streamed.tool_calls, streamed.usage) == (plain.text, plain.tool_calls, plain.usage)
    assert "".join(sink.deltas) == plain.text and len(sink.deltas) == len(plain.text.split())


async def test_a_slow_mock_spreads_its_words_over_its_latency():
    gateway = ModelGateway({"mock": MockProvider()})
    endpoint = Endpoint("m", "mock", "", "gpt-4o", {"latency_ms": "800"})
    request = CompletionRequest([Message("system", "You are the planner."), Message("user", "go")], [],
                                {"agent": "planner", "step": 1, "topic": "edge chips"})
    sink = Collect()
    started = time.monotonic()
    reply = await gateway.complete(endpoint, request, sink=sink)
    ended = time.monotonic()
    assert "".join(sink.deltas) == reply.text
    assert ended - started >= 0.75
    assert sink.times[0] - started < (ended - started) / 2  # the first words came long before the reply


async def test_a_mock_tool_call_is_not_streamed():
    from orloj_ray.gateway import ToolSpec

    gateway = ModelGateway({"mock": MockProvider()})
    request = CompletionRequest([Message("system", "s"), Message("user", "u")], [ToolSpec("echo")],
                                {"agent": "a", "step": 1})
    sink = Collect()
    reply = await gateway.complete(Endpoint("m", "mock", "", "gpt-4o"), request, sink=sink)
    assert reply.tool_calls and sink.deltas == []


async def test_run_turn_without_a_sink_never_streams():
    from orloj_ray.engine.turn import TurnRequest, run_turn
    from orloj_ray.tools import HttpToolRunner

    class Recording(MockProvider):
        streamed = 0

        async def stream(self, endpoint, request, sink):
            Recording.streamed += 1
            return await super().stream(endpoint, request, sink)

    gateway = ModelGateway({"mock": Recording()})
    agent = {"metadata": {"name": "a"}, "spec": {"prompt": "p"}}
    req = TurnRequest("default", "t", 1, agent, Endpoint("m", "mock", "", "gpt-4o"))
    plain = await run_turn(req, gateway, HttpToolRunner())
    assert Recording.streamed == 0
    got = []
    streamed = await run_turn(req, gateway, HttpToolRunner(), sink=lambda step, d, restart=False: got.append((step, d)))
    assert Recording.streamed == 1 and streamed.output == plain.output
    assert "".join(d for _, d in got) == plain.output and {s for s, _ in got} == {1}
    await asyncio.sleep(0)

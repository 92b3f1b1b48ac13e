"""One turn as upstream runs it (execution.md section 7): the execution contract, tool calls a
model writes as text, and the short circuit of a repeated call (only the same tool with the
same input). A scripted model through the real gateway and turn code; a recording tool runner."""

from __future__ import annotations

import json

import pytest

from orloj_ray.engine.turn import TurnRequest, run_turn
from orloj_ray.gateway import CompletionReply, Endpoint, ModelGateway, ToolCall, Usage
from orloj_ray.gateway.text_calls import parse_text_tool_calls


class Script:
    """A model that answers step by step from a list: a ToolCall list, or text."""

    def __init__(self, *steps):
        self.steps = list(steps)
        self.requests = []
        self.seen = []

    async def complete(self, endpoint, request):
        self.requests.append(request)
        self.seen.append(list(request.messages))  # the list grows as the turn goes on
        step = self.steps.pop(0) if self.steps else "done"
        if isinstance(step, list):
            return CompletionReply(tool_calls=step, usage=Usage(5, 5))
        return CompletionReply(text=step, usage=Usage(5, 5))


class Tools:
    def __init__(self):
        self.calls = []

    async def call(self, tool, tool_input, ctx):
        self.calls.append((tool["metadata"]["name"], tool_input))
        return f"{tool['metadata']['name']} did {tool_input}"


def call(name: str, value: str, i: int = 0) -> ToolCall:
    return ToolCall(id=f"c{i}", name=name, arguments=json.dumps({"input": value}))


def tool(name: str) -> dict:
    return {"metadata": {"name": name, "namespace": "ns"}, "spec": {"type": "http", "endpoint": "http://x"}}


async def turn(script: Script, *, execution: dict | None = None, tools=("search", "write", "scan"), max_steps=6):
    agent = {"metadata": {"name": "a", "namespace": "ns"},
             "spec": {"prompt": "work", "tools": list(tools), "execution": execution or {},
                      "limits": {"max_steps": max_steps}}}
    req = TurnRequest(namespace="ns", task="t", attempt=1, agent=agent,
                      endpoint=Endpoint("scripted", "scripted", "", "m"), tools=[tool(t) for t in tools],
                      key="ns/t/a001/a/b001/h001")
    runner = Tools()
    result = await run_turn(req, ModelGateway({"scripted": script}), runner)
    return result, runner


# -- the execution contract ------------------------------------------------------------------------

CONTRACT = {"profile": "contract", "tool_sequence": ["search", "write"], "required_output_markers": ["DONE"]}


async def test_a_contract_turn_is_done_once_its_tools_ran_and_its_markers_are_in_the_text():
    result, tools = await turn(Script([call("search", "q")], [call("write", "w")], "report DONE"), execution=CONTRACT)
    assert result.ok and result.output == "report DONE"
    assert [c[0] for c in tools.calls] == ["search", "write"]


async def test_a_contract_turn_asked_to_go_on_until_its_sequence_is_done():
    script = Script([call("search", "q")], "I think that's enough", [call("write", "w")], "DONE")
    result, tools = await turn(script, execution=CONTRACT)
    assert result.ok and result.output == "DONE" and [c[0] for c in tools.calls] == ["search", "write"]
    nudge = script.seen[2][-1]
    assert nudge.role == "user" and "write" in nudge.content  # the model was told what is left


async def test_a_tool_outside_the_sequence_is_a_non_retryable_contract_violation():
    result, tools = await turn(Script([call("scan", "s")]), execution=CONTRACT)
    assert result.error_code == "agent_contract_violation" and not result.retryable
    assert "scan is not in tool_sequence" in result.error and tools.calls == []
    assert [r["type"] for r in result.trace][-1] == "agent_contract_violation"


async def test_observe_records_the_violation_and_goes_on():
    result, tools = await turn(Script([call("scan", "s")], [call("search", "q")], [call("write", "w")], "DONE"),
                               execution={**CONTRACT, "on_contract_violation": "observe"})
    assert result.ok and [c[0] for c in tools.calls] == ["scan", "search", "write"]
    assert sum(r["type"] == "agent_contract_violation" for r in result.trace) == 1


async def test_max_steps_before_the_sequence_and_a_denied_repeat_violate_the_contract():
    result, _ = await turn(Script([call("search", "q")], "thinking", "still thinking"), execution=CONTRACT, max_steps=3)
    assert result.error_code == "agent_contract_violation" and "before tool_sequence was done (missing: write)" in result.error
    deny = {**CONTRACT, "duplicate_tool_call_policy": "deny"}
    result, tools = await turn(Script([call("search", "q")], [call("search", "q")]), execution=deny)
    assert result.error_code == "agent_contract_violation" and "repeated tool=search" in result.error
    assert tools.calls == [("search", "q")]


async def test_missing_markers_are_a_warning_not_a_failure():
    result, _ = await turn(Script([call("search", "q")], [call("write", "w")], "report without it"), execution=CONTRACT)
    assert result.ok and result.output == "report without it"
    assert any(r["type"] == "agent_event" and "contract_warning missing markers: DONE" in r["message"]
               for r in result.trace)


# -- tool calls written as text --------------------------------------------------------------------

@pytest.mark.parametrize("text,expected", [
    ('{"tool": "search", "input": "edge chips"}', [("search", {"input": "edge chips"})]),
    ('```json\n{"name": "search", "arguments": {"q": 1}}\n```', [("search", {"q": 1})]),
    ('{"tool_calls": [{"function": {"name": "search", "arguments": "{\\"q\\": 2}"}}, {"tool": "write"}]}',
     [("search", {"q": 2}), ("write", {"input": ""})]),
    ('[{"tool": "a", "input": 3}]', [("a", {"input": 3})]),
    ("Let me look.\ntool: search input: edge chips\n", [("search", {"input": "edge chips"})]),
    ("tool=write input=the draft", [("write", {"input": "the draft"})]),
    ("I could use the search tool later.", []),
    ('{"answer": "42"}', []),
])
def test_tool_calls_written_as_text_are_read_and_prose_is_not(text, expected):
    assert [(c.name, json.loads(c.arguments)) for c in parse_text_tool_calls(text)] == expected


async def test_a_model_without_native_tool_calls_calls_tools_in_text():
    result, tools = await turn(Script('{"tool": "search", "input": "edge chips"}', "found it"))
    assert result.ok and result.output == "found it" and tools.calls == [("search", "edge chips")]
    assert result.tool_calls == 1


# -- the short circuit ------------------------------------------------------------------------------

async def test_a_used_tool_stays_offered_and_only_the_same_call_is_short_circuited():
    script = Script([call("write", "k1=a")], [call("write", "k2=b")], [call("write", "k1=a")], "stored")
    result, tools = await turn(script)
    assert result.ok and tools.calls == [("write", "k1=a"), ("write", "k2=b")]  # the repeat did not run again
    assert all("write" in [t.name for t in r.tools] for r in script.requests)
    repeats = [r for r in result.trace if r.get("short_circuit")]
    assert len(repeats) == 1 and repeats[0]["output"] == "write did k1=a"

"""Task execution in-process (LocalAgentRuntime over a MemoryStore): the same engine the
Supervisor runs on Ray, without Ray. Every test runs twice: turns handed over directly (as in
sequential mode) and through the message log as the mailbox (as in message-driven mode)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from orloj_ray.engine.runtime import LocalAgentRuntime
from orloj_ray.store import MemoryStore
from orloj_ray.engine.mailbox import Mailbox
from orloj_ray.messaging import MemoryLog
from tests_support import agent_ends, load

_DELIVERY = {"via": "direct"}


@pytest.fixture(autouse=True, params=["direct", "log"])
def delivery(request):
    _DELIVERY["via"] = request.param
    yield request.param
    _DELIVERY["via"] = "direct"


def Controller(store, runtime, **kwargs):  # noqa: N802 - the engine's Controller, delivering as the test asks
    from orloj_ray.engine.controller import Controller as Engine

    if _DELIVERY["via"] == "log" and "mailbox" not in kwargs:
        kwargs["mailbox"] = Mailbox(MemoryLog(ack_wait_s=5.0), store)
    return Engine(store, runtime, **kwargs)


async def run_until_done(store, name: str, *, timeout: float = 10.0) -> dict:
    controller = Controller(store, LocalAgentRuntime(), worker="test-worker")
    loop = asyncio.create_task(controller.run())
    try:
        async with asyncio.timeout(timeout):
            while True:
                task = await store.get("Task", "default", name)
                if task["status"].get("phase") in ("Succeeded", "Failed", "DeadLetter"):
                    return task
                await asyncio.sleep(0.02)
    finally:
        controller.stop()
        await loop


async def test_pipeline_runs_three_agents_in_order_and_outputs_the_writers_text():
    store = MemoryStore()
    await load(store, "pipeline")
    task = await run_until_done(store, "bp-pipeline-task")
    status = task["status"]
    assert status["phase"] == "Succeeded", status.get("lastError")
    ends = agent_ends(task)
    assert [r["agent"] for r in ends] == ["bp-pipeline-planner-agent", "bp-pipeline-research-agent",
                                          "bp-pipeline-writer-agent"]
    for row in ends:
        assert row["model"] == "gpt-4o" and row["tokens"] > 0 and "latency_ms" in row and row["output"]
    # each agent's input is the previous agent's real output
    assert ends[1]["input"] == ends[0]["output"] and ends[2]["input"] == ends[1]["output"]
    assert status["output"]["final_output"] == ends[-1]["output"]
    assert status["output"]["final_output"].startswith("bp-pipeline-writer-agent (step 1")
    assert status["output"]["execution_order"] == " -> ".join(r["agent"] for r in ends)
    assert status["attempts"] == 1 and [h["type"] for h in status["history"]] == ["claim", "succeeded"]
    assert all(m["phase"] == "Succeeded" for m in status["messages"])
    assert "claimedBy" not in status and status["completedAt"]
    # one delivery per message, and the trace in the order things happened (a turn's write
    # also records the next message Running and, for the last turn, the task's success)
    assert [m["attempts"] for m in status["messages"]] == [1, 1, 1]
    steps = [(r["type"], r.get("agent", "")) for r in status["trace"]
             if r["type"] in ("task_start", "agent_start", "agent_end", "task_summary")]
    agents = [r["agent"] for r in ends]
    assert steps == [("task_start", ""), *[(kind, a) for a in agents for kind in ("agent_start", "agent_end")],
                     ("task_summary", "")]


async def test_hierarchical_join_waits_for_both_branches_and_runs_the_editor_once():
    store = MemoryStore()
    await load(store, "hierarchical")
    task = await run_until_done(store, "bp-hierarchical-task")
    status = task["status"]
    assert status["phase"] == "Succeeded", status.get("lastError")
    agents = [r["agent"] for r in agent_ends(task)]
    assert agents[0] == "bp-hier-manager-agent" and agents[-1] == "bp-hier-editor-agent"
    assert agents.count("bp-hier-editor-agent") == 1 and len(agents) == 6
    (join,) = status["join_states"]
    assert join["node"] == "bp-hier-editor-agent" and join["activated"] is True
    assert {s["from_agent"] for s in join["sources"]} == {"bp-hier-research-worker-agent",
                                                           "bp-hier-social-worker-agent"}
    branches = {r["branch_id"] for r in agent_ends(task)}
    assert {"b001", "b001.001", "b001.002"} <= branches
    editor = agent_ends(task)[-1]
    assert "bp-hier-research-worker-agent" in editor["output"] and "bp-hier-social-worker-agent" in editor["output"]


async def test_swarm_loop_with_max_turns_terminates():
    store = MemoryStore()
    await load(store, "swarm-loop")
    task = await run_until_done(store, "bp-swarm-loop-task")
    assert task["status"]["phase"] == "Succeeded", task["status"].get("lastError")


@pytest.mark.parametrize("mutate,expected", [
    (lambda t: t["spec"].update(system="ghost-system"), 'agentsystem "ghost-system" not found'),
    (lambda t: t["spec"].pop("system"), "spec.system is required"),
])
async def test_invalid_task_fails_with_a_reason_naming_what_is_missing(mutate, expected):
    store = MemoryStore()
    await load(store, "pipeline")
    task = await store.get("Task", "default", "bp-pipeline-task")
    await store.delete("Task", "default", "bp-pipeline-task")
    task["metadata"] = {"name": "bp-pipeline-task", "namespace": "default"}
    task["status"] = {"phase": "Pending"}
    mutate(task)
    await store.create(task)
    done = await run_until_done(store, "bp-pipeline-task")
    assert done["status"]["phase"] == "Failed"
    assert expected in done["status"]["lastError"]


async def test_missing_agent_and_endpoint_are_both_reported():
    store = MemoryStore()
    await load(store, "pipeline")
    await store.delete("Agent", "default", "bp-pipeline-research-agent")
    await store.delete("ModelEndpoint", "default", "openai-default")
    done = await run_until_done(store, "bp-pipeline-task")
    error = done["status"]["lastError"]
    assert done["status"]["phase"] == "Failed"
    assert 'agent "bp-pipeline-research-agent" not found' in error
    assert 'model endpoint "openai-default" not found' in error


async def test_cycle_without_max_turns_fails_before_running_anything():
    store = MemoryStore()
    await load(store, "swarm-loop")
    task = await store.get("Task", "default", "bp-swarm-loop-task")
    await store.delete("Task", "default", "bp-swarm-loop-task")
    task["metadata"] = {"name": "bp-swarm-loop-task", "namespace": "default"}
    task["spec"]["max_turns"] = 0
    task["status"] = {"phase": "Pending"}
    await store.create(task)
    done = await run_until_done(store, "bp-swarm-loop-task")
    assert done["status"]["phase"] == "Failed"
    assert "contains a cycle (bp-swarm-coordinator-agent -> " in done["status"]["lastError"]
    assert not agent_ends(done)


async def test_template_tasks_are_never_claimed():
    store = MemoryStore()
    await load(store, "pipeline")
    task = await store.get("Task", "default", "bp-pipeline-task")
    template = {"apiVersion": "orloj.dev/v1", "kind": "Task",
                "metadata": {"name": "tmpl", "namespace": "default"},
                "spec": {**task["spec"], "mode": "template"}, "status": {"phase": "Pending"}}
    await store.create(template)
    await run_until_done(store, "bp-pipeline-task")
    assert (await store.get("Task", "default", "tmpl"))["status"] == {"phase": "Pending"}


async def test_reconciler_marks_agents_and_systems():
    store = MemoryStore()
    await load(store, "pipeline")
    await store.delete("Agent", "default", "bp-pipeline-writer-agent")
    await run_until_done(store, "bp-pipeline-task")
    planner = await store.get("Agent", "default", "bp-pipeline-planner-agent")
    system = await store.get("AgentSystem", "default", "bp-pipeline-system")
    assert planner["status"]["phase"] == "Ready"
    assert system["status"]["phase"] == "Error"
    assert "missing agents: bp-pipeline-writer-agent" in system["status"]["lastError"]


ANNOUNCEMENT = (Path(__file__).resolve().parents[1] / "examples" / "governance" / "compliance-checker.yaml").read_text()


async def test_announcement_agent_owns_generated_role_and_policy_until_deleted():
    from orloj_ray.resources import load_text

    store = MemoryStore()
    (manifest,) = load_text(ANNOUNCEMENT, source="announcement.yaml")
    await store.create(manifest.doc)
    controller = Controller(store, LocalAgentRuntime(), worker="test-worker")
    loop = asyncio.create_task(controller.run())
    try:
        async with asyncio.timeout(10):
            while not (await store.get("Agent", "default", "compliance-checker"))["status"].get("generated"):
                await asyncio.sleep(0.02)
        agent = await store.get("Agent", "default", "compliance-checker")
        assert agent["spec"]["model"] == "gpt-4" and agent["spec"]["tools"][0]["name"] == "scan-documents"
        assert agent["status"]["generated"] == ["agentrole/compliance-checker-grants",
                                                "agentpolicy/compliance-checker-governance"]
        # no default ModelEndpoint yet: the reason says what to apply
        assert agent["status"]["phase"] == "Error" and 'named "default"' in agent["status"]["lastError"]
        role = await store.get("AgentRole", "default", "compliance-checker-grants")
        assert {"compliance_docs:read", "issue_tracker:write"} <= set(role["spec"]["permissions"])
        policy = await store.get("AgentPolicy", "default", "compliance-checker-governance")
        assert policy["spec"]["max_tokens_per_minute"] == 8000
        assert policy["metadata"]["labels"]["orloj.dev/owner-agent"] == "compliance-checker"
        await store.delete("Agent", "default", "compliance-checker")
        async with asyncio.timeout(10):
            while (await store.list("AgentRole", "default")).items or (await store.list("AgentPolicy", "default")).items:
                await asyncio.sleep(0.02)
    finally:
        controller.stop()
        await loop


class FlakyRuntime(LocalAgentRuntime):
    """Fails the first ``failures`` turns of every agent with the given error code."""

    def __init__(self, failures: int, code: str = "model_http_503", retryable: bool = True):
        super().__init__()
        self.failures, self.code, self.retryable, self.calls = failures, code, retryable, 0

    async def run_turn(self, request):
        self.calls += 1
        result = await super().run_turn(request)
        if self.calls <= self.failures:
            result.error_code, result.error, result.retryable = self.code, f"boom {self.calls}", self.retryable
        return result


async def _run_with(store, runtime, name="bp-pipeline-task") -> dict:
    controller = Controller(store, runtime, worker="test-worker")
    loop = asyncio.create_task(controller.run())
    try:
        async with asyncio.timeout(15):
            while (task := await store.get("Task", "default", name))["status"].get("phase") not in (
                    "Succeeded", "Failed", "DeadLetter"):
                await asyncio.sleep(0.02)
        return task
    finally:
        controller.stop()
        await loop


async def _pipeline_with_retry(max_attempts: int) -> MemoryStore:
    store = MemoryStore()
    await load(store, "pipeline")
    task = await store.get("Task", "default", "bp-pipeline-task")
    task["spec"]["message_retry"] = {"max_attempts": max_attempts, "backoff": "10ms", "max_backoff": "50ms",
                                     "jitter": "none"}
    await store.update(task, "*")
    return store


async def test_retryable_turn_failures_are_retried_per_message_retry_policy():
    store = await _pipeline_with_retry(3)
    task = await _run_with(store, FlakyRuntime(failures=2))
    status = task["status"]
    assert status["phase"] == "Succeeded", status.get("lastError")
    first = status["messages"][0]
    assert first["attempts"] == 3 and first["max_attempts"] == 3
    assert sum(r["type"] == "agent_message_retry_scheduled" for r in status["trace"]) == 2


async def test_exhausted_retries_dead_letter_the_message_and_after_the_task_retries_the_task():
    """The blueprint's task has ``retry: {max_attempts: 2, backoff: 2s}``: a message that runs out
    of its retries ends the attempt, the task runs once more, then dead-letters."""
    store = await _pipeline_with_retry(2)
    task = await _run_with(store, FlakyRuntime(failures=99))
    status = task["status"]
    assert status["phase"] == "DeadLetter" and status["attempts"] == 2
    assert "a002" in status["lastError"] and "dead-lettered after 2 attempts: boom 4" in status["lastError"]
    assert status["messages"][0]["phase"] == "DeadLetter"
    assert [h["type"] for h in status["history"]] == ["claim", "retry_scheduled", "claim", "deadletter"]
    rows = [r["type"] for r in status["trace"] if r["attempt"] == 2]
    assert rows[-2:] == ["agent_message_deadletter", "task_deadletter"]


async def test_non_retryable_failures_fail_at_once():
    store = await _pipeline_with_retry(5)
    task = await _run_with(store, FlakyRuntime(failures=99, code="tool_permission_denied", retryable=True))
    status = task["status"]
    assert status["phase"] == "Failed" and status["errorCode"] == "tool_permission_denied"
    assert status["messages"][0]["attempts"] == 1


async def test_sequential_and_parallel_modes_produce_the_same_steps_and_output():
    runs = {}
    for parallel in (None, 1):
        store = MemoryStore()
        await load(store, "hierarchical")
        controller = Controller(store, LocalAgentRuntime(), worker="w", max_parallel_turns=parallel)
        loop = asyncio.create_task(controller.run())
        try:
            async with asyncio.timeout(10):
                while (task := await store.get("Task", "default", "bp-hierarchical-task"))["status"].get(
                        "phase") != "Succeeded":
                    await asyncio.sleep(0.02)
        finally:
            controller.stop()
            await loop
        runs[parallel] = task["status"]
    steps = {k: sorted((r["agent"], r["output"]) for r in v["trace"] if r["type"] == "agent_end")
             for k, v in runs.items()}
    assert steps[None] == steps[1]
    assert runs[None]["output"]["final_output"] == runs[1]["output"]["final_output"]


class FailAgentRuntime(LocalAgentRuntime):
    """Every turn of ``agent`` fails with a non-retryable error."""

    def __init__(self, agent: str):
        super().__init__()
        self.agent = agent

    async def run_turn(self, request):
        result = await super().run_turn(request)
        if request.agent_name == self.agent:
            result.error_code, result.error, result.retryable = "tool_backend_failure", "social lead broke", False
        return result


async def _hierarchical_with_on_failure(on_failure: str | None) -> dict:
    store = MemoryStore()
    await load(store, "hierarchical")
    if on_failure:
        system = await store.get("AgentSystem", "default", "bp-hierarchical-system")
        system["spec"]["graph"]["bp-hier-editor-agent"]["join"]["on_failure"] = on_failure
        await store.update(system, "*")
    return await _run_with(store, FailAgentRuntime("bp-hier-social-lead-agent"), "bp-hierarchical-task")


async def test_join_on_failure_deadletter_fails_the_task_by_default():
    task = await _hierarchical_with_on_failure(None)
    assert task["status"]["phase"] == "Failed" and "social lead broke" in task["status"]["lastError"]


@pytest.mark.parametrize("on_failure", ["skip", "continue_partial"])
async def test_join_on_failure_lets_the_join_run_with_the_surviving_branch(on_failure):
    task = await _hierarchical_with_on_failure(on_failure)
    status = task["status"]
    assert status["phase"] == "Succeeded", status.get("lastError")
    editor = [r for r in agent_ends(task) if r["agent"] == "bp-hier-editor-agent"]
    assert len(editor) == 1 and "bp-hier-research-worker-agent" in editor[0]["output"]
    assert "bp-hier-social-worker-agent" not in editor[0]["output"]
    assert any(r["type"] == "join_branch_failed" for r in status["trace"])
    assert any(m["phase"] == "DeadLetter" for m in status["messages"])

"""Token streaming on the real control plane (Ray Serve API, supervisors, AgentActors and the
TokenHub on the shared cluster): a slow mock model's words arrive over
``GET /v1/tasks/{name}/stream`` while its turn is still running, the streamed text is the text
recorded, a task nobody watches streams nothing, and ``orloj run --follow`` prints the words as
they come."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import httpx
import pytest

from orloj_ray.client import iter_sse
from orloj_ray.observability.tokens import token_key
from tests_support import apply_all, wait_for_phase

pytestmark = pytest.mark.slow
NS = "tokens"
SYSTEM = "tok-duo"
LATENCY_MS = 1500


def _docs(ns_suffix: str, latency_ms: int) -> list[dict]:
    model = f"tok-model-{ns_suffix}"
    agent = lambda name, prompt: {"kind": "Agent", "metadata": {"name": name},  # noqa: E731
                                  "spec": {"model_ref": model, "prompt": prompt, "limits": {"max_steps": 2}}}
    return [
        {"kind": "ModelEndpoint", "metadata": {"name": model},
         "spec": {"provider": "mock", "default_model": "gpt-4o", "options": {"latency_ms": str(latency_ms)}}},
        agent("tok-talker", "You are the talker. Say what you think of the topic."),
        agent("tok-closer", "You are the closer. Sum up what the talker said."),
        {"kind": "AgentSystem", "metadata": {"name": SYSTEM},
         "spec": {"agents": ["tok-talker", "tok-closer"], "graph": {"tok-talker": {"edges": [{"to": "tok-closer"}]}}}},
    ]


@pytest.fixture(scope="module")
def api(orloj_api):
    with httpx.Client(base_url=orloj_api, timeout=30) as http:
        apply_all(http, NS, _docs("slow", LATENCY_MS))
        apply_all(http, f"{NS}-fast", _docs("fast", 0))
    return orloj_api


def _create(http: httpx.Client, name: str, ns: str) -> None:
    resp = http.post("/v1/tasks", params={"namespace": ns}, json={
        "apiVersion": "orloj.dev/v1", "kind": "Task", "metadata": {"name": name, "namespace": ns},
        "spec": {"system": SYSTEM, "input": {"topic": "edge AI chips"}}})
    assert resp.status_code == 201, resp.text


def _follow(url: str, name: str, ns: str, deadline_s: float = 90) -> list[tuple[float, str, dict]]:
    """Every event of the task's stream with the time it arrived, up to ``end``."""
    events = []
    until = time.monotonic() + deadline_s
    with httpx.Client(base_url=url, timeout=httpx.Timeout(30, read=60)) as http:
        with http.stream("GET", f"/v1/tasks/{name}/stream", params={"namespace": ns}) as resp:
            assert resp.status_code == 200, resp.read()
            for event, raw in iter_sse(resp.iter_lines(), until):
                events.append((time.monotonic(), event, json.loads(raw)))
                if event == "end":
                    break
    return events


def test_a_slow_models_words_arrive_before_its_turn_ends_and_are_the_recorded_text(api):
    with httpx.Client(base_url=api, timeout=30) as http:
        _create(http, "live-1", NS)
        events = _follow(api, "live-1", NS)
        task = http.get("/v1/tasks/live-1", params={"namespace": NS}).json()
    assert task["status"]["phase"] == "Succeeded", task["status"].get("lastError")
    names = [e for _, e, _ in events]
    assert names[-1] == "end" and events[-1][2] == {"phase": "Succeeded"}
    assert names.count("turn_end") == 2
    for agent in ("tok-talker", "tok-closer"):
        tokens = [(t, d) for t, e, d in events if e == "token" and d["agent"] == agent]
        (ended,) = [t for t, e, d in events if e == "turn_end" and d["agent"] == agent]
        assert len(tokens) >= 3, tokens  # batched, but many batches over a 1.5 s reply
        # the first words came long before the turn was over: streamed, not sent at the end
        assert ended - tokens[0][0] >= LATENCY_MS / 1000 / 2, (agent, ended - tokens[0][0])
        assert all(t <= ended for t, _ in tokens)
        # what was streamed is what the trace recorded for the turn
        (call,) = [r for r in task["status"]["trace"] if r["type"] == "model_call" and r["agent"] == agent]
        assert "".join(d["delta"] for _, d in tokens) == call["output"]
        assert {d["message_id"] for _, d in tokens} <= {m["message_id"] for m in task["status"]["messages"]}
    # the talker's turn streamed before the closer's began
    first_closer = min(t for t, e, d in events if e == "token" and d["agent"] == "tok-closer")
    assert max(t for t, e, d in events if e == "turn_end" and d["agent"] == "tok-talker") <= first_closer
    seqs = [d["seq"] for _, e, d in events if e != "end"]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)


def test_a_late_joiner_gets_what_was_said_so_far(api):
    early: list = []
    with httpx.Client(base_url=api, timeout=30) as http:
        _create(http, "live-2", NS)
        watcher = threading.Thread(target=lambda: early.extend(_follow(api, "live-2", NS)), daemon=True)
        watcher.start()
        deadline = time.monotonic() + 60
        while not any(e == "turn_end" for _, e, _ in list(early)) and time.monotonic() < deadline:
            time.sleep(0.05)
        late = _follow(api, "live-2", NS)  # joins during the closer's turn (or after the end)
        watcher.join(timeout=60)
    said = lambda evs: "".join(d.get("delta", "") for _, e, d in evs if e == "token")  # noqa: E731
    assert said(late) == said(early) and said(early)
    assert late[-1][1] == "end"


def test_a_task_nobody_watches_streams_nothing(api):
    import ray

    from actors.token_hub import TOKEN_HUB
    from actors import RAY_NAMESPACE

    with httpx.Client(base_url=api, timeout=30) as http:
        _create(http, "quiet-1", f"{NS}-fast")
        done = wait_for_phase(http, "tasks", "quiet-1", f"{NS}-fast")
    assert done["status"]["phase"] == "Succeeded", done["status"].get("lastError")
    hub = ray.get_actor(TOKEN_HUB, namespace=RAY_NAMESPACE)
    got = ray.get(hub.read.remote(token_key(f"{NS}-fast", "quiet-1"), 0, 0.0), timeout=10)
    assert got["events"] == []  # no turn of it sent the hub anything


def test_orloj_run_follow_prints_the_words_while_the_task_runs(api, cli_env):
    proc = subprocess.Popen([sys.executable, "-m", "orloj_ray.cli.main", "run", "--system", SYSTEM, "-n", NS,
                             "--name", "cli-follow-1", "--follow", "--timeout", "90s", "topic=edge AI chips"],
                            env=cli_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[tuple[float, str]] = []
    out: list[str] = []
    readers = [threading.Thread(target=lambda: lines.extend((time.monotonic(), line) for line in proc.stderr),
                                daemon=True),
               threading.Thread(target=lambda: out.append(proc.stdout.read()), daemon=True)]
    for r in readers:
        r.start()
    try:
        proc.wait(timeout=120)
    finally:
        proc.kill()
    exited = time.monotonic()
    for r in readers:
        r.join(timeout=10)
    err = "".join(line for _, line in lines)
    assert proc.returncode == 0, err
    with httpx.Client(base_url=api, timeout=30) as http:
        task = http.get("/v1/tasks/cli-follow-1", params={"namespace": NS}).json()
    outputs = {r["agent"]: r["output"] for r in task["status"]["trace"] if r["type"] == "model_call"}
    assert outputs["tok-talker"] in err and outputs["tok-closer"] in err  # the model text, live, on stderr
    (header_at,) = [t for t, line in lines if line.startswith("── tok-talker · step 1")]
    assert exited - header_at >= LATENCY_MS / 1000  # printed while the task still had a turn and more to go
    assert task["status"]["output"]["final_output"].strip() in "".join(out)  # stdout: the result, as without --follow

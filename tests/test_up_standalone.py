"""`orloj up` as a user runs it: its own Ray head with the dashboard, then `orloj init`, apply
--run, `ray job submit` against it, and `orloj down` stopping only what it started. It runs in
sequential mode (the rest of the suite covers message-driven on the shared cluster).

Runs in a pytest process of its own (``own_process``), before the suite's shared cluster starts.
Its Ray has a temp dir and ports of its own (other Ray clusters share the machine); `orloj down`
must leave none of its processes behind.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from tests_support import free_port, processes_naming

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
pytestmark = [pytest.mark.slow, pytest.mark.own_process]


@pytest.fixture(scope="module")
def up(tmp_path_factory):
    import ray

    assert not ray.is_initialized(), "this module must run before the shared Ray cluster starts"
    home = tmp_path_factory.mktemp("orloj-home")
    port = free_port()
    temp = tempfile.mkdtemp(prefix="orloj-up-", dir="/tmp")  # short: Ray's socket paths must fit 107 chars
    env = {**os.environ, "ORLOJ_HOME": str(home), "ORLOJ_SERVER": f"http://127.0.0.1:{port}",
           "ORLOJ_RAY_TEMP_DIR": temp, "ORLOJ_DASHBOARD_PORT": str(free_port()),
           "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    for var in ("RAY_ADDRESS", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"):
        env.pop(var, None)
    res = subprocess.run([str(BIN / "orloj"), "up", "--detach", "--port", str(port), "--mode", "sequential"], env=env, capture_output=True,
                         text=True, timeout=180)
    assert res.returncode == 0, res.stdout + res.stderr
    state = json.loads((home / "up.json").read_text())
    yield env, state, home
    subprocess.run([str(BIN / "orloj"), "down"], env=env, capture_output=True, text=True, timeout=120)
    for pid in processes_naming(temp):  # only this module's own Ray, should orloj down have failed
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    shutil.rmtree(temp, ignore_errors=True)


def orloj(env, *args, cwd=REPO, timeout=120):
    return subprocess.run([str(BIN / "orloj"), *args], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


def test_status_names_the_cluster_and_dashboard(up):
    env, state, _ = up
    res = orloj(env, "status")
    assert res.returncode == 0, res.stderr
    assert state["started_ray"] is True and state["dashboard_url"].startswith("http://127.0.0.1:")
    assert state["ray_address"] in res.stdout and state["dashboard_url"] in res.stdout
    assert "sequential" in res.stdout


def test_a_second_up_is_a_no_op_or_says_what_is_in_use(up, tmp_path):
    env, state, _ = up
    port = state["api_url"].rsplit(":", 1)[1]
    res = orloj(env, "up", "--detach", "--port", port, "--mode", "sequential")
    assert res.returncode == 0 and f"orloj-ray is already running (pid {state['pid']}" in res.stdout, res.stderr
    res = orloj(env, "up", "--detach", "--port", port, "--mode", "message-driven")
    assert res.returncode == 1 and "already running" in res.stderr and "orloj down" in res.stderr
    other = {**env, "ORLOJ_HOME": str(tmp_path / "a")}
    res = orloj(other, "up", "--detach", "--port", port)
    assert res.returncode == 1 and f"port {port} is in use" in res.stderr


def test_init_then_apply_run_succeeds(up, tmp_path):
    env, _, _ = up
    assert orloj(env, "init", "demo", cwd=tmp_path).returncode == 0
    res = orloj(env, "apply", "-f", "demo", "--run", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    res = orloj(env, "wait", "task/demo-task", "--for", "condition=Complete", "--timeout", "90s", cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    agents = json.loads(orloj(env, "get", "agents", "-o", "json").stdout)["items"]
    assert agents and all(a["status"].get("actor") == "idle" for a in agents)  # sequential: no agent actors


def test_sequential_turns_stream_their_words_too(up):
    """In sequential mode the supervisor runs the turns itself; a watched task still streams.

    The closer's turn starts well after the reader arrived (the talker's 1.5 s turn comes first),
    so its words must come live whatever the race between the create and the read."""
    import httpx

    from orloj_ray.client import iter_sse
    from tests_support import apply_all

    _, state, _ = up
    ns = "seq-stream"
    agent = lambda name: {"kind": "Agent", "metadata": {"name": name},  # noqa: E731
                          "spec": {"model_ref": "slow-mock", "prompt": f"You are the {name}.", "limits": {"max_steps": 2}}}
    docs = [{"kind": "ModelEndpoint", "metadata": {"name": "slow-mock"},
             "spec": {"provider": "mock", "default_model": "gpt-4o", "options": {"latency_ms": "1500"}}},
            agent("talker"), agent("closer"),
            {"kind": "AgentSystem", "metadata": {"name": "duo"},
             "spec": {"agents": ["talker", "closer"], "graph": {"talker": {"edges": [{"to": "closer"}]}}}}]
    with httpx.Client(base_url=state["api_url"], timeout=httpx.Timeout(30, read=60)) as http:
        apply_all(http, ns, docs)
        resp = http.post("/v1/tasks", params={"namespace": ns}, json={
            "kind": "Task", "metadata": {"name": "seq-1", "namespace": ns}, "spec": {"system": "duo"}})
        assert resp.status_code == 201, resp.text
        events = []
        with http.stream("GET", "/v1/tasks/seq-1/stream", params={"namespace": ns}) as stream:
            assert stream.status_code == 200
            for event, raw in iter_sse(stream.iter_lines(), time.monotonic() + 90):
                events.append((time.monotonic(), event, json.loads(raw)))
                if event == "end":
                    break
        task = http.get("/v1/tasks/seq-1", params={"namespace": ns}).json()
    assert events[-1][1:] == ("end", {"phase": "Succeeded"}), events[-3:]
    closer = [(t, data["delta"]) for t, event, data in events if event == "token" and data["agent"] == "closer"]
    (closer_end,) = [t for t, event, data in events if event == "turn_end" and data["agent"] == "closer"]
    assert closer and closer_end - closer[0][0] >= 0.5  # its words came while its turn ran
    recorded = {r["agent"]: r["output"] for r in task["status"]["trace"] if r["type"] == "model_call"}
    assert "".join(delta for _, delta in closer) == recorded["closer"]


def test_ray_job_submit_imports_the_packages_from_the_working_dir(up):
    env, state, _ = up
    runtime_env = json.dumps({"working_dir": str(REPO), "excludes": [".venv", ".git", "tests", "build", "dist"]})
    code = ("import actors.supervisor, serve.deployment, cluster.local, orloj_ray.engine.executor, ray; "
            "ray.init(address='auto'); print('imports-ok', actors.supervisor.__file__)")
    res = subprocess.run(
        [str(BIN / "ray"), "job", "submit", "--address", state["dashboard_url"], "--runtime-env-json", runtime_env,
         "--", sys.executable, "-c", code],
        env=env, capture_output=True, text=True, timeout=180)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert "imports-ok" in res.stdout


def test_down_stops_what_up_started(up):
    env, state, home = up
    res = orloj(env, "down")
    assert res.returncode == 0, res.stderr
    assert not (home / "up.json").exists()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.kill(state["pid"], 0)
        except ProcessLookupError:
            break
        time.sleep(0.2)
    else:
        pytest.fail("the orloj up process is still alive")
    temp = env["ORLOJ_RAY_TEMP_DIR"]
    deadline = time.monotonic() + 30
    while processes_naming(temp) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not processes_naming(temp), "processes of the Ray head orloj up started outlived orloj down"

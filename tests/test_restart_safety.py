"""Restart safety with PostgreSQL + JetStream: stop everything in the middle of 50 running
tasks and start again; all 50 finish and no step runs twice.

Two ways down, as an operator would do it: `orloj down` (a graceful drain: running turns
finish and record, leases are released) and a crash (every process of the control plane and
of Ray killed with SIGKILL). The counting tool sees every step's Idempotency-Key; after a
drain each exactly once, after a crash at most twice (a step whose tool call happened but
whose record did not is re-run with the same key - the documented contract) and every
recorded step exactly once.

Runs in a pytest process of its own (``own_process``): `orloj up` starts its own Ray head.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from counting_tool import AGENTS, CountingTool, counting_manifests
from pg_server import find_or_start
from tests_support import free_port, kill_ray_cluster, run_orloj

BIN = Path(sys.executable).parent
pytestmark = [pytest.mark.slow, pytest.mark.own_process]
TASKS = 50


@pytest.fixture
def database():
    server = find_or_start()
    url = server.create_database()
    try:
        yield url
    finally:
        server.drop_database(url)
        server.stop()


def _up(env, port, database_url):
    res = run_orloj(env, "up", "--detach", "--port", str(port), "--store", "postgres", "--database-url", database_url,
                 "--log", "jetstream", "--tool-allowed-networks", "127.0.0.0/8", timeout=240)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return json.loads((Path(env["ORLOJ_HOME"]) / "up.json").read_text())


def _phases(api_url: str) -> list[str]:
    with httpx.Client(base_url=api_url, timeout=30) as http:
        items = http.get("/v1/tasks", params={"limit": 500}).json()["items"]
    return [(t.get("status") or {}).get("phase") or "Pending" for t in items if t["metadata"]["name"].startswith("count-task-")]


def _wait_done(api_url: str, timeout: float) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        phases = _phases(api_url)
        if len(phases) == TASKS and all(p in ("Succeeded", "Failed", "DeadLetter") for p in phases):
            with httpx.Client(base_url=api_url, timeout=30) as http:
                return [http.get(f"/v1/tasks/count-task-{i}").json() for i in range(TASKS)]
        assert time.monotonic() < deadline, sorted(phases)
        time.sleep(1.0)


def _crash(state: dict, home: Path) -> None:
    """SIGKILL every process of the Ray cluster `orloj up` started, the `orloj up` process, and
    its nats-server (the cluster first: its processes share the fate of the process that started it)."""
    assert kill_ray_cluster(state["pid"]) >= 2  # at least its GCS and raylet
    os.kill(state["pid"], signal.SIGKILL)
    conf = str(home / "jetstream" / "nats.conf")
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and conf in (proc / "cmdline").read_bytes().decode(errors="replace"):
                os.kill(int(proc.name), signal.SIGKILL)
        except (OSError, ProcessLookupError):
            continue
    (home / "up.json").unlink(missing_ok=True)  # what a crash leaves behind is a stale state file


@pytest.mark.parametrize("how", ["down", "crash"])
def test_stop_everything_mid_run_and_start_again_finishes_every_task_once(how, tmp_path, database):
    import ray

    assert not ray.is_initialized(), "this module must run before the shared Ray cluster starts"
    home = tmp_path / "home"
    port = free_port()
    env = {**os.environ, "ORLOJ_HOME": str(home), "ORLOJ_SERVER": f"http://127.0.0.1:{port}",
           "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("ORLOJ_NATS_URL", None)
    with CountingTool() as tool:
        state = _up(env, port, database)
        try:
            manifest = tmp_path / "count.yaml"
            manifest.write_text(yaml.safe_dump_all(counting_manifests(tool.url, tasks=TASKS, latency_ms=1500)))
            res = run_orloj(env, "apply", "-f", str(manifest))
            assert res.returncode == 0, res.stdout + res.stderr
            deadline = time.monotonic() + 120
            while len(tool.calls) < 20:  # well into the run, far from its end (150 steps)
                assert time.monotonic() < deadline, f"only {len(tool.calls)} tool calls"
                time.sleep(0.1)
            if how == "down":
                res = run_orloj(env, "down")
                assert res.returncode == 0, res.stdout + res.stderr
            else:
                _crash(state, home)
            stopped_at = len(tool.calls)
            assert stopped_at < 3 * TASKS, "the run finished before it was stopped"
            state = _up(env, port, database)
            tasks = _wait_done(state["api_url"], timeout=300)
        finally:
            run_orloj(env, "down")
    for task in tasks:
        status = task["status"]
        assert status["phase"] == "Succeeded", (task["metadata"]["name"], status.get("lastError"))
        ends = [r["agent"] for r in status["trace"] if r["type"] == "agent_end"]
        assert sorted(ends) == sorted(AGENTS), (task["metadata"]["name"], ends)  # every step recorded once
        assert {m["phase"] for m in status["messages"]} == {"Succeeded"}
        assert not [r for r in status["trace"] if r["type"] == "tool_error"], task["metadata"]["name"]
    assert len(tool.calls) == 3 * TASKS
    if how == "down":
        assert tool.repeated() == {}
    else:
        assert all(n == 2 for n in tool.repeated().values())  # re-run with the same key, never a third time

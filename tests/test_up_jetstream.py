"""`orloj up --log jetstream` as a user runs it: orloj starts its own nats-server (fsync on
every write, store under $ORLOJ_HOME/jetstream), agents' messages move through JetStream on
Ray, every step's tool call happens once, and `orloj down` stops the nats-server it started.

Runs in a pytest process of its own (``own_process``): `orloj up` starts its own Ray head.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from counting_tool import CountingTool, counting_manifests
from tests_support import free_port, run_orloj

BIN = Path(sys.executable).parent
pytestmark = [pytest.mark.slow, pytest.mark.own_process]
TASKS = 4


def test_up_with_jetstream_runs_tasks_once_each_and_down_stops_nats(tmp_path):
    import ray

    assert not ray.is_initialized(), "this module must run before the shared Ray cluster starts"
    home = tmp_path / "home"
    port = free_port()
    env = {**os.environ, "ORLOJ_HOME": str(home), "ORLOJ_SERVER": f"http://127.0.0.1:{port}",
           "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("ORLOJ_NATS_URL", None)
    res = run_orloj(env, "up", "--detach", "--port", str(port), "--log", "jetstream",
                 "--tool-allowed-networks", "127.0.0.0/8")
    assert res.returncode == 0, res.stdout + res.stderr
    state = json.loads((home / "up.json").read_text())
    try:
        assert state["log"] == "jetstream" and state["nats_url"].startswith("nats://127.0.0.1:")
        assert (home / "jetstream" / "nats.conf").read_text().count("sync_interval: always") == 1
        with CountingTool() as tool:
            manifest = tmp_path / "count.yaml"
            manifest.write_text(yaml.safe_dump_all(counting_manifests(tool.url, tasks=TASKS)))
            res = run_orloj(env, "apply", "-f", str(manifest))
            assert res.returncode == 0, res.stdout + res.stderr
            with httpx.Client(base_url=state["api_url"], timeout=10) as http:
                runtime = http.get("/v1/runtime").json()
                assert runtime["log"] == "jetstream" and runtime["mode"] == "message-driven"
                assert runtime["ingress"] == "haproxy"  # Ray's HAProxy ingress, the default of a cluster `up` starts
                deadline = time.monotonic() + 120
                while True:
                    tasks = [http.get(f"/v1/tasks/count-task-{i}").json() for i in range(TASKS)]
                    phases = [(t.get("status") or {}).get("phase") for t in tasks]
                    if all(p in ("Succeeded", "Failed", "DeadLetter") for p in phases):
                        break
                    assert time.monotonic() < deadline, phases
                    time.sleep(0.3)
            for task in tasks:
                assert task["status"]["phase"] == "Succeeded", task["status"].get("lastError")
                assert {m["phase"] for m in task["status"]["messages"]} == {"Succeeded"}
            assert len(tool.calls) == 3 * TASKS and tool.repeated() == {}
    finally:
        res = run_orloj(env, "down")
    assert res.returncode == 0, res.stdout + res.stderr
    nats_port = int(state["nats_url"].rsplit(":", 1)[1])
    with socket.socket() as s:  # the nats-server orloj started is gone with it
        assert s.connect_ex(("127.0.0.1", nats_port)) != 0

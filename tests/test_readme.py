"""The README run as printed: its quick start, its tour (with the Ray driver lines) and its
`ray job submit` jobs, each block extracted from README.md, so the README cannot drift.

One `orloj up` serves them all, started the way the issue found it failing: `.venv/bin/orloj`
called by path from a plain shell whose PATH has no venv and no `python` at all (only `orloj`
and `ray` linked in). The blocks that begin with `. .venv/bin/activate` and `orloj up --detach`
find it running (`up -d` is idempotent); the driver and job lines find the cluster with
nothing exported by the test. What is not the README's: this module's own ORLOJ_HOME, Ray temp
dir and free ports (ORLOJ_SERVER, ORLOJ_DASHBOARD_PORT, ORLOJ_RAY_TEMP_DIR; the job block's
8265 becomes that port), since other Ray clusters share the machine.
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

import httpx
import pytest
from tests_support import free_port, processes_naming, readme_blocks

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
pytestmark = [pytest.mark.slow, pytest.mark.own_process]
DRIVERS = "### Ray drivers, `ray status`, `ray list actors`"


def bash(script: str, env: dict, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    """A README block in one bash session, stopping at the first failing line."""
    return subprocess.run(["/bin/bash", "-e", "-o", "pipefail", "-c", script], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A plain shell: `orloj` and `ray` reachable, no venv and no `python` on PATH, nothing
    exported but this module's own places and ports."""
    root = tmp_path_factory.mktemp("readme")
    tools = root / "tools"
    tools.mkdir()
    for name in ("orloj", "ray"):
        (tools / name).symlink_to(BIN / name)
    work = root / "work"  # the README's relative paths: .venv and examples/ as in the repository
    work.mkdir()
    (work / ".venv").symlink_to(Path(sys.prefix))
    (work / "examples").symlink_to(REPO / "examples")
    temp = tempfile.mkdtemp(prefix="orloj-rd-", dir="/tmp")  # short: Ray's socket paths must fit 107 chars
    api, dashboard = free_port(), free_port()
    env = {"HOME": os.environ.get("HOME", str(root)), "LANG": "C.UTF-8", "PATH": f"{tools}:/usr/bin:/bin",
           "ORLOJ_HOME": str(root / "home"), "ORLOJ_SERVER": f"http://127.0.0.1:{api}",
           "ORLOJ_DASHBOARD_PORT": str(dashboard), "ORLOJ_RAY_TEMP_DIR": temp,
           "XDG_CONFIG_HOME": str(root / "config")}
    assert shutil.which("python", path=env["PATH"]) is None  # the job's `python` must come from orloj up
    yield {"env": env, "work": work, "temp": temp, "api": f"http://127.0.0.1:{api}",
           "dashboard": f"http://127.0.0.1:{dashboard}"}
    subprocess.run(["orloj", "down"], env=env, capture_output=True, text=True, timeout=120)
    deadline = time.monotonic() + 30
    while processes_naming(temp) and time.monotonic() < deadline:
        time.sleep(0.5)
    for pid in processes_naming(temp):  # only processes of this module's own Ray
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture(scope="module")
def up(world):
    res = subprocess.run(["orloj", "up", "--detach"], env=world["env"], cwd=world["work"], capture_output=True,
                         text=True, timeout=240)
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"API:        {world['api']}" in res.stdout
    state = json.loads((Path(world["env"]["ORLOJ_HOME"]) / "up.json").read_text())
    assert state["dashboard_url"] == world["dashboard"] and state["ray_address"].startswith("127.0.0.1:")
    return state


def test_quick_start_runs_as_printed(world, up):
    [agent] = readme_blocks("## Quick start", "yaml")
    (world["work"] / "agent.yaml").write_text(agent)
    [script] = readme_blocks("## Quick start", "sh")
    res = bash(script, world["env"], world["work"])
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-4000:]
    assert "orloj-ray is already running" in res.stdout  # the block's own `orloj up --detach`
    assert "applied modelendpoint/default" in res.stdout and "applied task/my-project-task" in res.stdout
    assert ("applied agentrole/compliance-checker-grants (generated from agent/compliance-checker)"
            in res.stdout)
    [expected] = readme_blocks("## Quick start", "text")
    assert expected.strip() in res.stderr, res.stderr  # the warning exactly as the README shows it
    assert "errors:     none" in res.stdout and "tasks:      " in res.stdout
    agent = httpx.get(f"{world['api']}/v1/agents/compliance-checker", timeout=10).json()
    deadline = time.monotonic() + 30  # served by `default`: the reconciler finds its model
    while agent.get("status", {}).get("phase") != "Ready" and time.monotonic() < deadline:
        time.sleep(0.5)
        agent = httpx.get(f"{world['api']}/v1/agents/compliance-checker", timeout=10).json()
    assert agent["status"]["phase"] == "Ready", agent["status"]


def test_status_lists_what_is_in_error_with_its_reason(world, up):
    doc = ("apiVersion: orloj.dev/v1\nkind: Agent\nmetadata: {name: lost-agent, namespace: qs-errors}\n"
           "spec: {model_ref: no-such-endpoint, prompt: hi}\n")
    res = subprocess.run(["orloj", "apply", "-f", "-"], input=doc, env=world["env"], capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert "warning: agent/lost-agent: missing in namespace qs-errors: model endpoint no-such-endpoint" in res.stderr
    deadline = time.monotonic() + 30
    while True:
        res = subprocess.run(["orloj", "status", "-n", "qs-errors"], env=world["env"], capture_output=True,
                             text=True, timeout=60)
        if "agent/lost-agent Error:" in res.stdout or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert res.returncode == 0, res.stderr
    assert "errors:     1" in res.stdout and 'model endpoint "no-such-endpoint" not found' in res.stdout, res.stdout
    assert "namespace:  qs-errors" in res.stdout and "tasks:      0" in res.stdout
    view = json.loads(subprocess.run(["orloj", "status", "-o", "json"], env=world["env"], capture_output=True,
                                     text=True, timeout=60).stdout)
    assert {"kind": "Agent", "name": "lost-agent", "namespace": "qs-errors"}.items() <= view["errors"][0].items()
    assert view["drivers"] == {"RAY_ADDRESS": up["ray_address"], "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


def test_tour_and_driver_lines_run_as_printed(world, up):
    blocks = readme_blocks("## A short tour", "sh")
    assert readme_blocks(DRIVERS, "sh")[0] in blocks
    res = bash("\n".join(blocks), world["env"], world["work"])
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-4000:]
    assert f"drivers:    export RAY_ADDRESS={up['ray_address']} RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0" in res.stdout
    assert "applied task/demo-task" in res.stdout and "edge AI chips" in res.stdout  # orloj run's output
    assert "trace (one line per agent step):" in res.stdout and "execution order:" in res.stdout  # the Python driver
    # the driver lines: `ray status`, `ray list actors` and ray.init(address="auto") reached this cluster
    assert "Resources" in res.stdout and "orloj:supervisor" in res.stdout and "orloj:store" in res.stdout
    assert "'CPU':" in res.stdout, out[-3000:]


def test_jobs_run_as_printed_on_the_cluster_orloj_up_started(world, up):
    """Submitted from a PATH without the venv to a cluster whose PATH has none either: the jobs'
    `python` is the one orloj up put first. The control-plane job finds orloj up's control plane
    and leaves it alone, also when it is stopped."""
    [script] = readme_blocks("### `ray job submit`", "bash")
    script = script.replace("http://127.0.0.1:8265", world["dashboard"])
    before = httpx.get(f"{world['api']}/v1/tasks", params={"namespace": "default"}, timeout=10).json()["items"]
    res = bash(script, world["env"], REPO)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-4000:]
    assert "applied task/bp-pipeline-task" in res.stdout and "1 task succeeded" in res.stdout, out[-3000:]
    env = {**world["env"], "RAY_ADDRESS": world["dashboard"]}
    deadline = time.monotonic() + 60
    while True:
        job = httpx.get(f"{world['dashboard']}/api/jobs/orloj-control-plane", timeout=10).json()
        if job.get("status") in ("FAILED", "SUCCEEDED", "STOPPED") or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert job["status"] == "FAILED", job  # it refused to start
    logs = subprocess.run(["ray", "job", "logs", "orloj-control-plane"], env=env, capture_output=True, text=True,
                          timeout=60).stdout
    assert "an orloj-ray control plane already runs on this Ray cluster" in logs, logs[-3000:]
    # the job's driver reached this cluster, not another of the machine's (ray_current_cluster)
    assert f"GCS {up['ray_address']}; its API is {world['api']}" in logs and f"pid {up['pid']}" in logs, logs[-3000:]
    subprocess.run(["ray", "job", "stop", "orloj-control-plane"], env=env, capture_output=True, text=True,
                   timeout=60)
    after = httpx.get(f"{world['api']}/v1/tasks", params={"namespace": "default"}, timeout=10).json()["items"]
    names = {t["metadata"]["name"] for t in after}
    assert {t["metadata"]["name"] for t in before} <= names and "bp-pipeline-task" in names  # the store survived


def test_down_stops_exactly_what_up_started(world, up):
    res = subprocess.run(["orloj", "down"], env=world["env"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    deadline = time.monotonic() + 30
    while processes_naming(world["temp"]) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not processes_naming(world["temp"]), "processes of the Ray that orloj up started outlived orloj down"

"""`ray job submit` as the way in, on a real `ray start --head` cluster on loopback.

The control plane is one job (`python -m cluster.up --address auto`, running until stopped),
the manifests another (`python -m orloj_ray.jobs.apply ... --run --wait`): the README's block,
extracted from README.md and run as printed (its 8265 made this cluster's dashboard port),
from a shell whose PATH has no venv, only `ray` linked in. The cluster is started from
orloj-ray's environment, as the README says, with ORLOJ_SERVER naming a free port (the control
plane binds it, the apply job talks to it). It is this module's own: its own temp dir and
ports, started with `ray start --head --block` so that stopping that one process stops exactly
this cluster (a plain `ray stop` would stop every Ray on the machine).

Runs in a pytest process of its own (``own_process``), before the suite's shared Ray cluster starts.
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
import uuid
from pathlib import Path

import httpx
import pytest
from tests_support import free_port, processes_naming, readme_blocks

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
pytestmark = [pytest.mark.slow, pytest.mark.own_process]


def _wait_healthz(url: str, timeout: float, job: tuple[str, str] | None = None) -> bool:
    """Poll ``/healthz``; gives up early when ``job`` (dashboard address, submission id) has ended."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=2.0).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        if job is not None:
            try:
                state = httpx.get(f"{job[0]}/api/jobs/{job[1]}", timeout=5.0).json().get("status")
            except (httpx.HTTPError, ValueError):
                state = None
            if state in ("FAILED", "STOPPED", "SUCCEEDED"):
                return False
        time.sleep(0.5)
    return False


@pytest.fixture(scope="module")
def head():
    """A `ray start --head` cluster (dashboard on, for the job API) on 127.0.0.1; stopped after."""
    import ray

    assert not ray.is_initialized(), "this module must run before the shared Ray cluster starts"
    temp_dir = tempfile.mkdtemp(prefix="orloj-rj-", dir="/tmp")  # short: Ray's socket paths must fit 107 chars
    dashboard = free_port()
    api = f"http://127.0.0.1:{free_port()}"
    # started from orloj-ray's environment (its bin first on PATH, as an activated venv does)
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", "RAY_SCHEDULER_EVENTS": "0",
           "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
           "ORLOJ_SERVER": api}
    env.pop("RAY_ADDRESS", None)
    cmd = [str(BIN / "ray"), "start", "--head", "--block", "--node-ip-address", "127.0.0.1",
           "--port", str(free_port()), "--num-cpus", "2", "--disable-usage-stats", "--temp-dir", temp_dir,
           "--include-dashboard", "true", "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dashboard),
           "--dashboard-agent-listen-port", str(free_port()), "--ray-client-server-port", str(free_port()),
           "--metrics-export-port", str(free_port())]
    log = open(Path(temp_dir) / "ray-start.log", "w")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    address = f"http://127.0.0.1:{dashboard}"
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, (Path(temp_dir) / "ray-start.log").read_text()[-3000:]
            try:
                if httpx.get(f"{address}/api/version", timeout=2.0).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the Ray dashboard did not come up within 90s"
            time.sleep(0.5)
        yield {"address": address, "env": {**env, "RAY_ADDRESS": address}, "temp_dir": temp_dir, "api": api}
    finally:
        proc.send_signal(signal.SIGTERM)  # `ray start --block` stops the processes it started
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        deadline = time.monotonic() + 30
        while processes_naming(temp_dir) and time.monotonic() < deadline:
            time.sleep(0.5)
        leftover = processes_naming(temp_dir)
        for pid in leftover:  # only processes whose command line names this module's temp dir
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(temp_dir, ignore_errors=True)
        assert not leftover, f"Ray processes outlived `ray start --block`: {leftover}"


def ray_cli(head, *args, timeout=240):
    return subprocess.run([str(BIN / "ray"), *args], cwd=REPO, env=head["env"], capture_output=True, text=True,
                          timeout=timeout)


# The README's lines, plus `--runtime-env-json` to leave out a local cache folder and to give the
# control plane time to undeploy on `ray job stop` (Ray's default is 3 s, then SIGKILL).
RUNTIME_ENV = json.dumps({"excludes": [".cache", ".venv", ".git"],
                          "env_vars": {"RAY_JOB_STOP_WAIT_TIME_S": "60"}})


@pytest.fixture(scope="module")
def plain_shell(head, tmp_path_factory):
    """A submitting shell without the venv on PATH: only `ray` linked in, no `python` at all."""
    tools = tmp_path_factory.mktemp("tools")
    (tools / "ray").symlink_to(BIN / "ray")
    return {"HOME": os.environ.get("HOME", "/root"), "LANG": "C.UTF-8", "PATH": f"{tools}:/usr/bin:/bin"}


@pytest.fixture(scope="module")
def control_plane(head, plain_shell):
    """The README's two jobs, as printed: the control plane, then the pipeline run and waited for."""
    [script] = readme_blocks("### `ray job submit`", "bash")
    assert "export RAY_ADDRESS=http://127.0.0.1:8265" in script and "--submission-id orloj-control-plane" in script
    res = subprocess.run(["/bin/bash", "-e", "-o", "pipefail", "-c", script.replace("http://127.0.0.1:8265", head["address"])],
                         cwd=REPO, env=plain_shell, capture_output=True, text=True, timeout=600)
    job_id, url = "orloj-control-plane", head["api"]
    if not _wait_healthz(url, 120, (head["address"], job_id)):
        logs = ray_cli(head, "job", "logs", job_id)
        pytest.fail(f"the control-plane job did not serve {url}/healthz:\n{logs.stdout[-3000:]}\n{res.stderr[-2000:]}")
    yield {"url": url, "job_id": job_id, "readme": res}
    ray_cli(head, "job", "stop", job_id, timeout=120)


def test_the_readme_jobs_run_the_pipeline_to_success(head, control_plane):
    res = control_plane["readme"]
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    out = res.stdout
    for line in ("applied modelendpoint/", "applied agentsystem/bp-pipeline-system", "applied task/bp-pipeline-task",
                 "task/bp-pipeline-task: Succeeded; final_output:", "1 task succeeded"):
        assert line in out, out[-3000:]
    assert out.count(": agent ") == 3 and out.count(" done (") == 3  # one progress line per agent step
    task = httpx.get(f"{control_plane['url']}/v1/tasks/bp-pipeline-task", timeout=10).json()
    assert task["status"]["phase"] == "Succeeded"


def test_a_second_control_plane_refuses_and_stopping_it_leaves_the_first_alone(head, control_plane, plain_shell):
    job_id = f"orloj-second-{uuid.uuid4().hex[:8]}"
    res = ray_cli(head, "job", "submit", "--submission-id", job_id, "--working-dir", ".",
                  "--runtime-env-json", RUNTIME_ENV, "--", "python", "-m", "cluster.up", "--address", "auto",
                  "--port", str(free_port()))
    assert res.returncode != 0
    logs = ray_cli(head, "job", "logs", job_id).stdout
    assert "an orloj-ray control plane already runs on this Ray cluster" in logs, logs[-3000:]
    assert f"its API is {control_plane['url']}" in logs and "started by ray job orloj-control-plane" in logs, logs
    ray_cli(head, "job", "stop", job_id, timeout=120)
    assert _wait_healthz(control_plane["url"], 10)  # the first one still serves, with its data
    task = httpx.get(f"{control_plane['url']}/v1/tasks/bp-pipeline-task", timeout=10).json()
    assert task["status"]["phase"] == "Succeeded"


def test_orloj_up_refuses_to_start_beside_a_ray_start_cluster(head, control_plane, tmp_path):
    env = {**head["env"], "ORLOJ_HOME": str(tmp_path), "ORLOJ_SERVER": f"http://127.0.0.1:{free_port()}",
           "ORLOJ_RAY_TEMP_DIR": head["temp_dir"]}
    env.pop("RAY_ADDRESS")
    res = subprocess.run([str(BIN / "orloj"), "up", "--detach"], env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 1, res.stdout + res.stderr
    assert f"a Ray cluster is already running in {head['temp_dir']}" in res.stderr and "--address auto" in res.stderr


def test_resubmitting_runs_the_task_again_under_a_new_name(head, control_plane):
    res = ray_cli(head, "job", "submit", "--working-dir", ".", "--runtime-env-json", RUNTIME_ENV, "--",
                  "python", "-m", "orloj_ray.jobs.apply", "-f", "examples/blueprints/pipeline/task.yaml", "--wait",
                  "--server", control_plane["url"], "--timeout", "120")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "applied task/bp-pipeline-task-" in res.stdout and "1 task succeeded" in res.stdout


def test_a_failing_task_fails_the_job_with_the_reason(head, control_plane, tmp_path):
    (tmp_path / "task.yaml").write_text(
        "apiVersion: orloj.dev/v1\nkind: Task\nmetadata:\n  name: jobs-missing-system\n"
        "spec:\n  system: no-such-system\n  input:\n    topic: x\n")
    res = ray_cli(head, "job", "submit", "--working-dir", ".", "--runtime-env-json", RUNTIME_ENV, "--",
                  "python", "-m", "orloj_ray.jobs.apply", "-f", str(tmp_path / "task.yaml"), "--wait",
                  "--server", control_plane["url"], "--timeout", "60")
    assert res.returncode != 0
    assert "error: task/jobs-missing-system ended Failed" in res.stdout and "no-such-system" in res.stdout


def test_stopping_the_control_plane_job_undeploys_it(head, control_plane):
    res = ray_cli(head, "job", "stop", control_plane["job_id"], timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    deadline = time.monotonic() + 90  # SIGTERM, undeploy, exit (SIGKILL only after RAY_JOB_STOP_WAIT_TIME_S)
    while time.monotonic() < deadline:
        job = httpx.get(f"{head['address']}/api/jobs/{control_plane['job_id']}", timeout=5).json()
        if job.get("status") == "STOPPED" and job.get("end_time"):
            break
        time.sleep(1)
    assert job.get("status") == "STOPPED", job
    logs = ray_cli(head, "job", "logs", control_plane["job_id"]).stdout
    assert "orloj-ray is up" in logs and "shutting down" in logs, logs[-3000:]
    assert not _wait_healthz(control_plane["url"], 2), "the API still answers after the job stopped"
    res = ray_cli(head, "list", "actors", "--address", head["address"], "--filter", "state=ALIVE", "--format", "json",
                  "--limit", "1000")
    assert res.returncode == 0, res.stderr
    names = {a.get("name") for a in json.loads(res.stdout)}
    assert not {n for n in names if n and n.startswith("orloj:")}, names  # store, supervisor, agents removed


def test_the_rayservice_serve_config_runs_the_control_plane(head, control_plane):
    """What KubeRay does with cluster/k8s/rayservice.yaml: PUT its serveConfigV2 to the dashboard's
    Serve API. Here on loopback (auth off) and on the port Serve's proxy already has."""
    import yaml

    docs = [d for d in yaml.safe_load_all((REPO / "cluster/k8s/rayservice.yaml").read_text()) if d]
    config = yaml.safe_load(next(d for d in docs if d["kind"] == "RayService")["spec"]["serveConfigV2"])
    port = int(control_plane["url"].rsplit(":", 1)[1])
    config["http_options"] = {"host": "127.0.0.1", "port": port}
    app = config["applications"][0]
    app["args"]["host"] = "127.0.0.1"
    app["deployments"][0]["num_replicas"] = 1
    if _wait_healthz(control_plane["url"], 1):  # the control-plane job is stopped by the test above
        ray_cli(head, "job", "stop", control_plane["job_id"], timeout=120)
    res = httpx.put(f"{head['address']}/api/serve/applications/", json=config, timeout=60)
    assert res.status_code == 200, res.text
    try:
        deadline = time.monotonic() + 120
        while not _wait_healthz(control_plane["url"], 2):
            status = httpx.get(f"{head['address']}/api/serve/applications/", timeout=10).json()
            state = ((status.get("applications") or {}).get("orloj") or {})
            assert state.get("status") != "DEPLOY_FAILED", state.get("message")
            assert time.monotonic() < deadline, f"the Serve app did not come up: {state}"
        res = ray_cli(head, "job", "submit", "--working-dir", ".", "--runtime-env-json", RUNTIME_ENV, "--",
                      "python", "-m", "orloj_ray.jobs.apply", "-f", "examples/blueprints/pipeline", "--run", "--wait",
                      "--server", control_plane["url"], "--timeout", "120")
        assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
        assert "task/bp-pipeline-task: Succeeded" in res.stdout
        runtime = httpx.get(f"{control_plane['url']}/v1/runtime", timeout=10).json()
        assert runtime["ray"]["address"].startswith("127.0.0.1:")
    finally:
        httpx.delete(f"{head['address']}/api/serve/applications/", timeout=60)


# -- the entry point's own rules, without Ray (an API server in-process, no supervisor) ---------


def test_apply_entry_point_exit_codes(tmp_path):
    from live_server import LiveServer
    from orloj_ray.jobs.apply import main
    from orloj_ray.store import MemoryStore
    from serve.app import create_app

    (tmp_path / "bad.yaml").write_text("apiVersion: orloj.dev/v1\nkind: Agent\nmetadata:\n  name: a\nspec:\n  limits: 3\n")
    lines: list[str] = []
    assert main(["-f", str(tmp_path / "bad.yaml"), "--server", "http://127.0.0.1:9"], out=lines.append) == 2
    assert lines[-1] == "error: 1 invalid document; nothing was applied" and str(tmp_path / "bad.yaml") in lines[0]

    lines.clear()
    started = time.monotonic()
    assert main(["-f", "examples/blueprints/pipeline/model-endpoint.yaml", "--server", "http://127.0.0.1:9",
                 "--server-timeout", "0.5"], out=lines.append) == 1
    assert time.monotonic() - started < 5 and "did not answer /healthz within 0.5s" in lines[-1]

    with LiveServer(create_app(MemoryStore())) as server:
        lines.clear()
        pipeline = str(REPO / "examples/blueprints/pipeline")
        assert main(["-f", pipeline, "--server", server.url, "--wait"], out=lines.append) == 0
        assert any(line.startswith("skipped task/bp-pipeline-task") for line in lines)
        assert lines[-1] == "no tasks to wait for"
        lines.clear()  # nothing runs tasks here: the wait times out and says where the task was
        assert main(["-f", pipeline, "--server", server.url, "--run", "--wait", "--timeout", "1", "-n", "jobs"],
                    out=lines.append) == 1
        assert "task/bp-pipeline-task: Pending" in lines
        assert any("timed out after" in line and "bp-pipeline-task" in line for line in lines)
        assert lines[-1] == "error: 1 of 1 task did not succeed"


def test_a_job_under_another_python_says_which_and_how_to_fix_it(tmp_path):
    """`python` on a cluster's PATH that is not orloj-ray's: the entry points stop at once with the
    fix, not with a traceback about httpx."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "bare")], check=True, timeout=120)
    bare = str(tmp_path / "bare" / "bin" / "python")
    for module in ("orloj_ray.jobs.apply", "cluster.up"):
        res = subprocess.run([bare, "-m", module, "-f", "x"], cwd=REPO, capture_output=True, text=True, timeout=60)
        assert res.returncode == 2, res.stderr
        assert f"error: {module} runs under {bare}, which lacks" in res.stderr and "Traceback" not in res.stderr
        assert "activate it before `ray start`" in res.stderr and '"PATH": "/path/to/orloj-ray-env/bin:${PATH}"' in res.stderr

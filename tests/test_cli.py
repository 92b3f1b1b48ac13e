"""The CLI without a server: validate, apply's local validation, init, blueprints, tables,
status/up/down process handling (``up`` runs against a fake ``cluster.up`` module)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from rich.console import Console

from orloj_ray.cli import render, scaffold
from orloj_ray.cli.main import hoist_global_flags, main
from tests_support import free_port

REPO = Path(__file__).resolve().parent.parent
UPSTREAM = REPO / "tests" / "conformance" / "upstream-examples"
BAD = """\
apiVersion: orloj.dev/v1
kind: Agent
metadata:
  name: broken-agent
spec:
  prompt: no model here
---
apiVersion: orloj.dev/v1
kind: Tool
metadata:
  name: t
spec:
  type: carrier-pigeon
"""


def orloj(*args: str, env: dict | None = None, cwd: Path | None = None, timeout: float = 60):
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.run([sys.executable, "-m", "orloj_ray.cli.main", *args], capture_output=True, text=True,
                          env=full_env, cwd=cwd or REPO, timeout=timeout)


# ---------------------------------------------------------------- validate / apply


def test_validate_accepts_every_upstream_example(capsys):
    assert main(["validate", "-f", str(UPSTREAM)]) == 0
    out = capsys.readouterr().out
    assert out.rstrip().endswith("98 valid")
    assert "  valid  agentsystem/bp-pipeline-system  (" in out


def test_validate_bad_file_names_file_document_and_field(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD)
    (tmp_path / "good.yaml").write_text((REPO / "examples/blueprints/pipeline/model-endpoint.yaml").read_text())
    assert main(["validate", "-f", str(tmp_path)]) == 1
    out, err = capsys.readouterr()
    assert "valid  modelendpoint/openai-default" in out
    assert "1 valid, 2 invalid:" in err
    assert f"  error  {bad}: document 1: spec.model_ref is required" in err
    assert f"{bad}: document 2: spec.type" in err and "carrier-pigeon" in err


def test_validate_missing_path(tmp_path, capsys):
    assert main(["validate", "-f", str(tmp_path / "nope")]) == 1
    assert "no such file or directory" in capsys.readouterr().err


def test_apply_invalid_never_contacts_the_server(tmp_path):
    (tmp_path / "bad.yaml").write_text(BAD)
    with socket.socket() as listener:  # a port that would accept, to prove nobody connects
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        listener.setblocking(False)
        port = listener.getsockname()[1]
        res = orloj("apply", "-f", str(tmp_path), env={"ORLOJ_SERVER": f"http://127.0.0.1:{port}"})
        with pytest.raises(BlockingIOError):
            listener.accept()
    assert res.returncode == 1
    assert f"error: {tmp_path / 'bad.yaml'}: document 1: spec.model_ref is required" in res.stderr
    assert "document 2: spec.type" in res.stderr
    assert "nothing was applied" in res.stderr
    assert "cannot reach" not in res.stderr and res.stdout == ""


def test_apply_valid_with_no_server_says_how_to_start_it(tmp_path):
    res = orloj("apply", "-f", str(REPO / "examples/blueprints/pipeline/model-endpoint.yaml"),
                env={"ORLOJ_SERVER": f"http://127.0.0.1:{free_port()}"})
    assert res.returncode == 1
    assert "cannot reach orloj-ray at http://127.0.0.1:" in res.stderr and "orloj up" in res.stderr


def test_plan_skips_runnable_tasks_in_directories_unless_run():
    from orloj_ray.client import plan_apply

    bp = REPO / "examples/blueprints/pipeline"
    plan = plan_apply(str(bp))
    assert [p.ref for p in plan.skipped] == ["task/bp-pipeline-task"]
    assert "task/bp-pipeline-task" not in [p.ref for p in plan.objects]
    assert len(plan.objects) == 5
    assert "task/bp-pipeline-task" in [p.ref for p in plan_apply(str(bp), run=True).objects]
    single = plan_apply(str(bp / "task.yaml"), namespace="team-a")
    assert [p.ref for p in single.objects] == ["task/bp-pipeline-task"]
    assert single.objects[0].doc["metadata"]["namespace"] == "team-a"


def test_plan_accepts_dicts_and_expands_dialect_agents():
    from orloj_ray.client import plan_apply
    from orloj_ray.resources import ManifestErrors

    agent = {"apiVersion": "orloj.dev/v1", "kind": "Agent", "metadata": {"name": "a"},
             "spec": {"model_ref": "m", "governance": {"maxTokensPerMinute": 10}}}
    objs = plan_apply([agent]).objects
    assert [p.ref for p in objs] == ["agentpolicy/a-governance", "agent/a"]  # referenced kinds first
    assert objs[0].generated_from == "agent/a"
    with pytest.raises(ManifestErrors) as info:
        plan_apply([{"kind": "Agent", "metadata": {"name": "x"}, "spec": {}}])
    assert "spec.model_ref is required" in str(info.value.errors[0])


# ---------------------------------------------------------------- init / blueprints


@pytest.mark.parametrize("blueprint", sorted(scaffold.BLUEPRINTS))
def test_init_scaffolds_a_valid_project(tmp_path, monkeypatch, capsys, blueprint):
    monkeypatch.chdir(tmp_path)
    assert main(["init", "acme", "--blueprint", blueprint]) == 0
    files = sorted(str(p.relative_to(tmp_path / "acme")) for p in (tmp_path / "acme").rglob("*") if p.is_file())
    assert {"agent-system.yaml", "task.yaml", "model-endpoint.yaml", "README.md"} <= set(files)
    assert any(f.startswith("agents/") for f in files)
    capsys.readouterr()
    assert main(["validate", "-f", "acme"]) == 0
    out = capsys.readouterr().out
    names = [line.split()[1].split("/", 1)[1] for line in out.splitlines() if line.startswith("  valid")]
    assert names and all(n.startswith("acme-") or n == "default" for n in names), names
    assert "agentsystem/acme-system" in out and "task/acme-task" in out
    text = (tmp_path / "acme" / "model-endpoint.yaml").read_text()
    assert "provider: mock" in text and "orloj create secret openai-api-key --from-literal value=sk-" in text
    assert "bp-" not in "".join((tmp_path / "acme" / f).read_text() for f in files)
    agents = "".join(p.read_text() for p in (tmp_path / "acme" / "agents").glob("*.yaml"))
    assert "model_ref: default" in agents and "openai-default" not in agents + text  # the namespace's default


def test_init_refuses_bad_names_and_existing_dirs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["init", "Bad_Name"]) == 2
    assert main(["init", "x", "--blueprint", "star"]) == 2
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "f").write_text("x")
    assert main(["init", "taken"]) == 1
    assert "already exists" in capsys.readouterr().err


@pytest.mark.parametrize("blueprint", sorted(scaffold.BLUEPRINTS))
def test_examples_match_packaged_templates_and_upstream(blueprint):
    templates = scaffold.template_files(blueprint)
    example_dir = REPO / "examples" / "blueprints" / blueprint
    examples = {str(p.relative_to(example_dir)): p.read_text() for p in example_dir.rglob("*.yaml")}
    assert examples == templates, (f"examples/blueprints/{blueprint} differs from orloj_ray/cli/blueprints/"
                                   f"{blueprint}: copy the templates over")
    upstream = UPSTREAM / "blueprints" / blueprint
    if upstream.exists():
        for p in upstream.rglob("*.yaml"):
            assert templates[str(p.relative_to(upstream))] == p.read_text()


# ---------------------------------------------------------------- rendering


def _plain(table) -> str:
    con = Console(width=250, record=True, file=open(os.devnull, "w"))
    con.print(table)
    return con.export_text()


def test_task_table_columns_and_error_truncation():
    items = [{"metadata": {"name": "t1", "namespace": "default"}, "spec": {"system": "s", "priority": "high"},
              "status": {"phase": "Failed", "attempts": 2, "lastError": "e" * 100}},
             {"metadata": {"name": "t2", "namespace": "team"}, "spec": {"system": "s"}, "status": {}}]
    headers, rows = render.resource_rows("Task", items)
    assert headers == ["NAMESPACE", "NAME", "SYSTEM", "PRIORITY", "STATUS", "ATTEMPTS", "ASSIGNED_WORKER",
                       "CLAIMED_BY", "LEASE_UNTIL", "NEXT_ATTEMPT", "LAST_ERROR"]
    assert rows[0][:6] == ["default", "t1", "s", "high", "Failed", "2"]
    assert rows[0][-1] == "e" * 77 + "..."
    assert rows[1][5] == "0" and rows[1][4] == "-"
    text = _plain(render.table(headers, rows))
    assert "LAST_ERROR" in text and "t2" in text


@pytest.mark.parametrize("kind,expected", [
    ("Agent", ["NAME", "MODEL_REF", "STATUS", "TOOLS"]),
    ("AgentSystem", ["NAME", "STATUS", "AGENTS"]),
    ("ModelEndpoint", ["NAME", "PROVIDER", "BASE_URL", "DEFAULT_MODEL", "STATUS"]),
    ("ToolApproval", ["NAME", "TASK", "TOOL", "OPERATION", "AGENT", "PHASE", "EXPIRES_AT", "DECIDED_BY"]),
    ("Worker", ["NAME", "REGION", "GPU", "MAX_CONCURRENCY", "STATUS", "LAST_HEARTBEAT"]),
])
def test_columns_follow_orlojctl(kind, expected):
    headers, _ = render.resource_rows(kind, [{"metadata": {"name": "x"}}])
    assert headers == expected


def test_agent_row_counts_tools():
    _, rows = render.resource_rows("Agent", [{"metadata": {"name": "a"}, "spec": {"model_ref": "m", "tools": ["x", "y"]},
                                              "status": {"phase": "Ready"}}])
    assert rows == [["a", "m", "Ready", "2"]]


def test_trace_rows_use_output_models():
    task = {"status": {"trace": [{"timestamp": "2026-03-29T10:00:01.123456Z", "type": "agent_end", "agent": "w",
                                  "tokens": 7, "latency_ms": 12, "message": "done"}],
                       "output": {"agent.1.name": "w", "agent.1.model": "gpt-4o"}}}
    headers, rows = render.trace_rows(task)
    assert headers == ["TIME", "TYPE", "AGENT", "MODEL", "TOKENS", "LATENCY", "MESSAGE"]
    assert rows == [["10:00:01.123", "agent_end", "w", "gpt-4o", "7", "12ms", "done"]]
    assert render.agents_done(task) == ["w"]


def test_global_flags_are_hoisted():
    assert hoist_global_flags(["get", "tasks", "--server", "u", "-o", "json"]) == ["--server", "u", "get", "tasks",
                                                                                   "-o", "json"]
    assert hoist_global_flags(["run", "--api-token=t", "k=--server"]) == ["--api-token=t", "run", "k=--server"]


# ---------------------------------------------------------------- status / up / down


def test_status_without_server_exits_1_with_hint(tmp_path):
    res = orloj("status", env={"ORLOJ_SERVER": f"http://127.0.0.1:{free_port()}", "ORLOJ_HOME": str(tmp_path)})
    assert res.returncode == 1
    assert "health:     unreachable" in res.stdout
    assert "cannot reach orloj-ray at http://127.0.0.1:" in res.stderr and "`orloj up`" in res.stderr


def test_version():
    res = orloj("--version")
    assert res.returncode == 0 and res.stdout.startswith("orloj-ray ")


def test_down_without_state(tmp_path):
    res = orloj("down", env={"ORLOJ_HOME": str(tmp_path)})
    assert res.returncode == 0
    assert res.stdout.strip() == f"nothing to stop (no orloj up state in {tmp_path})"


def test_up_refuses_a_busy_port(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        res = orloj("up", "--port", str(port), env={"ORLOJ_HOME": str(tmp_path)})
    assert res.returncode == 1
    assert (f"port {port} is in use (is orloj already running? try 'orloj status' or 'orloj down', "
            f"or pass --port)") in res.stderr


FAKE_CLUSTER_UP = textwrap.dedent('''
    """Stand-in for the lead's cluster.up: serve /healthz, write the state file, stop on SIGTERM."""
    import argparse, json, os, signal, sys, threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    p = argparse.ArgumentParser()
    p.add_argument("--host"); p.add_argument("--port", type=int); p.add_argument("--state-file")
    p.add_argument("--address"); p.add_argument("--mode")
    a = p.parse_args()
    if os.environ.get("FAKE_UP_FAIL"):
        print("ray failed to start: boom", flush=True)
        sys.exit(3)

    class H(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass
        def do_GET(self):
            body = json.dumps({"status": "ok"}).encode()
            self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
            self.wfile.write(body)

    srv = HTTPServer((a.host, a.port), H)
    def stop(*_):
        os.unlink(a.state_file)
        threading.Thread(target=srv.shutdown).start()
    signal.signal(signal.SIGTERM, stop)
    with open(a.state_file, "w") as f:
        json.dump({"pid": os.getpid(), "api_url": f"http://{a.host}:{a.port}", "ray_address": "127.0.0.1:6379",
                   "dashboard_url": "http://127.0.0.1:8265", "log_file": "/tmp/x.log", "started_ray": True,
                   "store": "memory", "log": "memory"}, f)
    print("serving", flush=True)
    srv.serve_forever()
''')


@pytest.fixture
def fake_cluster(tmp_path):
    pkg = tmp_path / "work" / "cluster"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "up.py").write_text(FAKE_CLUSTER_UP)
    return tmp_path / "work", tmp_path / "home"


@pytest.mark.slow
def test_up_detach_status_down(fake_cluster):
    cwd, home = fake_cluster
    port = free_port()
    env = {"ORLOJ_HOME": str(home), "ORLOJ_SERVER": f"http://127.0.0.1:{port}"}
    res = orloj("up", "--detach", "--port", str(port), env=env, cwd=cwd)
    assert res.returncode == 0, res.stderr
    assert f"API:        http://127.0.0.1:{port}" in res.stdout
    assert "Dashboard:  http://127.0.0.1:8265" in res.stdout
    state = json.loads((home / "up.json").read_text())
    assert (home / "orloj-up.log").exists()
    try:
        again = orloj("up", "--detach", "--port", str(port), env=env, cwd=cwd)  # the goal is met: a no-op
        assert again.returncode == 0 and f"already running (pid {state['pid']}" in again.stdout, again.stderr
        other = orloj("up", "--detach", "--port", str(free_port()), env=env, cwd=cwd)  # another port: not the goal
        assert other.returncode == 1 and "already running" in other.stderr
        assert (home / "up.json").exists() and json.loads((home / "up.json").read_text())["pid"] == state["pid"]
        st = orloj("status", env=env, cwd=cwd)
        assert "health:     ok" in st.stdout
    finally:
        down = orloj("down", env=env, cwd=cwd)
    assert down.returncode == 0, down.stderr
    assert f"stopped orloj-ray (pid {state['pid']}" in down.stdout
    assert not (home / "up.json").exists()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.kill(state["pid"], 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        pytest.fail("server process still alive after down")


def test_up_detach_child_exits_early_shows_log(fake_cluster):
    cwd, home = fake_cluster
    res = orloj("up", "--detach", "--port", str(free_port()), env={"ORLOJ_HOME": str(home), "FAKE_UP_FAIL": "1"},
                cwd=cwd)
    assert res.returncode == 1
    assert "exited during startup (exit code 3)" in res.stderr
    assert "ray failed to start: boom" in res.stderr


def test_apply_reads_manifests_from_stdin(cli_env):
    import subprocess

    doc = ("apiVersion: orloj.dev/v1\nkind: ModelEndpoint\nmetadata: {name: stdin-endpoint}\n"
           "spec: {provider: mock, default_model: m}\n")
    res = subprocess.run(["orloj", "apply", "-f", "-"], input=doc, env=cli_env, capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 0, res.stderr
    assert "applied modelendpoint/stdin-endpoint" in res.stdout.lower()


def test_global_flags_move_to_the_front_except_a_profiles_own():
    from orloj_ray.cli.main import hoist_global_flags

    assert hoist_global_flags(["get", "agents", "--server", "u", "-o", "json"]) == ["--server", "u", "get", "agents",
                                                                                 "-o", "json"]
    assert hoist_global_flags(["get", "agents", "config", "--api-token=t"]) == ["--api-token=t", "get", "agents",
                                                                               "config"]
    assert hoist_global_flags(["--server", "u", "config", "set-profile", "p", "--server", "v"]) == [
        "--server", "u", "config", "set-profile", "p", "--server", "v"]

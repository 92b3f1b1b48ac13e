"""The CLI and the Python client against the real control plane (Ray Serve on the shared
cluster): apply a blueprint, run it, follow and inspect it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from orloj_ray.client import Client

REPO = Path(__file__).resolve().parent.parent
PIPELINE = REPO / "examples" / "blueprints" / "pipeline"
pytestmark = pytest.mark.slow


def orloj(cli_env, *args: str, timeout: float = 120):
    return subprocess.run([sys.executable, "-m", "orloj_ray.cli.main", *args], capture_output=True, text=True,
                          env=cli_env, cwd=REPO, timeout=timeout)


def test_apply_run_trace_get(cli_env):
    ns = "e2e-cli"
    res = orloj(cli_env, "apply", "-f", str(PIPELINE), "-n", ns)
    assert res.returncode == 0, res.stderr
    assert "skipped task/bp-pipeline-task (mode: run)" in res.stdout
    assert "applied agentsystem/bp-pipeline-system" in res.stdout

    res = orloj(cli_env, "run", "--system", "bp-pipeline-system", "-n", ns, "--name", "cli-run-1",
                "topic=AI chips", "--timeout", "90s")
    assert res.returncode == 0, res.stderr
    assert "AI chips" in res.stdout  # the mock model echoes the topic into the final output
    assert "task cli-run-1: Succeeded" in res.stderr and "task cli-run-1 succeeded (agents=3" in res.stderr
    res = orloj(cli_env, "get", "task", "cli-run-1", "-n", ns, "-o", "json")
    assert json.loads(res.stdout)["status"]["output"]["agents_executed"] == "3"

    res = orloj(cli_env, "trace", "task", "cli-run-1", "-n", ns)
    assert res.returncode == 0, res.stderr
    assert "Phase:           Succeeded" in res.stdout
    for agent in ("bp-pipeline-planner-agent", "bp-pipeline-research-agent", "bp-pipeline-writer-agent"):
        assert agent in res.stdout

    res = orloj(cli_env, "get", "tasks", "-n", ns, "--phase", "Succeeded", "-o", "json")
    assert [t["metadata"]["name"] for t in json.loads(res.stdout)["items"]] == ["cli-run-1"]

    res = orloj(cli_env, "wait", "task/cli-run-1", "-n", ns, "--for", "condition=Complete", "--timeout", "10s")
    assert res.returncode == 0 and "condition met" in res.stdout

    res = orloj(cli_env, "apply", "-f", str(PIPELINE), "-n", ns, "--dry-run")
    assert res.returncode == 0, res.stderr
    assert "5 unchanged" in res.stdout, res.stdout


def test_status_reports_ray_and_tasks(cli_env):
    res = orloj(cli_env, "status")
    assert res.returncode == 0, res.stderr
    assert "health:     ok" in res.stdout and "ray:" in res.stdout and "tasks:" in res.stdout


def test_client_run_task_and_events(orloj_api):
    ns = "e2e-client"
    with Client(orloj_api) as c:
        c.apply(PIPELINE, namespace=ns)
        updates = []
        task = c.run_task("bp-pipeline-system", {"topic": "x"}, namespace=ns, timeout=90,
                          on_update=lambda t: updates.append((t.get("status") or {}).get("phase")))
        assert task["status"]["phase"] == "Succeeded", task["status"].get("lastError")
        assert updates[-1] == "Succeeded" and len(updates) >= 2
        events = list(c.events(0, kind="Task", name=task["metadata"]["name"], namespace=ns, timeout=3))
        assert events, "no events for the task"
        assert c.get("task", task["metadata"]["name"], ns)["status"]["phase"] == "Succeeded"


def test_hierarchical_blueprint_runs_through_apply_run(cli_env):
    ns = "e2e-hier"
    blueprint = REPO / "examples" / "blueprints" / "hierarchical"
    res = orloj(cli_env, "apply", "-f", str(blueprint), "--run", "-n", ns)
    assert res.returncode == 0, res.stderr
    res = orloj(cli_env, "wait", "task/bp-hierarchical-task", "-n", ns, "--for", "condition=Complete",
                "--timeout", "90s")
    assert res.returncode == 0, res.stdout + res.stderr
    task = json.loads(orloj(cli_env, "get", "task", "bp-hierarchical-task", "-n", ns, "-o", "json").stdout)
    (join,) = task["status"]["join_states"]
    assert join["node"] == "bp-hier-editor-agent" and join["activated"] and len(join["sources"]) == 2
    assert task["status"]["output"]["last_agent"] == "bp-hier-editor-agent"


def test_driver_script_runs_the_pipeline(cli_env):
    res = subprocess.run([sys.executable, str(REPO / "examples" / "drivers" / "run_pipeline.py"), "-n", "e2e-driver",
                          "drivers in CI"],
                         capture_output=True, text=True, env=cli_env, cwd=REPO, timeout=180)
    assert res.returncode == 0, res.stdout + res.stderr
    assert ": Succeeded" in res.stdout
    for agent in ("bp-pipeline-planner-agent", "bp-pipeline-research-agent", "bp-pipeline-writer-agent"):
        assert agent in res.stdout




def test_announcement_manifest_applies_and_generates_role_and_policy(cli_env, tmp_path):
    import time

    import yaml

    path = REPO / "examples" / "governance" / "compliance-checker.yaml"
    ns = "e2e-announce"
    res = orloj(cli_env, "apply", "-f", str(path), "-n", ns)
    assert res.returncode == 0, res.stderr
    deadline = time.monotonic() + 30
    while True:
        shown = yaml.safe_load(orloj(cli_env, "get", "agent", "compliance-checker", "-n", ns, "-o", "yaml").stdout)
        if shown["status"].get("generated") or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert shown["spec"]["model"] == "gpt-4"
    # read in upstream's shape as well: tool names, the generated role, the grants beside
    assert shown["spec"]["tools"] == ["scan-documents", "flag-issues"]
    assert shown["spec"]["tool_grants"][1] == {"name": "flag-issues", "permissions": [{"write": "issue_tracker"}]}
    assert shown["spec"]["roles"] == ["compliance-checker-grants"]
    assert shown["spec"]["governance"]["maxTokensPerMinute"] == 8000
    assert shown["status"]["generated"] == ["agentrole/compliance-checker-grants",
                                            "agentpolicy/compliance-checker-governance"]
    roles = orloj(cli_env, "get", "roles", "-n", ns)
    policies = orloj(cli_env, "get", "policies", "-n", ns)
    assert "compliance-checker-grants" in roles.stdout and "compliance_docs:read" in roles.stdout
    assert "compliance-checker-governance" in policies.stdout


def test_wrong_nested_type_is_refused_locally_and_by_the_server(cli_env, orloj_api, tmp_path):
    import httpx

    bad = tmp_path / "bad.yaml"
    bad.write_text(PIPELINE.joinpath("model-endpoint.yaml").read_text() + "---\n" + """\
apiVersion: orloj.dev/v1
kind: Agent
metadata:
  name: typo-agent
spec:
  model_ref: openai-default
  limits:
    max_steps: ten
""")
    ns = "e2e-bad-cli"
    res = orloj(cli_env, "apply", "-f", str(bad), "-n", ns)
    assert res.returncode == 1
    assert str(bad) in res.stderr and "document 2" in res.stderr and "spec.limits.max_steps" in res.stderr
    with httpx.Client(base_url=orloj_api) as http:  # nothing of the rejected batch was stored
        assert http.get("/v1/model-endpoints", params={"namespace": ns}).json()["items"] == []
        assert http.get("/v1/agents/typo-agent", params={"namespace": ns}).status_code == 404

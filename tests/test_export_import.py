"""`orloj export` / `orloj import` against real API servers (uvicorn on loopback, MemoryStore, no
Ray): a backup taken from one server restores into an empty one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from live_server import LiveServer
from orloj_ray import backup
from orloj_ray.client import Client
from orloj_ray.errors import InvalidResource
from orloj_ray.store import MemoryStore
from serve.app import create_app

REPO = Path(__file__).resolve().parent.parent
ORLOJ = Path(sys.executable).parent / "orloj"
SECRET_VALUE = "sk-do-not-leak-4711"


def orloj(server: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "ORLOJ_SERVER": server}
    env.pop("ORLOJCTL_SERVER", None)
    return subprocess.run([str(ORLOJ), *args], env=env, capture_output=True, text=True, timeout=60, input=stdin)


def _set_status(client: Client, name: str, status: dict, namespace: str = "default") -> None:
    """Write a status as a remote worker would: a finished task passes through Running first."""
    steps = [{"phase": "Running"}, status] if status.get("phase") in ("Succeeded", "DeadLetter") else [status]
    for step in steps:
        task = client.get("task", name, namespace)
        client.request("PUT", f"/v1/tasks/{name}/status", params={"namespace": namespace},
                       json_body={"metadata": {"resourceVersion": task["metadata"]["resourceVersion"]}, "status": step})


def _task(name: str, namespace: str = "default") -> dict:
    return {"apiVersion": "orloj.dev/v1", "kind": "Task", "metadata": {"name": name, "namespace": namespace},
            "spec": {"system": "bp-pipeline-system", "input": {"topic": name}}}


@pytest.fixture(scope="module")
def source():
    """A server with a little of everything: the pipeline blueprint, a secret, finished and
    running tasks, a second namespace and a Worker mirrored from a Ray node."""
    with LiveServer(create_app(MemoryStore())) as server, Client(server.url) as c:
        c.apply(str(REPO / "examples/blueprints/pipeline"))
        c.create_secret("openai-api-key", {"value": SECRET_VALUE})
        c.create(_task("done"))
        _set_status(c, "done", {"phase": "Succeeded", "attempts": 1, "completedAt": "2026-01-02T03:04:05Z",
                                "output": {"final_output": "the answer"}, "trace": [{"type": "agent_end", "agent": "a"}]})
        c.create(_task("half-way"))
        _set_status(c, "half-way", {"phase": "Running", "attempts": 1, "claimedBy": "orloj:supervisor#old",
                                    "leaseUntil": "2026-01-02T03:04:05Z", "leaseEpoch": 3,
                                    "messages": [{"message_id": "m1", "phase": "Queued"}]})
        c.create({"apiVersion": "orloj.dev/v1", "kind": "Memory", "metadata": {"name": "notes", "namespace": "team-b"},
                  "spec": {"type": "vector", "provider": "in-memory"}})
        c.create({"apiVersion": "orloj.dev/v1", "kind": "Worker", "metadata": {
            "name": "node-0123456789ab", "labels": {"orloj.dev/source": "ray-node"}}, "spec": {"region": "default"}})
        c.create({"apiVersion": "orloj.dev/v1", "kind": "Worker", "metadata": {"name": "gpu-box"},
                  "spec": {"region": "eu-west"}})
        yield server.url


@pytest.fixture
def empty():
    with LiveServer(create_app(MemoryStore())) as server:
        yield server.url


def _comparable(obj: dict) -> dict:
    out = backup.for_import(obj)
    out["metadata"].pop("createdAt", None)
    return out


def test_export_writes_every_object_with_status_and_no_secret_value(source, tmp_path):
    res = orloj(source, "export", "-o", str(tmp_path / "backup.yaml"))
    assert res.returncode == 0, res.stderr
    text = (tmp_path / "backup.yaml").read_text()
    assert SECRET_VALUE not in text
    assert text.startswith("# orloj export of ") and "re-create them after a restore" in text
    docs = [d for d in yaml.safe_load_all(text) if d]
    kinds = [d["kind"] for d in docs]
    assert kinds.index("Secret") < kinds.index("ModelEndpoint") < kinds.index("Agent") < kinds.index("AgentSystem") \
        < kinds.index("Task")  # dependency order
    names = {(d["kind"], d["metadata"]["name"]) for d in docs}
    assert ("Memory", "notes") in names and ("Worker", "gpu-box") in names
    assert ("Worker", "node-0123456789ab") not in names  # mirrored from Ray: recreated by the cluster
    assert all("resourceVersion" not in d["metadata"] and "generation" not in d["metadata"] for d in docs)
    secret = next(d for d in docs if d["kind"] == "Secret")
    assert secret["spec"]["data"] == {"value": "***"}
    done = next(d for d in docs if d["metadata"]["name"] == "done")
    assert done["status"]["phase"] == "Succeeded" and done["status"]["output"] == {"final_output": "the answer"}
    assert "exported" in res.stderr and "masked" in res.stderr


def test_export_one_namespace_as_json(source, tmp_path):
    res = orloj(source, "export", "-n", "team-b", "-o", str(tmp_path / "b.json"))
    assert res.returncode == 0, res.stderr
    body = json.loads((tmp_path / "b.json").read_text())
    assert body["kind"] == "List" and [(d["kind"], d["metadata"]["name"]) for d in body["items"]] == [("Memory", "notes")]
    res = orloj(source, "export", "-A")
    assert res.returncode == 0 and "name: notes" in res.stdout and "name: done" in res.stdout


def test_import_into_an_empty_server_restores_the_backup(source, empty, tmp_path):
    assert orloj(source, "export", "-o", str(tmp_path / "backup.yaml")).returncode == 0
    res = orloj(empty, "import", "-f", str(tmp_path / "backup.yaml"))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "recreate-secret secret/openai-api-key" in res.stdout
    assert "warning: secret/openai-api-key" in res.stderr and "orloj create secret" in res.stderr
    with Client(source) as a, Client(empty) as b:
        exported = [d for d in a.export() if d["kind"] != "Secret"]
        for doc in exported:
            meta = doc["metadata"]
            restored = b.get(doc["kind"], meta["name"], meta.get("namespace") or "default")
            assert _comparable(restored)["spec"] == _comparable(doc)["spec"], doc["kind"]
        with pytest.raises(Exception, match="not found"):
            b.get("secret", "openai-api-key")
        done = b.get("task", "done")["status"]
        assert done["phase"] == "Succeeded" and done["output"] == {"final_output": "the answer"}
        assert done["trace"] == [{"type": "agent_end", "agent": "a"}]
        running = b.get("task", "half-way")["status"]
        assert running["phase"] == "Running" and running["messages"] == [{"message_id": "m1", "phase": "Queued"}]
        assert "claimedBy" not in running and "leaseUntil" not in running  # released: the supervisor resumes it
        assert running["leaseEpoch"] == 3  # fencing keeps counting up
        assert b.get("memory", "notes", "team-b")["spec"]["type"] == "vector"
    assert res.stdout.strip().splitlines()[-1].startswith(f"{len(exported)} created, 0 updated, 0 unchanged")


def test_import_into_a_live_server_updates_specs_and_leaves_records_and_secrets(source, empty, tmp_path):
    with Client(empty) as b:
        b.create_secret("openai-api-key", {"value": "the-live-one"})
        b.apply(str(REPO / "examples/blueprints/pipeline/model-endpoint.yaml"))
        b.create(_task("done"))
        _set_status(b, "done", {"phase": "Failed", "lastError": "live record"})
        secret_rv = b.get("secret", "openai-api-key")["metadata"]["resourceVersion"]
    with Client(source) as a:
        docs = a.export()
    for doc in docs:
        if doc["kind"] == "ModelEndpoint":
            doc["spec"]["default_model"] = "gpt-4o-mini"
    (tmp_path / "edited.yaml").write_text(backup.dump(docs))
    res = orloj(empty, "import", "-f", str(tmp_path / "edited.yaml"))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "updated modelendpoint/openai-default" in res.stdout
    assert "unchanged task/done" in res.stdout and "unchanged secret/openai-api-key" in res.stdout
    with Client(empty) as b:
        assert b.get("model-endpoint", "openai-default")["spec"]["default_model"] == "gpt-4o-mini"
        assert b.get("task", "done")["status"]["lastError"] == "live record"
        assert b.get("secret", "openai-api-key")["metadata"]["resourceVersion"] == secret_rv


def test_import_orders_by_dependency_and_ignores_foreign_resource_versions(empty, tmp_path):
    docs = [
        {**_task("t1"), "metadata": {"name": "t1", "resourceVersion": "17", "generation": 4}},
        {"apiVersion": "orloj.dev/v1", "kind": "AgentSystem", "metadata": {"name": "sys", "resourceVersion": "9"},
         "spec": {"agents": ["a1"]}},
        {"apiVersion": "orloj.dev/v1", "kind": "Agent", "metadata": {"name": "a1"},
         "spec": {"model_ref": "m", "prompt": "hi"}},
        {"apiVersion": "orloj.dev/v1", "kind": "ModelEndpoint", "metadata": {"name": "m"},
         "spec": {"provider": "mock", "default_model": "x"}},
    ]
    res = orloj(empty, "import", "-f", "-", stdin=json.dumps(docs))
    assert res.returncode == 0, res.stdout + res.stderr
    created = [line.split()[1] for line in res.stdout.splitlines() if line.startswith("created ")]
    assert created == ["modelendpoint/m", "agent/a1", "agentsystem/sys", "task/t1"]
    with Client(empty) as b:
        assert b.get("task", "t1")["metadata"]["resourceVersion"] == "1"


def test_a_refused_object_fails_the_import_but_not_the_others(empty, tmp_path):
    (tmp_path / "bad.yaml").write_text(
        "apiVersion: orloj.dev/v1\nkind: Agent\nmetadata:\n  name: fine\nspec:\n  model_ref: m\n  prompt: hi\n---\n"
        "apiVersion: orloj.dev/v1\nkind: Agent\nmetadata:\n  name: broken\nspec:\n  prompt: 12\n  limits: nope\n")
    res = orloj(empty, "import", "-f", str(tmp_path / "bad.yaml"))
    assert res.returncode == 1
    assert "error: failed agent/broken" in res.stderr and "1 created" in res.stdout and "1 failed" in res.stdout
    with Client(empty) as b:
        assert b.get("agent", "fine")


def test_a_file_that_is_not_an_export_is_refused_before_anything_is_sent(empty, tmp_path):
    (tmp_path / "x.yaml").write_text("apiVersion: orloj.dev/v1\nkind: Agent\nmetadata:\n  name: a\n---\n- 1\n- 2\n")
    res = orloj(empty, "import", "-f", str(tmp_path / "x.yaml"))
    assert res.returncode == 2 and "document 2" in res.stderr
    res = orloj(empty, "import", "-f", str(tmp_path / "missing.yaml"))
    assert res.returncode == 2 and "no such file" in res.stderr
    with Client(empty) as b:
        assert b.list("agent") == []
    with pytest.raises(InvalidResource, match="unknown resource kind"):
        backup.parse("kind: Gadget\nmetadata:\n  name: g\n")


def test_masked_secret_detection():
    assert backup.is_masked_secret({"kind": "Secret", "spec": {"data": {"value": "***"}}})
    assert not backup.is_masked_secret({"kind": "Secret", "spec": {"stringData": {"value": "real"}}})
    assert not backup.is_masked_secret({"kind": "Agent", "spec": {"data": {"value": "***"}}})

"""The Python client: error mapping, requests it makes, SSE parsing, light imports."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from orloj_ray.client import Client, error_from_response, iter_sse, plan_apply
from orloj_ray.errors import Conflict, InvalidResource, NotFound, OrlojError, TooLarge, Unavailable

REPO = Path(__file__).resolve().parent.parent


def mock_client(handler, **kw) -> Client:
    return Client("http://orloj.test", transport=httpx.MockTransport(handler), **kw)


def _err(status, code, message, field=None):
    body = {"error": {"code": code, "message": message, **({"field": field} if field else {})}}
    return httpx.Response(status, json=body)


@pytest.mark.parametrize("status,cls", [(400, InvalidResource), (404, NotFound), (409, Conflict),
                                        (413, TooLarge), (503, Unavailable), (500, OrlojError), (403, OrlojError)])
def test_json_errors_map_to_the_error_tree(status, cls):
    c = mock_client(lambda req: _err(status, "some.code", "it broke", "spec.x"))
    with pytest.raises(cls) as info:
        c.get("agent", "a")
    assert type(info.value) is cls
    assert info.value.message == "it broke" and info.value.code == "some.code" and info.value.field == "spec.x"


def test_plain_text_errors_fall_back_to_the_body():
    exc = error_from_response(409, 'Task resourceVersion conflict: expected="3" current="4"\n')
    assert isinstance(exc, Conflict) and exc.message == 'Task resourceVersion conflict: expected="3" current="4"'
    assert error_from_response(502, "").message == "HTTP 502"
    assert error_from_response(500, "oops").status == 500


def test_unreachable_server_is_unavailable_with_hint():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(Unavailable) as info:
        Client(f"http://127.0.0.1:{port}").health()
    assert info.value.message == (f"cannot reach orloj-ray at http://127.0.0.1:{port}: is it running? "
                                  f"start it with `orloj up`")


def test_server_and_token_defaults(monkeypatch):
    monkeypatch.delenv("ORLOJCTL_SERVER", raising=False)
    monkeypatch.delenv("ORLOJ_SERVER", raising=False)
    assert Client().server == "http://127.0.0.1:8080"
    monkeypatch.setenv("ORLOJ_SERVER", "http://a:1/")
    assert Client().server == "http://a:1"
    monkeypatch.setenv("ORLOJCTL_SERVER", "b:2")
    assert Client().server == "http://b:2"
    assert Client("http://c:3").server == "http://c:3"
    seen = {}

    def handler(req):
        seen["auth"] = req.headers.get("authorization")
        return httpx.Response(200, json={"status": "ok"})

    mock_client(handler, token="tok").health()
    assert seen["auth"] == "Bearer tok"


def test_requests_paths_and_params():
    calls = []

    def handler(req: httpx.Request):
        calls.append((req.method, req.url.path, dict(req.url.params), json.loads(req.content) if req.content else None))
        if req.url.path == "/v1/tasks" and req.method == "GET":
            after = req.url.params.get("after")
            page = {"items": [{"metadata": {"name": "a"}}], "continue": "a"} if not after else {"items": [{"metadata": {"name": "b"}}]}
            return httpx.Response(200, json=page)
        if req.method == "DELETE":
            return httpx.Response(204)
        return httpx.Response(201 if req.method == "POST" else 200, json=json.loads(req.content) if req.content else {})

    c = mock_client(handler)
    assert [o["metadata"]["name"] for o in c.list("tasks", label_selector="team=a")] == ["a", "b"]
    assert calls[0][2] == {"labelSelector": "team=a"} and calls[1][2] == {"labelSelector": "team=a", "after": "a"}
    calls.clear()
    c.get("agent-system", "s", "ns1")
    c.delete("task", "t")
    task = c.create_task("sys", {"topic": "x", "n": 2}, name="t9", namespace="ns1")
    c.approve("ta-1", decided_by="me")
    c.deny("ta-2")
    assert calls[0][:3] == ("GET", "/v1/agent-systems/s", {"namespace": "ns1"})
    assert calls[1][:3] == ("DELETE", "/v1/tasks/t", {"namespace": "default"})
    assert calls[2][:3] == ("POST", "/v1/tasks", {"namespace": "ns1"})
    assert task["spec"] == {"system": "sys", "input": {"topic": "x", "n": "2"}}
    assert calls[3][1] == "/v1/tool-approvals/ta-1/approve" and calls[3][3] == {"decided_by": "me"}
    assert calls[4][1] == "/v1/tool-approvals/ta-2/deny" and calls[4][3] is None


def test_apply_validates_everything_before_posting():
    posted = []

    def handler(req):
        posted.append(json.loads(req.content))
        return httpx.Response(201, content=req.content)

    c = mock_client(handler)
    out = c.apply(REPO / "examples" / "blueprints" / "pipeline")
    assert [o["kind"] for o in out] == ["ModelEndpoint", "Agent", "Agent", "Agent", "AgentSystem"]
    assert posted[1]["spec"]["prompt"].startswith("You are the planning stage.")
    posted.clear()
    from orloj_ray.resources import ManifestErrors

    with pytest.raises(ManifestErrors):
        c.apply([{"kind": "ModelEndpoint", "metadata": {"name": "ok"}, "spec": {"default_model": "m"}},
                 {"kind": "Agent", "metadata": {"name": "bad"}, "spec": {}}])
    assert posted == []
    c.apply([{"kind": "ModelEndpoint", "metadata": {"name": "ok"}, "spec": {"default_model": "m"}}], namespace="x")
    assert posted[0]["metadata"]["namespace"] == "x"


def test_create_secret_sends_base64_data():
    posted = []

    def handler(req):
        posted.append(json.loads(req.content))
        return httpx.Response(201, content=req.content)

    mock_client(handler).create_secret("openai-api-key", {"value": "sk-1"})
    assert posted[0]["kind"] == "Secret" and posted[0]["spec"]["data"] == {"value": "c2stMQ=="}
    assert "stringData" not in posted[0]["spec"]


def test_iter_sse_parses_frames_and_skips_comments():
    lines = [": keep-alive", "", "event: resource", 'data: {"a":', "data: 1}", "", "data: x", ""]
    assert list(iter_sse(lines)) == [("resource", '{"a":\n1}'), ("message", "x")]


def test_plan_missing_path_is_a_manifest_error(tmp_path):
    from orloj_ray.resources import ManifestErrors

    with pytest.raises(ManifestErrors) as info:
        plan_apply(str(tmp_path / "nope"))
    assert "no such file or directory" in str(info.value)


def test_core_imports_stay_light():
    code = ("import sys, orloj_ray; assert 'httpx' not in sys.modules, 'httpx at import'; "
            "from orloj_ray import Client; import orloj_ray.cli.main; "
            "bad = [m for m in ('ray', 'fastapi', 'starlette', 'nats', 'actors', 'serve', 'cluster') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)

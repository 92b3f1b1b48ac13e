"""API token authentication over real HTTP (uvicorn on loopback, no Ray)."""

from __future__ import annotations

import logging

import httpx
import pytest

from orloj_ray.client import Client
from orloj_ray.config import ConfigError, ServerConfig
from orloj_ray.errors import OrlojError
from orloj_ray.store import MemoryStore
from serve.app import create_app
from serve.auth import ROUTE_ROLES, Authenticator, parse_tokens, required_role, resolve_auth_mode
from live_server import LiveServer

TOKENS = "r3ad-tok:reader,wr1te-tok:writer,ctl-tok:controller,ops:adm1n-tok:admin"
AGENT = {"apiVersion": "orloj.dev/v1", "kind": "Agent", "metadata": {"name": "a1"},
         "spec": {"model_ref": "m", "prompt": "hi"}}
MCP = {"apiVersion": "orloj.dev/v1", "kind": "McpServer", "metadata": {"name": "mcp1"},
       "spec": {"transport": "http", "endpoint": "http://127.0.0.1:1/mcp"}}


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def api():
    auth = Authenticator.from_config(ServerConfig(auth_mode="token", api_tokens=TOKENS))
    with LiveServer(create_app(MemoryStore(), auth=auth)) as server:
        with httpx.Client(base_url=server.url, timeout=10) as http:
            yield http


def test_reader_token_is_refused_a_write_that_a_writer_token_makes(api):
    refused = api.post("/v1/agents", json=AGENT, headers=bearer("r3ad-tok"))
    assert refused.status_code == 403
    assert refused.json() == {"error": {"code": "forbidden", "message": "forbidden"}}
    assert api.get("/v1/agents/a1", headers=bearer("r3ad-tok")).status_code == 404  # nothing was written

    created = api.post("/v1/agents", json=AGENT, headers=bearer("wr1te-tok"))
    assert created.status_code == 201, created.text
    got = api.get("/v1/agents/a1", headers=bearer("r3ad-tok"))
    assert got.status_code == 200 and got.json()["metadata"]["name"] == "a1"


def test_no_token_and_a_bad_token_get_401_with_a_bearer_challenge(api):
    missing = api.get("/v1/agents")
    assert missing.status_code == 401
    assert missing.json()["error"] == {"code": "unauthorized", "message": "missing bearer token"}
    assert missing.headers["www-authenticate"].startswith("Bearer")
    assert missing.headers["x-request-id"]  # auth runs inside the request-id layer
    bad = api.get("/v1/agents", headers=bearer("r3ad-tok-but-longer"))
    assert bad.status_code == 401 and bad.json()["error"]["message"] == "invalid token"
    assert api.get("/v1/agents", headers={"Authorization": "Basic r3ad-tok"}).status_code == 401
    # the scheme is case-insensitive, as upstream
    assert api.get("/v1/agents", headers={"Authorization": "bearer r3ad-tok"}).status_code == 200


def test_status_writes_need_controller_and_writers_cannot(api):
    task = {"apiVersion": "orloj.dev/v1", "kind": "Task", "metadata": {"name": "t1"},
            "spec": {"system": "s", "mode": "template"}}
    assert api.post("/v1/tasks", json=task, headers=bearer("wr1te-tok")).status_code == 201
    body = {"status": {"phase": "Failed"}}
    put = lambda tok: api.put("/v1/tasks/t1/status", json=body, headers={**bearer(tok), "If-Match": "*"})
    assert put("wr1te-tok").status_code == 403
    assert put("r3ad-tok").status_code == 403
    assert put("ctl-tok").status_code == 200
    # a controller may read but not write specs
    assert api.get("/v1/tasks/t1", headers=bearer("ctl-tok")).status_code == 200
    assert api.delete("/v1/tasks/t1", headers=bearer("ctl-tok")).status_code == 403


def test_mcp_server_mutations_are_admin_only(api):
    assert api.post("/v1/mcp-servers", json=MCP, headers=bearer("wr1te-tok")).status_code == 403
    created = api.post("/v1/mcp-servers", json=MCP, headers=bearer("adm1n-tok"))
    assert created.status_code == 201, created.text
    assert api.get("/v1/mcp-servers/mcp1", headers=bearer("r3ad-tok")).status_code == 200
    assert api.delete("/v1/mcp-servers/mcp1", headers=bearer("wr1te-tok")).status_code == 403
    assert api.delete("/v1/mcp-servers/mcp1", headers=bearer("adm1n-tok")).status_code == 200


def test_admin_satisfies_every_role(api):
    agent = {**AGENT, "metadata": {"name": "a-admin"}}
    assert api.post("/v1/agents", json=agent, headers=bearer("adm1n-tok")).status_code == 201
    assert api.get("/v1/agents", headers=bearer("adm1n-tok")).status_code == 200
    put = api.put("/v1/agents/a-admin/status", json={"status": {"phase": "Ready"}},
                  headers={**bearer("adm1n-tok"), "If-Match": "*"})
    assert put.status_code == 200, put.text


def test_healthz_and_auth_config_are_open_metrics_needs_a_reader(api):
    assert api.get("/healthz").status_code == 200
    assert api.get("/v1/auth/config").json()["mode"] == "token"
    assert api.get("/metrics").status_code == 401
    assert api.get("/metrics", headers=bearer("r3ad-tok")).status_code == 200
    me = api.get("/v1/auth/me", headers=bearer("adm1n-tok")).json()
    assert me == {"authenticated": True, "username": "ops", "role": "admin", "method": "bearer"}


def test_sse_watch_is_guarded_too(api):
    assert api.get("/v1/agents/watch").status_code == 401


def test_client_sdk_sends_the_bearer_token(api):
    url = str(api.base_url).rstrip("/")
    with Client(url, token="wr1te-tok") as c:
        c.create({**AGENT, "metadata": {"name": "via-sdk"}})
        assert c.get("agent", "via-sdk")["metadata"]["name"] == "via-sdk"
    with Client(url, token="r3ad-tok") as c, pytest.raises(OrlojError) as err:
        c.create({**AGENT, "metadata": {"name": "nope"}})
    assert err.value.status == 403


def test_cli_global_api_token_flag(api, capsys):
    from orloj_ray.cli.main import main

    url = str(api.base_url).rstrip("/")
    assert main(["get", "agents", "--server", url, "--api-token", "r3ad-tok"]) == 0
    assert "a1" in capsys.readouterr().out
    assert main(["get", "agents", "--server", url, "--api-token", "wrong"]) == 1
    assert "invalid token" in capsys.readouterr().err


def test_auth_off_lets_everything_through():
    with LiveServer(create_app(MemoryStore())) as server:
        r = httpx.post(server.url + "/v1/agents", json=AGENT, timeout=10)
        assert r.status_code == 201
        assert httpx.get(server.url + "/v1/auth/config", timeout=10).json()["mode"] == "off"


# ------------------------------------------------------------------ the table and the settings


@pytest.mark.parametrize("method,path,role", [
    ("GET", "/healthz", None),
    ("GET", "/metrics", "reader"),
    ("POST", "/v1/auth/login", None),
    ("POST", "/v1/webhook-deliveries/abc", None),
    ("POST", "/v1/mcp-servers", "admin"),
    ("DELETE", "/v1/mcp-servers/x", "admin"),
    ("GET", "/v1/mcp-servers", "reader"),
    ("GET", "/v1/tasks/x/status", "reader"),
    ("PUT", "/v1/tasks/x/status", "controller"),
    ("POST", "/v1/tasks", "writer"),
    ("DELETE", "/v1/agents/x", "writer"),
    ("POST", "/v1/tool-approvals/x/approve", "writer"),
    ("GET", "/ui/", None),
])
def test_role_table(method, path, role):
    assert required_role(method, path) == role


def test_table_ends_with_a_catch_all():
    assert ROUTE_ROLES[-1].match == "any"


def test_token_list_parsing():
    parsed = parse_tokens(" a:reader , b:, n:c:admin, nocolon, d:superuser ")
    roles = [(p.name, p.role) for _, p in parsed]
    assert roles == [("token-1", "reader"), ("token-2", "reader"), ("n", "admin")]
    with pytest.raises(ConfigError, match="all 2 entries are malformed"):
        parse_tokens("nocolon,x:god")
    assert parse_tokens("") == []


def test_auth_mode_defaults_by_bind_address(caplog):
    assert resolve_auth_mode(ServerConfig(), "127.0.0.1").auth_mode == "off"
    assert resolve_auth_mode(ServerConfig(), "localhost").auth_mode == "off"
    assert resolve_auth_mode(ServerConfig(api_tokens="t:admin"), "0.0.0.0").auth_mode == "token"
    with pytest.raises(ConfigError, match="beyond loopback.*ORLOJ_API_TOKENS") as err:
        resolve_auth_mode(ServerConfig(), "0.0.0.0")
    assert "t:admin" not in str(err.value)
    with pytest.raises(ConfigError, match="no API tokens"):
        resolve_auth_mode(ServerConfig(auth_mode="token"), "127.0.0.1")
    # a replica that does not know its bind address fails closed, never open
    with pytest.raises(ConfigError, match="bind address is not known"):
        Authenticator.from_config(ServerConfig())
    assert Authenticator.from_config(ServerConfig(api_tokens="t:reader")).enabled
    assert not Authenticator.from_config(ServerConfig(auth_mode="off")).enabled
    with caplog.at_level(logging.WARNING, logger="orloj_ray.serve.auth"):
        assert resolve_auth_mode(ServerConfig(auth_mode="off"), "0.0.0.0").auth_mode == "off"
    assert any("authentication OFF" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)


def test_tokens_never_show_in_logs_or_describe(caplog):
    config = ServerConfig(auth_mode="token", api_tokens="s3cr3t-value:admin,broken-s3cr3t")
    with caplog.at_level(logging.DEBUG):
        Authenticator.from_config(config)
    assert "s3cr3t" not in caplog.text
    assert "s3cr3t" not in str(config.describe()) and "s3cr3t" not in repr(config)

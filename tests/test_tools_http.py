"""HTTP tools against real servers on 127.0.0.1: the contract envelope, auth injection
(bearer, api-key header, basic, OAuth2 client credentials with token caching), retries with
the step's Idempotency-Key, timeouts, and the dispatcher."""

from __future__ import annotations

import base64
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import pytest

from orloj_ray.tools import (EgressGuard, HttpToolRunner, TokenCache, ToolCallContext, ToolDispatcher, ToolError,
                             default_tool_runner, resolve_auth, with_auth)

LOOPBACK = EgressGuard(["127.0.0.0/8"])


class ToolServer:
    """A threaded HTTP server on 127.0.0.1; ``routes[path](req) -> (status, headers, body)``.
    Every request is recorded as ``{"path", "headers", "body"}``."""

    def __init__(self):
        self.routes = {}
        self.requests: list[dict] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
                req = {"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}, "body": body}
                server.requests.append(req)
                route = server.routes.get(self.path)
                status, headers, out = route(req) if route else (404, {}, "no route")
                data = out if isinstance(out, bytes) else (out if isinstance(out, str) else json.dumps(out)).encode()
                try:
                    self.send_response(status)
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    srv = ToolServer()
    yield srv
    srv.close()


def tool(name: str, endpoint: str, **spec) -> dict:
    return {"metadata": {"name": name, "namespace": "default"}, "spec": {"type": "http", "endpoint": endpoint, **spec}}


CTX = ToolCallContext("default", "t1", "a1", "default/t1/a1/0/s001/tool")


def runner(**kw) -> HttpToolRunner:
    return HttpToolRunner(guard=LOOPBACK, **kw)


async def test_raw_input_and_plain_result(server):
    server.routes["/t"] = lambda req: (200, {}, "  plain answer \n")
    out = await runner().call(tool("t", server.url("/t")), '{"q": "x"}', CTX)
    assert out == "plain answer"
    req = server.requests[0]
    assert req["body"] == '{"q": "x"}'
    assert req["headers"]["content-type"] == "application/json"
    assert req["headers"]["idempotency-key"] == CTX.idempotency_key
    assert req["headers"]["host"] == f"127.0.0.1:{server.httpd.server_address[1]}"


async def test_contract_envelope_ok_error_denied(server):
    server.routes["/ok"] = lambda req: (200, {}, {"tool_contract_version": "v1", "status": "ok",
                                                  "output": {"result": "42"}})
    server.routes["/ok-obj"] = lambda req: (200, {}, {"status": "ok", "output": {"items": [1, 2]}})
    server.routes["/err"] = lambda req: (200, {}, {"status": "error", "error": {
        "code": "invalid_input", "message": "bad q", "retryable": False}})
    server.routes["/denied"] = lambda req: (200, {}, {"status": "denied", "error": {"message": "not you"}})
    server.routes["/noenv"] = lambda req: (200, {}, {"status": "error"})
    server.routes["/v2"] = lambda req: (200, {}, {"tool_contract_version": "v2", "status": "ok"})
    r = runner()
    assert await r.call(tool("ok", server.url("/ok")), "{}", CTX) == "42"
    assert json.loads(await r.call(tool("ok", server.url("/ok-obj")), "{}", CTX)) == {"items": [1, 2]}
    with pytest.raises(ToolError) as err:
        await r.call(tool("e", server.url("/err")), "{}", CTX)
    assert err.value.code == "invalid_input" and "bad q" in err.value.message and not err.value.retryable
    with pytest.raises(ToolError) as denied:
        await r.call(tool("d", server.url("/denied")), "{}", CTX)
    assert denied.value.code == "permission_denied" and "not you" in denied.value.message
    with pytest.raises(ToolError) as missing:
        await r.call(tool("n", server.url("/noenv")), "{}", CTX)
    assert missing.value.code == "execution_failed" and "missing error envelope" in missing.value.message
    with pytest.raises(ToolError) as version:
        await r.call(tool("v", server.url("/v2")), "{}", CTX)
    assert version.value.code == "invalid_input"


async def test_external_tool_sends_v1_request_envelope(server):
    server.routes["/ext"] = lambda req: (200, {}, {"tool_contract_version": "v1", "request_id": "x",
                                                   "status": "ok", "output": {"result": "done"}})
    server.routes["/bad"] = lambda req: (200, {}, "not an envelope")
    ext = tool("ext", server.url("/ext"), type="external", capabilities=["search"], risk_level="medium")
    assert await runner().call(ext, '{"q": "x"}', CTX) == "done"
    req = server.requests[0]
    assert req["headers"]["x-tool-contract-version"] == "v1"
    doc = json.loads(req["body"])
    assert doc["tool_contract_version"] == "v1" and doc["request_id"] == CTX.idempotency_key
    assert doc["tool"] == {"name": "ext", "operation": "invoke", "capabilities": ["search"], "risk_level": "medium"}
    assert doc["input"] == {"q": "x"} and doc["input_raw"] == '{"q": "x"}' and doc["attempt"] == 1
    with pytest.raises(ToolError) as err:
        await runner().call(tool("bad", server.url("/bad"), type="external"), "{}", CTX)
    assert "not a v1 contract envelope" in err.value.message


def _secrets(values: dict):
    async def lookup(ref: str) -> str:
        if ref not in values:
            raise LookupError(f'secret "{ref}" not found')
        return values[ref]
    return lookup


@pytest.mark.parametrize("auth,secret,header,expected", [
    ({"profile": "bearer", "secretRef": "tok"}, "s3cr3t-bearer", "authorization", "Bearer s3cr3t-bearer"),
    ({"secretRef": "tok"}, "s3cr3t-default", "authorization", "Bearer s3cr3t-default"),
    ({"profile": "api_key_header", "secretRef": "tok", "headerName": "X-Api-Key"}, "k3y-value", "x-api-key",
     "k3y-value"),
    ({"profile": "basic", "secretRef": "tok"}, "alice:pa55word", "authorization",
     "Basic " + base64.b64encode(b"alice:pa55word").decode()),
])
async def test_auth_profiles(server, auth, secret, header, expected):
    server.routes["/a"] = lambda req: (200, {}, "ok")
    t = tool("a", server.url("/a"), auth=auth)
    resolved = await resolve_auth(t, _secrets({"tok": secret}))
    assert secret not in repr(resolved)
    assert await runner().call(with_auth(t, resolved), "{}", CTX) == "ok"
    assert server.requests[0]["headers"][header] == expected


async def test_unresolvable_secret_fails_the_call(server):
    server.routes["/a"] = lambda req: (200, {}, "ok")
    t = tool("a", server.url("/a"), auth={"profile": "bearer", "secretRef": "missing"})
    resolved = await resolve_auth(t, _secrets({}))
    with pytest.raises(ToolError) as err:
        await runner().call(with_auth(t, resolved), "{}", CTX)
    assert err.value.code == "secret_resolution_failed" and "missing" in err.value.message
    assert server.requests == []


async def test_oauth2_client_credentials_caches_token_until_expiry(server):
    issued = []

    def token(req):
        form = parse_qs(req["body"])
        assert form["grant_type"] == ["client_credentials"] and form["client_id"] == ["cid-123"]
        assert form["client_secret"] == ["csecret-456"] and form["scope"] == ["read write"]
        issued.append(f"tok-{len(issued) + 1}")
        return 200, {"Content-Type": "application/json"}, {"access_token": issued[-1], "expires_in": 120}

    def api(req):
        auth = req["headers"].get("authorization")
        return (200, {}, f"hello {auth}") if auth == f"Bearer {issued[-1]}" else (401, {}, "expired")

    server.routes["/token"], server.routes["/api"] = token, api
    now = [1000.0]
    cache = TokenCache(clock=lambda: now[0])
    t = tool("o", server.url("/api"), auth={"profile": "oauth2_client_credentials", "secretRef": "oauth",
                                            "tokenURL": server.url("/token"), "scopes": ["read", "write"]})
    resolved = await resolve_auth(t, _secrets({"oauth:client_id": "cid-123", "oauth:client_secret": "csecret-456"}))
    t = with_auth(t, resolved)
    r = runner(tokens=cache)
    # the token is a secret too: redacted from the output
    assert await r.call(t, "{}", CTX) == "hello Bearer [REDACTED]"
    assert await r.call(t, "{}", CTX) == "hello Bearer [REDACTED]"
    assert cache.exchanges == 1 and issued == ["tok-1"]
    now[0] += 200  # past expires_in
    await r.call(t, "{}", CTX)
    assert cache.exchanges == 2
    api_calls = [q for q in server.requests if q["path"] == "/api"]
    assert [q["headers"]["authorization"] for q in api_calls] == ["Bearer tok-1", "Bearer tok-1", "Bearer tok-2"]


async def test_oauth2_401_evicts_cached_token(server):
    count = {"n": 0}

    def token(req):
        count["n"] += 1
        return 200, {}, {"access_token": f"t{count['n']}", "expires_in": 3600}

    server.routes["/token"] = token
    server.routes["/api"] = lambda req: (401, {}, "nope") if req["headers"]["authorization"] == "Bearer t1" \
        else (200, {}, "fine")
    t = tool("o", server.url("/api"), auth={"profile": "oauth2_client_credentials", "secretRef": "oauth",
                                            "tokenURL": server.url("/token")})
    t = with_auth(t, await resolve_auth(t, _secrets({"oauth:client_id": "c", "oauth:client_secret": "s"})))
    r = runner()
    with pytest.raises(ToolError) as err:
        await r.call(t, "{}", CTX)
    assert err.value.code == "auth_invalid" and not err.value.retryable
    assert await r.call(t, "{}", CTX) == "fine"
    assert r.tokens.exchanges == 2


async def test_oauth2_token_endpoint_failure_is_retryable_secret_error(server):
    server.routes["/token"] = lambda req: (500, {}, "down")
    server.routes["/api"] = lambda req: (200, {}, "never")
    t = tool("o", server.url("/api"), auth={"profile": "oauth2_client_credentials", "secretRef": "oauth",
                                            "tokenURL": server.url("/token")})
    t = with_auth(t, await resolve_auth(t, _secrets({"oauth:client_id": "c", "oauth:client_secret": "s"})))
    with pytest.raises(ToolError) as err:
        await runner().call(t, "{}", CTX)
    assert err.value.code == "secret_resolution_failed" and err.value.retryable


async def test_retry_on_503_then_success_with_same_idempotency_key(server):
    answers = iter([(503, {}, "busy"), (429, {"Retry-After": "0.05"}, "slow down"), (200, {}, "finally")])
    server.routes["/r"] = lambda req: next(answers)
    sleeps: list[float] = []

    async def sleep(s: float) -> None:
        sleeps.append(s)

    t = tool("r", server.url("/r"), runtime={"retry": {"max_attempts": 5, "backoff": "10ms", "max_backoff": "1s",
                                                      "jitter": "none"}})
    assert await runner(sleep=sleep).call(t, "{}", CTX) == "finally"
    keys = [q["headers"]["idempotency-key"] for q in server.requests]
    assert keys == [CTX.idempotency_key] * 3
    assert sleeps == [pytest.approx(0.01), pytest.approx(0.05)]  # backoff, then Retry-After (within the cap)


async def test_retry_is_bounded_and_jittered(server):
    from orloj_ray.retry import RetryPolicy, delay

    server.routes["/r"] = lambda req: (502, {}, "bad gateway")
    sleeps: list[float] = []

    async def sleep(s: float) -> None:
        sleeps.append(s)

    t = tool("r", server.url("/r"), runtime={"retry": {"max_attempts": 4, "backoff": "100ms", "max_backoff": "250ms",
                                                      "jitter": "full"}})
    with pytest.raises(ToolError) as err:
        await runner(sleep=sleep).call(t, "{}", CTX)
    assert err.value.retryable and "after 4 attempts" in err.value.message and "502" in err.value.message
    assert len(server.requests) == 4
    # upstream's tool schedule: 0.1, 0.2, then the 0.25 cap, each with the tool name's jitter
    policy = RetryPolicy.for_tool(t)
    assert sleeps == [delay(policy, n, "r") for n in (1, 2, 3)]
    assert all(0 < s <= cap for s, cap in zip(sleeps, (0.1, 0.2, 0.25))) and len(set(sleeps)) == 3


async def test_client_errors_are_not_retried(server):
    server.routes["/r"] = lambda req: (400, {}, "bad request")
    server.routes["/f"] = lambda req: (403, {}, "forbidden")
    t = tool("r", server.url("/r"), runtime={"retry": {"max_attempts": 3}})
    with pytest.raises(ToolError) as err:
        await runner().call(t, "{}", CTX)
    assert err.value.code == "execution_failed" and not err.value.retryable and len(server.requests) == 1
    with pytest.raises(ToolError) as forbidden:
        await runner().call(tool("f", server.url("/f")), "{}", CTX)
    assert forbidden.value.code == "auth_forbidden"


async def test_timeout_per_attempt(server):
    def slow(req):
        time.sleep(1.5)
        return 200, {}, "late"

    server.routes["/slow"] = slow
    t = tool("slow", server.url("/slow"), runtime={"timeout": "200ms"})
    started = time.monotonic()
    with pytest.raises(ToolError) as err:
        await runner().call(t, "{}", CTX)
    assert err.value.code == "timeout" and err.value.retryable and err.value.reason == "tool_execution_timeout"
    assert time.monotonic() - started < 1.2


async def test_connect_error_is_retryable():
    import socket

    with socket.socket() as s:  # a port with nothing listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ToolError) as err:
        await runner().call(tool("c", f"http://127.0.0.1:{port}/x"), "{}", CTX)
    assert err.value.code == "execution_failed" and err.value.retryable


async def test_dispatcher_routes_by_type_and_isolation(server):
    server.routes["/t"] = lambda req: (200, {}, "via http")
    from orloj_ray.config import ServerConfig

    dispatcher = default_tool_runner(ServerConfig(tool_allowed_networks=("127.0.0.0/8",)))
    assert await dispatcher.call(tool("t", server.url("/t")), "{}", CTX) == "via http"
    # a high-risk http tool defaults to sandboxed; a remote tool's code is not here, so the
    # sandbox backend calls it through the same guarded client
    risky = tool("t", server.url("/t"), risk_level="high")
    assert type(dispatcher.runner_for(risky)).__name__ == "SandboxRunner"
    assert await dispatcher.call(risky, "{}", CTX) == "via http"
    with pytest.raises(ToolError) as err:
        await dispatcher.call(tool("g", "127.0.0.1:1", type="grpc"), "{}", CTX)
    assert err.value.code == "unsupported_tool" and "grpc" in err.value.message

    seen = []

    class Echo:
        async def call(self, tool, tool_input, ctx):
            seen.append((tool["metadata"]["name"], tool_input, ctx.idempotency_key))
            return "from mcp"

    dispatcher.register("mcp", Echo())
    mcp_tool = {"metadata": {"name": "srv--echo"}, "spec": {"type": "mcp", "risk_level": "critical"}}
    assert await dispatcher.call(mcp_tool, '{"x": 1}', CTX) == "from mcp"  # in-process: isolation not applied
    assert seen == [("srv--echo", '{"x": 1}', CTX.idempotency_key)]
    bare = ToolDispatcher()
    with pytest.raises(ToolError) as none:
        await bare.call(risky, "{}", CTX)
    assert none.value.code == "isolation_unavailable"


async def test_egress_guard_applies_by_default(server):
    server.routes["/t"] = lambda req: (200, {}, "reached")
    with pytest.raises(ToolError) as err:
        await HttpToolRunner().call(tool("t", server.url("/t")), "{}", CTX)
    assert err.value.code == "tool_egress_denied"
    assert server.requests == []


async def test_hostname_is_resolved_checked_and_pinned(server):
    server.routes["/t"] = lambda req: (200, {}, "named")
    port = server.httpd.server_address[1]
    t = tool("t", f"http://localhost:{port}/t")
    with pytest.raises(ToolError) as err:
        await HttpToolRunner().call(t, "{}", CTX)
    assert err.value.code == "tool_egress_denied" and "localhost (" in err.value.message
    assert await runner().call(t, "{}", CTX) == "named"
    assert server.requests[0]["headers"]["host"] == f"localhost:{port}"  # connected to the checked IP, Host kept

"""The orloj-ray REST API as a plain FastAPI app: ``create_app(store)``.

Upstream-compatible paths, verbs, status codes and JSON bodies (see
upstream Orloj's API reference), over any object implementing the async ``Store`` protocol.
No Ray here: ``serve/deployment.py`` wraps this app with Ray Serve, and tests drive it with
``httpx.ASGITransport``. Creating a task only stores it; nothing here waits on agent work.

Modules: ``routes_resources`` (generic CRUD over the 15 kinds), ``sse`` (watch streams),
``routes_tasks`` (logs, messages, metrics), ``routes_approvals`` (approve/deny), ``routes_audit`` (audit trail), ``errors`` (the JSON error
envelope), ``middleware`` (request id, body limit), ``codec`` (body decoding, redaction),
``routes_webhooks`` (signed TaskWebhook deliveries), ``auth`` (bearer tokens and roles),
``routes_native_auth`` (upstream's password routes, answered "use tokens"), ``openapi``
(``/openapi.json`` and ``/docs``), ``ui_routes`` (the web console at ``/ui/``),
``routes_admin`` (operator actions: secret key rotation), ``tenancy`` (what a token may see and
change: namespaces, cluster-wide policies, the audit of writes), ``routes_stream`` (a task's
model output, live).
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable

from fastapi import FastAPI
from fastapi.responses import PlainTextResponse

from serve import auth as api_auth
from serve import (
    openapi,
    routes_admin,
    routes_approvals,
    routes_audit,
    routes_memories,
    routes_native_auth,
    routes_resources,
    routes_stream,
    routes_tasks,
    routes_webhooks,
    sse,
    ui_routes,
)
from serve.codec import now_rfc3339
from serve.errors import JSONResponse, install_error_handlers
from serve.middleware import MAX_BODY_BYTES, RequestContext
from orloj_ray.store.util import list_all
from orloj_ray.observability import merge, render
from orloj_ray.observability.tokens import TokenBuffer
from orloj_ray.observability.store_metrics import store_snapshot
from serve.tenancy import TenantStore

RuntimeInfo = Callable[[], Awaitable[dict]]
MetricsSource = Callable[[], Awaitable[list[dict]]]

CAPABILITIES = (
    ("core.api.crud", "Declarative CRUD API for all orloj.dev/v1 resources"),
    ("core.runtime.sequential", "Sequential task execution"),
    ("core.runtime.message_driven", "Message-driven task execution with durable delivery"),
    ("core.governance.agent_roles", "Agent roles, tool permissions, policies and approvals"),
    ("core.ui.baseline", "Baseline web console"),
    ("core.self_host", "Self-hosted deployment"),
)

NAMESPACE_KINDS = ("Agent", "AgentSystem", "ModelEndpoint", "Tool", "Secret", "Memory", "AgentPolicy", "Task",
                   "Worker")
"""Kinds whose namespaces ``/v1/namespaces`` reports (upstream's list)."""



def create_app(
    store: Any,
    *,
    runtime_info: RuntimeInfo | None = None,
    max_body_bytes: int = MAX_BODY_BYTES,
    heartbeat_s: float = 15.0,
    wait_s: float = 1.0,
    auth: api_auth.Authenticator | None = None,
    metrics_source: MetricsSource | None = None,
    strict_fields: bool = False,
    token_streams: Any = None,
) -> FastAPI:
    """Build the API over ``store``.

    ``runtime_info``: optional async callable whose dict ``GET /v1/runtime`` returns (``{}``
    without one). ``max_body_bytes``: request body limit, default 4 MiB as upstream.
    ``heartbeat_s`` / ``wait_s``: SSE keep-alive interval (default 15 s) and the longest wait
    between client-disconnect checks (default 1 s). ``auth``: bearer-token checks
    (``serve.auth``); None means off, as on a loopback-only API. ``metrics_source``: async
    callable returning the supervisors' metrics snapshots, merged into ``/metrics`` beside the
    series derived from the Store (``orloj_ray.observability``). ``strict_fields``: unknown
    manifest fields are refused (400) instead of answered with a ``Warning`` header.
    ``token_streams``: where ``/v1/tasks/{name}/stream`` reads model output (``read``,
    ``finish`` of ``orloj_ray.observability.tokens.TokenBuffer``; default a buffer of its own,
    which nothing writes to unless the caller does).
    """
    auth = auth or api_auth.Authenticator.off()
    app = FastAPI(
        title="orloj-ray",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        default_response_class=JSONResponse,
    )
    app.state.store = store
    app.state.strict_fields = strict_fields
    app.state.tokens = token_streams if token_streams is not None else TokenBuffer()
    if auth.enabled:  # what each token may see and change (namespaces, cluster-wide policies, audit)
        store = TenantStore(store)
    install_error_handlers(app)
    if auth.enabled:  # added first, so it runs inside RequestContext (request id, body limit)
        app.add_middleware(api_auth.TokenAuth, authenticator=auth)
    app.add_middleware(RequestContext, max_body_bytes=max_body_bytes)

    async def healthz() -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def capabilities() -> JSONResponse:
        return JSONResponse({
            "generated_at": now_rfc3339(nano=True),
            "capabilities": [
                {"id": cid, "enabled": True, "description": desc, "source": "oss"} for cid, desc in CAPABILITIES
            ],
        })

    async def namespaces() -> JSONResponse:
        found: set[str] = set()
        for kind in NAMESPACE_KINDS:
            for obj in await list_all(store, kind):
                found.add((obj.get("metadata") or {}).get("namespace") or "default")
        return JSONResponse({"namespaces": sorted(found) or ["default"]})

    async def runtime() -> JSONResponse:
        return JSONResponse(await runtime_info() if runtime_info is not None else {})

    async def metrics() -> PlainTextResponse:
        snapshots = [store_snapshot(await list_all(store, "Task"), await store.last_event_id())]
        if metrics_source is not None:
            snapshots += await metrics_source()
        return PlainTextResponse(render(merge(snapshots)), media_type="text/plain; version=0.0.4")

    app.add_api_route("/healthz", healthz, methods=["GET", "HEAD"], name="healthz")
    app.add_api_route("/metrics", metrics, methods=["GET"], name="metrics")
    app.add_api_route("/v1/capabilities", capabilities, methods=["GET"], name="capabilities")
    app.add_api_route("/v1/namespaces", namespaces, methods=["GET"], name="namespaces")
    app.add_api_route("/v1/runtime", runtime, methods=["GET"], name="runtime")

    # Order matters: /v1/<c>/watch must be matched before /v1/<c>/{name}.
    sse.register(app, store, sse.StreamSettings(heartbeat_s=heartbeat_s, wait_s=wait_s))
    routes_resources.register(app, store)
    routes_stream.register(app, store, sse.StreamSettings(heartbeat_s=heartbeat_s, wait_s=wait_s))
    routes_tasks.register(app, store)
    routes_approvals.register(app, store)
    routes_audit.register(app, store)
    routes_memories.register(app, store)
    routes_webhooks.register(app, store)
    routes_admin.register(app, store)
    api_auth.register(app, auth)
    ui_routes.register(app)
    routes_native_auth.register(app)
    openapi.register(app)
    return app

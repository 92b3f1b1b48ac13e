"""``GET /openapi.json`` (OpenAPI 3.1) and ``GET /docs`` (Swagger UI, served from the
``swagger-ui-bundle-v2`` package: no CDN, so it works on a cluster without internet).

The document covers every route the app serves (``tests/test_api_openapi.py`` checks the two
agree), with upstream's paths, verbs and success codes, the kinds' schemas from
``orloj_ray.resources.schema`` (upstream's wire shapes), and orloj-ray's JSON error envelope
as the ``default`` response. It is what ``tests/test_api_fuzz.py`` fuzzes the server against.
"""

from __future__ import annotations

import copy
import functools
import json
from typing import Any

import swagger_ui_bundle
from fastapi import FastAPI
from fastapi.responses import HTMLResponse, Response
from starlette.staticfiles import StaticFiles

from orloj_ray.resources.envelope import MAX_NAME_LENGTH, MAX_NAMESPACE_LENGTH
from orloj_ray.resources.kinds import KINDS
from orloj_ray.resources.schema import REF, component_schemas

NAME_PATTERN = r"^[A-Za-z0-9]([-A-Za-z0-9_]*[A-Za-z0-9])?(\.[A-Za-z0-9]([-A-Za-z0-9_]*[A-Za-z0-9])?)*$"
NAMESPACE_PATTERN = r"^[A-Za-z0-9]([-A-Za-z0-9_]*[A-Za-z0-9])?$"


def _ref(name: str) -> dict:
    return {"$ref": REF + name}


def _obj(props: dict[str, Any], required: list[str] | None = None, more: bool = True) -> dict:
    out: dict[str, Any] = {"type": "object", "properties": props, "additionalProperties": more}
    if required:
        out["required"] = required
    return out


_S, _I, _B = {"type": "string"}, {"type": "integer"}, {"type": "boolean"}

_EXTRA_SCHEMAS = {
    "Error": _obj({"error": _obj({
        "code": _S, "message": _S, "field": _S,
        "details": {"type": "array", "items": _obj({"field": _S, "message": _S,
                                                     "severity": {"type": "string", "enum": ["warning"]}},
                                                    ["field", "message"])},
    }, ["code", "message"])}, ["error"]),
    "StatusEnvelope": _obj({"metadata": _ref("ObjectMeta"), "status": _ref("Status")}, ["metadata", "status"]),
    "StatusUpdate": _obj({"metadata": _obj({"resourceVersion": _S}), "status": _ref("Status")}),
    "HealthResponse": _obj({"status": {"type": "string", "enum": ["ok"]}}, ["status"]),
    "NamespacesResponse": _obj({"namespaces": {"type": "array", "items": _S}}, ["namespaces"]),
    "CapabilitySnapshot": _obj({"generated_at": _S, "capabilities": {"type": "array", "items": _obj(
        {"id": _S, "enabled": _B, "description": _S, "source": _S}, ["id", "enabled"])}},
        ["generated_at", "capabilities"]),
    "RuntimeInfo": {"type": "object", "additionalProperties": True},
    "NamedLogsResponse": _obj({"name": _S, "logs": {"type": "array", "items": _S}}, ["name", "logs"]),
    "TaskMessageListResponse": _obj({"name": _S, "namespace": _S, "total": _I, "filtered_from": _I,
                                     "lifecycle_counts": {"type": "object", "additionalProperties": _I},
                                     "messages": {"type": "array", "items": {"type": "object"}}}),
    "TaskMetricsResponse": _obj({"name": _S, "namespace": _S, "generated_at": _S, "totals": {"type": "object"},
                                 "per_agent": {"type": "array", "items": {"type": "object"}},
                                 "per_edge": {"type": "array", "items": {"type": "object"}},
                                 "filters": {"type": "object"}}),
    "MemoryEntriesResponse": _obj({"entries": {"type": "array", "items": {"type": "object"}}, "count": _I},
                                  ["entries", "count"]),
    "AuditList": _obj({"items": {"type": "array", "items": {"type": "object"}}, "continue": _S}, ["items"]),
    "WebhookDeliveryResponse": _obj({"accepted": _B, "duplicate": _B, "event_id": _S, "task": _S, "message": _S}),
    "ToolApprovalDecisionRequest": _obj({"decided_by": _S, "reason": _S}),
    "TaskCancelRequest": _obj({"reason": _S}),
    "AuthConfigResponse": _obj({"mode": _S, "setup_required": _B, "login_methods": {"type": "array", "items": _S}}),
    "AuthMeResponse": _obj({"authenticated": _B, "username": _S, "method": _S, "role": _S}),
    "AuthCredentialsRequest": _obj({"username": _S, "password": _S, "setup_token": _S}),
    "AuthChangePasswordRequest": _obj({"current_password": _S, "new_password": _S}),
    "AuthResetPasswordRequest": _obj({"username": _S, "new_password": _S}),
    "OkStatusMessage": _obj({"status": _S}, ["status"]),
    "McpServerDeleted": _obj({"deleted": _S}, ["deleted"]),
}


def _json(schema: str) -> dict:
    return {"application/json": {"schema": _ref(schema)}}


def _responses(code: str, description: str, content: dict | None = None) -> dict:
    ok: dict[str, Any] = {"description": description}
    if content is not None:
        ok["content"] = content
    return {code: ok, "default": {"description": "Error (JSON envelope; docs/compatibility.md)",
                                  "content": _json("Error")}}


def _query(name: str, schema: dict, description: str = "") -> dict:
    out = {"name": name, "in": "query", "required": False, "schema": schema}
    if description:
        out["description"] = description
    return out


_NAMESPACE = _query("namespace", {"type": "string", "pattern": NAMESPACE_PATTERN, "maxLength": MAX_NAMESPACE_LENGTH},
                    "Item routes: the object's namespace (default `default`); lists: a filter (all when absent).")
_NAME = {"name": "name", "in": "path", "required": True,
         "schema": {"type": "string", "pattern": NAME_PATTERN, "maxLength": MAX_NAME_LENGTH}}
_LIST = [_NAMESPACE, _query("limit", {"type": "integer", "minimum": 1, "maximum": 1000}),
         _query("after", {"type": "string"}, "Keyset cursor: the `continue` of the previous page."),
         _query("labelSelector", {"type": "string"}, "Comma-separated key=value terms.")]
_IF_MATCH = {"name": "If-Match", "in": "header", "required": False, "schema": {"type": "string"},
             "description": "The resourceVersion this write expects (or metadata.resourceVersion in the body)."}
_SSE = {"text/event-stream": {"schema": {"type": "string"}}}
_JSON_OR_YAML = "JSON or YAML (sniffed from the content, not from Content-Type)."


def _op(tag: str, summary: str, responses: dict, *, params: list | None = None, body: dict | None = None,
        body_required: bool = True, op_id: str) -> dict:
    op: dict[str, Any] = {"tags": [tag], "summary": summary, "operationId": op_id, "responses": responses}
    if params:
        op["parameters"] = params
    if body is not None:
        op["requestBody"] = {"required": body_required, "content": body}
    return op


def _kind_paths(paths: dict[str, dict]) -> None:
    for info in KINDS:
        tag, kind, base, op = info.plural, info.kind, f"/v1/{info.plural}", info.plural.replace("-", "_")
        body = {"application/json": {"schema": _ref(kind)},
                "application/yaml": {"schema": {"type": "string", "description": _JSON_OR_YAML}}}
        paths[base] = {
            "get": _op(tag, f"List {kind} objects", _responses("200", "OK", _json(f"{kind}List")),
                       params=_LIST + ([_query("offset", {"type": "integer", "minimum": 0})] if kind == "Task" else []),
                       op_id=f"list_{op}"),
            "post": _op(tag, f"Create or update a {kind} (upsert by namespace/name)",
                        _responses("201", "Stored; unknown fields are listed in Warning headers", _json(kind)),
                        params=[_NAMESPACE], body=body, op_id=f"create_{op}"),
        }
        delete = (_responses("200", "Deleted", _json("McpServerDeleted")) if kind == "McpServer"
                  else _responses("204", "Deleted"))
        paths[f"{base}/{{name}}"] = {
            "get": _op(tag, f"Read a {kind}", _responses("200", "OK", _json(kind)), params=[_NAME, _NAMESPACE],
                       op_id=f"get_{op}"),
            "put": _op(tag, f"Replace a {kind} (If-Match or metadata.resourceVersion required)",
                       _responses("200", "Replaced", _json(kind)), params=[_NAME, _NAMESPACE, _IF_MATCH], body=body,
                       op_id=f"replace_{op}"),
            "delete": _op(tag, f"Delete a {kind}", delete, params=[_NAME, _NAMESPACE], op_id=f"delete_{op}"),
        }
        if info.status_route:
            paths[f"{base}/{{name}}/status"] = {
                "get": _op(tag, f"Read a {kind}'s status", _responses("200", "OK", _json("StatusEnvelope")),
                           params=[_NAME, _NAMESPACE], op_id=f"get_status_{op}"),
                "put": _op(tag, f"Replace a {kind}'s status (JSON only)",
                           _responses("200", "Replaced", _json("StatusEnvelope")),
                           params=[_NAME, _NAMESPACE, _IF_MATCH], body=_json("StatusUpdate"),
                           op_id=f"put_status_{op}"),
            }
        if info.watchable:
            paths[f"{base}/watch"] = {"get": _op(
                tag, f"Watch {kind} objects (SSE: event resource, data {{type, resource}})",
                _responses("200", "An endless event stream", _SSE),
                params=[_NAMESPACE, _query("name", {"type": "string"}), _query("resourceVersion", {"type": "string"})],
                op_id=f"watch_{op}")}


def _other_paths(paths: dict[str, dict]) -> None:
    item = [_NAME, _NAMESPACE]
    ok = functools.partial(_responses, "200", "OK")
    paths["/healthz"] = {
        "get": _op("system", "Liveness", ok(_json("HealthResponse")), op_id="healthz"),
        "head": _op("system", "Liveness (no body)", _responses("200", "OK"), op_id="healthz_head"),
    }
    paths["/metrics"] = {"get": _op("system", "Prometheus metrics",
                                    ok({"text/plain": {"schema": {"type": "string"}}}), op_id="metrics")}
    paths["/v1/capabilities"] = {"get": _op("system", "Capabilities", ok(_json("CapabilitySnapshot")),
                                            op_id="capabilities")}
    paths["/v1/namespaces"] = {"get": _op("system", "Namespaces in use", ok(_json("NamespacesResponse")),
                                          op_id="namespaces")}
    paths["/v1/runtime"] = {"get": _op("system", "Ray cluster and backends (orloj-ray extension)",
                                       ok(_json("RuntimeInfo")), op_id="runtime")}
    paths["/v1/events/watch"] = {"get": _op(
        "events", "Control-plane events (SSE: event event)", _responses("200", "An endless event stream", _SSE),
        params=[_query(n, {"type": "string"}) for n in ("since", "source", "type", "kind", "name")] + [_NAMESPACE],
        op_id="watch_events")}
    filters = [_query(n, {"type": "string"}) for n in ("phase", "from_agent", "to_agent", "branch_id", "trace_id")]
    filters.append(_query("limit", {"type": "integer", "minimum": 0}))
    paths["/v1/tasks/{name}/logs"] = {"get": _op("tasks", "Task log lines", ok(_json("NamedLogsResponse")),
                                                 params=item, op_id="task_logs")}
    paths["/v1/tasks/{name}/messages"] = {"get": _op("tasks", "Task messages", ok(_json("TaskMessageListResponse")),
                                                     params=item + filters, op_id="task_messages")}
    paths["/v1/tasks/{name}/metrics"] = {"get": _op("tasks", "Task message metrics", ok(_json("TaskMetricsResponse")),
                                                    params=item + filters, op_id="task_metrics")}
    paths["/v1/tasks/{name}/stream"] = {"get": _op(
        "tasks", "A task's model output, live (SSE: events token, turn_end, end; orloj-ray extension)",
        _responses("200", "An event stream that ends with the task", _SSE),
        params=item + [_query("after", {"type": "integer", "minimum": 0})], op_id="task_stream")}
    paths["/v1/tasks/{name}/cancel"] = {"post": _op(
        "tasks", "Cancel an active task (phase Failed; 409 already_terminal when it has finished)",
        ok(_json("Task")), params=item, body=_json("TaskCancelRequest"), body_required=False, op_id="task_cancel")}
    paths["/v1/agents/{name}/logs"] = {"get": _op("agents", "Agent log lines", ok(_json("NamedLogsResponse")),
                                                  params=item, op_id="agent_logs")}
    paths["/v1/memories/{name}/entries"] = {"get": _op(
        "memories", "What a Memory's backend holds", ok(_json("MemoryEntriesResponse")),
        params=item + [_query("q", {"type": "string"}), _query("prefix", {"type": "string"}),
                       _query("limit", {"type": "integer"})], op_id="memory_entries")}
    for verb in ("approve", "deny"):
        paths[f"/v1/tool-approvals/{{name}}/{verb}"] = {"post": _op(
            "tool-approvals", f"{verb.capitalize()} a pending tool call", ok(_json("ToolApproval")), params=item,
            body=_json("ToolApprovalDecisionRequest"), body_required=False, op_id=f"toolapproval_{verb}")}
    paths["/v1/audit"] = {"get": _op(
        "audit", "Governance audit trail (orloj-ray extension)", ok(_json("AuditList")),
        params=[_NAMESPACE, _query("after", {"type": "string"}), _query("limit", {"type": "integer"})]
        + [_query(n, {"type": "string"}) for n in ("task", "agent", "decision", "code", "subject")],
        op_id="audit_list")}
    paths["/v1/webhook-deliveries/{endpoint_id}"] = {"post": _op(
        "task-webhooks", "A signed TaskWebhook delivery (the signature authenticates it)",
        _responses("202", "Accepted or duplicate", _json("WebhookDeliveryResponse")),
        params=[{"name": "endpoint_id", "in": "path", "required": True, "schema": {"type": "string"}}],
        body={"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}, body_required=False,
        op_id="webhook_delivery")}
    paths["/v1/auth/config"] = {"get": _op("auth", "Auth mode", ok(_json("AuthConfigResponse")), op_id="auth_config")}
    paths["/v1/auth/me"] = {"get": _op("auth", "Who the caller is", ok(_json("AuthMeResponse")), op_id="auth_me")}
    native = "Native (password) auth is not served here: 400 native_auth_unsupported; use bearer tokens"
    for path, schema in (("setup", "AuthCredentialsRequest"), ("login", "AuthCredentialsRequest"),
                         ("change-password", "AuthChangePasswordRequest"),
                         ("admin/reset-password", "AuthResetPasswordRequest")):
        paths[f"/v1/auth/{path}"] = {"post": _op("auth", native, _responses("200", "Never answered"),
                                                 body=_json(schema), body_required=False,
                                                 op_id="auth_" + path.replace("/", "_").replace("-", "_"))}
    paths["/v1/admin/rotate-secret-key"] = {"post": _op(
        "auth", "Re-encrypt every stored Secret under a new key (admin)",
        ok({"application/json": {"schema": {"type": "object"}}}),
        op_id="admin_rotate_secret_key")}
    paths["/v1/auth/logout"] = {"post": _op("auth", "Log out (no session to end with token auth)",
                                            ok(_json("OkStatusMessage")), op_id="auth_logout")}


@functools.lru_cache(maxsize=1)
def _document() -> str:
    paths: dict[str, dict] = {}
    _kind_paths(paths)
    _other_paths(paths)
    schemas = component_schemas()
    schemas.update(_EXTRA_SCHEMAS)
    doc = {
        "openapi": "3.1.0",
        "info": {"title": "orloj-ray API", "version": "1.0.0",
                 "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
                 "description": "Upstream Orloj's v1 API (paths, verbs, bodies), served by orloj-ray. Errors are "
                                "JSON: {\"error\": {\"code\", \"message\", \"field\", \"details\"}}. Unknown "
                                "manifest fields come back as `Warning: 299` headers. Auth: "
                                "`Authorization: Bearer <token>` when the server runs with tokens."},
        "servers": [{"url": "/"}],
        "tags": [{"name": info.plural} for info in KINDS] + [{"name": n} for n in ("auth", "system", "events",
                                                                                   "audit")],
        "paths": paths,
        "components": {"schemas": schemas,
                       "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}}},
        "security": [{"bearerAuth": []}, {}],
    }
    return json.dumps(doc, separators=(",", ":"))


def openapi_document() -> dict:
    """The OpenAPI 3.1 document of the API (a fresh copy)."""
    return copy.deepcopy(json.loads(_document()))


_DOCS_HTML = """<!doctype html>
<html><head><meta charset="utf-8"><title>orloj-ray API</title>
<link rel="stylesheet" href="/docs/assets/swagger-ui.css"></head>
<body><div id="ui"></div><script src="/docs/assets/swagger-ui-bundle.js"></script>
<script>SwaggerUIBundle({url: "/openapi.json", dom_id: "#ui"});</script></body></html>
"""


def register(app: FastAPI) -> None:
    async def openapi_json() -> Response:
        return Response(_document(), media_type="application/json")

    async def docs() -> HTMLResponse:
        return HTMLResponse(_DOCS_HTML)

    app.add_api_route("/openapi.json", openapi_json, methods=["GET"], name="openapi", include_in_schema=False)
    app.add_api_route("/docs", docs, methods=["GET"], name="docs", include_in_schema=False)
    app.mount("/docs/assets", StaticFiles(directory=swagger_ui_bundle.swagger_ui_path), name="docs_assets")

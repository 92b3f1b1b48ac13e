"""Tool and McpServer (whose discovered tools become generated Tool resources)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, ClassVar
from urllib.parse import urlsplit

from pydantic import Field

from orloj_ray.resources.base import (
    MAX_ATTEMPTS,
    Int,
    Spec,
    Str,
    Wire,
    bounded,
    choice,
    quote,
    report,
    trimmed,
    unique,
)
from orloj_ray.resources.durations import check_duration
from orloj_ray.resources.envelope import Metadata, Resource

TOOL_TYPES = ("http", "external", "grpc", "queue", "webhook-callback", "mcp", "wasm")
OPERATION_CLASSES = ("read", "write", "delete", "admin")
RISK_LEVELS = ("low", "medium", "high", "critical")
AUTH_PROFILES = ("bearer", "api_key_header", "basic", "oauth2_client_credentials")
_HOST_PORT = re.compile(r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[-A-Za-z0-9.]*[A-Za-z0-9])?):[0-9]{1,5}")


def url_problem(url: str, field: str) -> str | None:
    """Why ``url`` is not an ``http(s)://host[:port]/...`` URL (None when it is one)."""
    try:
        parts = urlsplit(url)
        port_ok = parts.port is None or 0 < parts.port < 65536
    except ValueError:
        parts, port_ok = None, False
    if parts is None or parts.scheme.lower() not in ("http", "https") or not parts.hostname or not port_ok \
            or any(c.isspace() or ord(c) < 32 for c in url):
        return f"invalid {field} {quote(url)}: expected an http:// or https:// URL with a host"
    return None


def _endpoint_problem(endpoint: str, tool_type: str, isolation: str) -> str | None:
    """What may name a tool's target: a URL, ``host:port`` for grpc, ``exec:<program>`` where a
    sandbox runs it, ``file:/abs/module.wasm`` for wasm; anything else (``file:/etc/passwd`` on
    an http tool, ``gopher:``, text) is refused at apply, not at the first call."""
    if not endpoint:
        return None
    field = "spec.endpoint"
    if tool_type == "grpc" and _HOST_PORT.fullmatch(endpoint):
        return None
    if endpoint.startswith("exec:"):
        if isolation in ("sandboxed", "container") and endpoint[5:].strip():
            return None
        return (f"invalid {field} {quote(endpoint)}: exec:<program> runs only in a sandbox "
                "(spec.runtime.isolation_mode sandboxed or container)")
    if endpoint.startswith("file:"):
        path = endpoint[len("file://"):] if endpoint.startswith("file://") else endpoint[len("file:"):]
        if (tool_type == "wasm" or isolation == "wasm") and path.startswith("/") and path.endswith(".wasm"):
            return None
        return (f"invalid {field} {quote(endpoint)}: file: names a WebAssembly module "
                "(file:/abs/path/module.wasm) of a wasm tool only")
    problem = url_problem(endpoint, field)
    if problem and tool_type == "grpc":
        return f"invalid {field} {quote(endpoint)}: expected host:port or an http(s) URL"
    return problem


class ToolAuth(Wire):
    CAMEL: ClassVar[frozenset[str]] = frozenset({"secret_ref", "header_name", "token_url"})

    profile: Str = ""
    secret_ref: Str = ""
    header_name: Str = ""
    token_url: Str = ""
    scopes: list[Str] = []


class ToolRetry(Wire):
    max_attempts: Int = bounded(0, 0, MAX_ATTEMPTS)
    backoff: Str = ""
    max_backoff: Str = ""
    jitter: Str = ""


class ToolRuntime(Wire):
    timeout: Str = ""
    isolation_mode: Str = ""
    retry: ToolRetry = Field(default_factory=ToolRetry)


class ToolSpec(Spec):
    type: Str = ""
    endpoint: Str = ""
    description: Str = ""
    input_schema: dict[Str, Any] = {}
    mcp_server_ref: Str = ""
    mcp_tool_name: Str = ""
    capabilities: list[Str] = []
    operation_classes: list[Str] = []
    risk_level: Str = ""
    runtime: ToolRuntime = Field(default_factory=ToolRuntime)
    auth: ToolAuth = Field(default_factory=ToolAuth)

    def normalize(self, meta: Metadata, status: dict[str, Any], now: datetime) -> None:
        self.type = choice(self.type, "spec.type", TOOL_TYPES, "http",
                           "invalid spec.type {value}: expected http, external, grpc, queue, "
                           "webhook-callback, mcp, or wasm")
        self.mcp_server_ref, self.mcp_tool_name = self.mcp_server_ref.strip(), self.mcp_tool_name.strip()
        if self.type == "mcp":
            for name in ("mcp_server_ref", "mcp_tool_name"):
                if not getattr(self, name):
                    report(f"spec.{name}", f"spec.{name} is required when spec.type is mcp")
        self.capabilities = unique(self.capabilities)
        ops: list[str] = []
        for i, op in enumerate(o.strip().lower() for o in self.operation_classes):
            if op and op not in OPERATION_CLASSES:
                report(f"spec.operation_classes[{i}]", f"invalid spec.operation_classes value "
                       f"{quote(op)}: expected read, write, delete, or admin")
                continue
            if op and op not in ops:
                ops.append(op)
        self.risk_level = choice(self.risk_level, "spec.risk_level", RISK_LEVELS, "low",
                                 "invalid spec.risk_level {value}: expected low, medium, high, or critical")
        risky = self.risk_level in ("high", "critical")
        self.operation_classes = ops or (["write"] if risky else ["read"])
        self._normalize_runtime(risky)
        self._normalize_auth()
        self.endpoint = self.endpoint.strip()
        if problem := _endpoint_problem(self.endpoint, self.type, self.runtime.isolation_mode):
            report("spec.endpoint", problem)

    def _normalize_runtime(self, risky: bool) -> None:
        runtime, retry = self.runtime, self.runtime.retry
        runtime.timeout = runtime.timeout.strip() or "30s"
        check_duration(runtime.timeout, "spec.runtime.timeout", positive=True)
        runtime.isolation_mode = choice(
            runtime.isolation_mode, "spec.runtime.isolation_mode", ("none", "sandboxed", "container", "wasm"),
            "sandboxed" if risky else "none",
            "invalid spec.runtime.isolation_mode {value}: expected none, sandboxed, container, or wasm")
        if retry.max_attempts <= 0:
            retry.max_attempts = 1
        retry.backoff = retry.backoff.strip() or "0s"
        check_duration(retry.backoff, "spec.runtime.retry.backoff")
        retry.max_backoff = retry.max_backoff.strip() or "30s"
        check_duration(retry.max_backoff, "spec.runtime.retry.max_backoff")
        retry.jitter = choice(retry.jitter, "spec.runtime.retry.jitter", ("none", "full", "equal"), "none",
                              "invalid spec.runtime.retry.jitter {value}: expected none, full, or equal")

    def _normalize_auth(self) -> None:
        auth = self.auth
        auth.secret_ref, auth.header_name, auth.token_url = (
            auth.secret_ref.strip(), auth.header_name.strip(), auth.token_url.strip())
        if auth.profile.strip() or auth.secret_ref:
            auth.profile = choice(auth.profile, "spec.auth.profile", AUTH_PROFILES, "bearer",
                                  "invalid spec.auth.profile {value}: expected bearer, api_key_header, basic, "
                                  "or oauth2_client_credentials")
            if not auth.secret_ref:
                report("spec.auth.secretRef", "spec.auth.secretRef is required when auth.profile is set")
            if auth.profile == "api_key_header" and not auth.header_name:
                report("spec.auth.headerName", "spec.auth.headerName is required when auth.profile is api_key_header")
            if auth.profile == "oauth2_client_credentials" and not auth.token_url:
                report("spec.auth.tokenURL",
                       "spec.auth.tokenURL is required when auth.profile is oauth2_client_credentials")
            elif auth.token_url and (problem := url_problem(auth.token_url, "spec.auth.tokenURL")):
                report("spec.auth.tokenURL", problem)
        auth.scopes = trimmed(auth.scopes)


class Tool(Resource):
    spec: ToolSpec = Field(default_factory=ToolSpec)


class McpEnvVar(Wire):
    KEEP: ClassVar[frozenset[str]] = frozenset({"name"})
    CAMEL: ClassVar[frozenset[str]] = frozenset({"secret_ref"})

    name: Str = ""
    value: Str = ""
    secret_ref: Str = ""


class McpToolFilter(Wire):
    include: list[Str] = []


class McpReconnect(Wire):
    """Stored for compatibility; upstream's runtime does not use it."""

    max_attempts: Int = bounded(0, 0, MAX_ATTEMPTS)
    backoff: Str = ""


class McpServerSpec(Spec):
    KEEP: ClassVar[frozenset[str]] = frozenset({"transport"})

    transport: Str = ""
    command: Str = ""
    args: list[Str] = []
    env: list[McpEnvVar] = []
    endpoint: Str = ""
    auth: ToolAuth = Field(default_factory=ToolAuth)
    tool_filter: McpToolFilter = Field(default_factory=McpToolFilter)
    reconnect: McpReconnect = Field(default_factory=McpReconnect)
    connect_timeout: Str = ""
    """orloj-ray extension: how long connecting (and listing its tools) may take; a duration,
    default 30s (upstream's fixed value). A slow ``npx`` first start may need more."""

    def normalize(self, meta: Metadata, status: dict[str, Any], now: datetime) -> None:
        if not self.transport.strip():
            report("spec.transport", "spec.transport is required (stdio or http)")
        else:
            self.transport = choice(self.transport, "spec.transport", ("stdio", "http"), "",
                                    "invalid spec.transport {value}: expected stdio or http")
        self.command, self.endpoint = self.command.strip(), self.endpoint.strip()
        if self.transport == "stdio" and not self.command:
            report("spec.command", "spec.command is required for stdio transport")
        if self.transport == "http":
            if not self.endpoint:
                report("spec.endpoint", "spec.endpoint is required for http transport")
            elif problem := url_problem(self.endpoint, "spec.endpoint"):
                report("spec.endpoint", problem)
        for env in self.env:
            env.name, env.value, env.secret_ref = env.name.strip(), env.value.strip(), env.secret_ref.strip()
        self.tool_filter.include = trimmed(self.tool_filter.include)
        if self.reconnect.max_attempts <= 0:
            self.reconnect.max_attempts = 3
        self.reconnect.backoff = self.reconnect.backoff.strip() or "2s"
        check_duration(self.reconnect.backoff, "spec.reconnect.backoff")
        self.connect_timeout = self.connect_timeout.strip()
        if self.connect_timeout:
            check_duration(self.connect_timeout, "spec.connect_timeout", positive=True)


class McpServer(Resource):
    spec: McpServerSpec = Field(default_factory=McpServerSpec)

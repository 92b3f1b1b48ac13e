"""Tool and McpServer (whose discovered tools become generated Tool resources)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from pydantic import Field

from orloj_ray.resources.base import Int, Spec, Str, Wire, choice, invalid, quote, trimmed, unique
from orloj_ray.resources.durations import check_duration
from orloj_ray.resources.envelope import Metadata, Resource

TOOL_TYPES = ("http", "external", "grpc", "queue", "webhook-callback", "mcp", "wasm")
OPERATION_CLASSES = ("read", "write", "delete", "admin")
RISK_LEVELS = ("low", "medium", "high", "critical")
AUTH_PROFILES = ("bearer", "api_key_header", "basic", "oauth2_client_credentials")


class ToolAuth(Wire):
    CAMEL: ClassVar[frozenset[str]] = frozenset({"secret_ref", "header_name", "token_url"})

    profile: Str = ""
    secret_ref: Str = ""
    header_name: Str = ""
    token_url: Str = ""
    scopes: list[Str] = []


class ToolRetry(Wire):
    max_attempts: Int = 0
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
                    raise invalid(f"spec.{name}", f"spec.{name} is required when spec.type is mcp")
        self.capabilities = unique(self.capabilities)
        ops: list[str] = []
        for i, op in enumerate(o.strip().lower() for o in self.operation_classes):
            if op and op not in OPERATION_CLASSES:
                raise invalid(f"spec.operation_classes[{i}]", f"invalid spec.operation_classes value "
                              f"{quote(op)}: expected read, write, delete, or admin")
            if op and op not in ops:
                ops.append(op)
        self.risk_level = choice(self.risk_level, "spec.risk_level", RISK_LEVELS, "low",
                                 "invalid spec.risk_level {value}: expected low, medium, high, or critical")
        risky = self.risk_level in ("high", "critical")
        self.operation_classes = ops or (["write"] if risky else ["read"])
        self._normalize_runtime(risky)
        self._normalize_auth()

    def _normalize_runtime(self, risky: bool) -> None:
        runtime, retry = self.runtime, self.runtime.retry
        runtime.timeout = runtime.timeout.strip() or "30s"
        check_duration(runtime.timeout, "spec.runtime.timeout")
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
                raise invalid("spec.auth.secretRef", "spec.auth.secretRef is required when auth.profile is set")
            if auth.profile == "api_key_header" and not auth.header_name:
                raise invalid("spec.auth.headerName",
                              "spec.auth.headerName is required when auth.profile is api_key_header")
            if auth.profile == "oauth2_client_credentials" and not auth.token_url:
                raise invalid("spec.auth.tokenURL",
                              "spec.auth.tokenURL is required when auth.profile is oauth2_client_credentials")
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

    max_attempts: Int = 0
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

    def normalize(self, meta: Metadata, status: dict[str, Any], now: datetime) -> None:
        if not self.transport.strip():
            raise invalid("spec.transport", "spec.transport is required (stdio or http)")
        self.transport = choice(self.transport, "spec.transport", ("stdio", "http"), "",
                                "invalid spec.transport {value}: expected stdio or http")
        self.command, self.endpoint = self.command.strip(), self.endpoint.strip()
        if self.transport == "stdio" and not self.command:
            raise invalid("spec.command", "spec.command is required for stdio transport")
        if self.transport == "http" and not self.endpoint:
            raise invalid("spec.endpoint", "spec.endpoint is required for http transport")
        for env in self.env:
            env.name, env.value, env.secret_ref = env.name.strip(), env.value.strip(), env.secret_ref.strip()
        self.tool_filter.include = trimmed(self.tool_filter.include)
        if self.reconnect.max_attempts <= 0:
            self.reconnect.max_attempts = 3
        self.reconnect.backoff = self.reconnect.backoff.strip() or "2s"
        check_duration(self.reconnect.backoff, "spec.reconnect.backoff")


class McpServer(Resource):
    spec: McpServerSpec = Field(default_factory=McpServerSpec)

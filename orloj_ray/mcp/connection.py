"""How to reach one MCP server: an McpServer resource with its secrets resolved.

``McpConnection`` is built at sync time and at task resolution, then travels with the tool
(in the TurnRequest) to whichever process runs the call. It holds secret values (stdio env
entries from secrets, the HTTP auth header), so its ``repr`` names only the server.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Awaitable, Callable

SecretLookup = Callable[[str], Awaitable[str]]
"""``secretRef -> value``; raises ``LookupError`` naming the missing secret."""

DEFAULT_CONNECT_TIMEOUT_S = 30.0
"""Upstream's MCP connect timeout; an McpServer's ``spec.connect_timeout`` overrides it."""
"""Bound on spawning/connecting plus the ``initialize`` handshake."""


class McpConfigError(ValueError):
    """The McpServer cannot be connected as declared (a missing secret, a bad auth profile)."""


@dataclass(frozen=True)
class McpConnection:
    namespace: str
    name: str
    transport: str
    """``stdio`` or ``http`` (streamable HTTP)."""
    command: str = ""
    args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    endpoint: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def fingerprint(self) -> str:
        """Changes whenever anything about the connection changes (so sessions are rebuilt)."""
        doc = [self.transport, self.command, list(self.args), sorted(self.env.items()), self.endpoint,
               sorted(self.headers.items())]
        return hashlib.sha256(json.dumps(doc).encode()).hexdigest()[:16]

    def __repr__(self) -> str:  # env values and headers may be secrets
        target = self.command if self.transport == "stdio" else self.endpoint
        return f"McpConnection({self.key!r}, transport={self.transport!r}, target={target!r})"

    __str__ = __repr__


async def connection_from_server(server: dict, secrets: SecretLookup) -> McpConnection:
    """Build the connection for an McpServer resource (normalized wire shape)."""
    meta = server["metadata"]
    spec = server.get("spec") or {}
    transport = (spec.get("transport") or "").strip().lower()
    name = meta["name"]
    if transport not in ("stdio", "http"):
        raise McpConfigError(f'mcp server "{name}": spec.transport must be stdio or http, got "{transport}"')
    env: dict[str, str] = {}
    for i, item in enumerate(spec.get("env") or []):
        var = (item.get("name") or "").strip()
        if not var:
            continue
        ref = (item.get("secretRef") or item.get("secret_ref") or "").strip()
        if ref:
            try:
                env[var] = await secrets(ref)
            except LookupError as exc:
                raise McpConfigError(f'mcp server "{name}" spec.env[{i}] ({var}): {exc}') from None
        else:
            env[var] = item.get("value") or ""
    headers: dict[str, str] = {}
    auth = spec.get("auth") or {}
    ref = (auth.get("secretRef") or "").strip()
    if transport == "http" and ref:
        try:
            value = await secrets(ref)
        except LookupError as exc:
            raise McpConfigError(f'mcp server "{name}" spec.auth.secretRef: {exc}') from None
        profile = (auth.get("profile") or "bearer").strip().lower()
        if profile == "bearer":
            headers["Authorization"] = f"Bearer {value}"
        elif profile == "api_key_header":
            headers[(auth.get("headerName") or "").strip() or "X-API-Key"] = value
        else:
            raise McpConfigError(f'mcp server "{name}": spec.auth.profile "{profile}" is not supported for MCP '
                                 "(use bearer or api_key_header)")
    return McpConnection(
        namespace=meta.get("namespace") or "default",
        name=name,
        transport=transport,
        command=(spec.get("command") or "").strip(),
        args=tuple(spec.get("args") or ()),
        env=env,
        endpoint=(spec.get("endpoint") or "").strip(),
        headers=headers,
        connect_timeout_s=_seconds(spec.get("connect_timeout"), DEFAULT_CONNECT_TIMEOUT_S),
    )


def _seconds(value, default: float) -> float:
    from orloj_ray.resources.durations import parse_duration

    try:
        return parse_duration(str(value)).total_seconds() or default if value else default
    except ValueError:
        return default

"""API authentication: upstream's bearer-token mode with four roles.

``auth_mode`` (``ServerConfig.auth_mode``, ``--auth-mode``, ``ORLOJ_AUTH_MODE``):

* ``off``: every request passes. Bound beyond loopback, that is logged as a loud WARNING.
* ``token``: ``Authorization: Bearer <token>``; tokens from ``ORLOJ_API_TOKENS``
  (``token:role``, ``name:token:role`` or ``name:token:role:ns-a|ns-b``, comma-separated; role
  defaults to ``reader``). A token with a namespace list sees and changes only those
  namespaces (``serve.tenancy``); ``admin`` is cluster-wide and takes no list.
* empty: ``off`` when the API binds loopback, ``token`` otherwise.

Which role a request needs is the data table ``ROUTE_ROLES`` (api.md section 2.2), read top
to bottom, first match wins. ``admin`` satisfies every role; ``writer`` and ``controller``
each satisfy ``reader`` and themselves only. Tokens are kept as SHA-256 digests and compared
with ``hmac.compare_digest`` against every configured digest, so timing says nothing about
which token, or how much of one, matched. Failures: ``401 missing bearer token``,
``401 invalid token``, ``403 forbidden`` (JSON error envelope, ``WWW-Authenticate: Bearer``).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
from contextvars import ContextVar
from dataclasses import dataclass

from fastapi import FastAPI, Request
from starlette.types import ASGIApp, Receive, Scope, Send

from orloj_ray.config import ConfigError, ServerConfig
from serve.errors import JSONResponse, error_response

log = logging.getLogger("orloj_ray.serve.auth")

ROLES = ("reader", "writer", "controller", "admin")

SATISFIED_BY = {
    "reader": frozenset({"reader", "writer", "controller", "admin"}),
    "writer": frozenset({"writer", "admin"}),
    "controller": frozenset({"controller", "admin"}),
    "admin": frozenset({"admin"}),
}
"""Required role -> the token roles that satisfy it (upstream ``roleAllows``)."""

READS = frozenset({"GET", "HEAD", "OPTIONS"})
WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
ANY = None


@dataclass(frozen=True)
class RouteRole:
    """One row of the role table: ``methods`` (None = any), a path test, the role (None = open)."""

    methods: frozenset[str] | None
    match: str
    """``exact``, ``tree`` (the path or anything under it), ``prefix``, ``suffix`` or ``any``."""
    path: str
    role: str | None
    why: str = ""

    def applies(self, method: str, path: str) -> bool:
        if self.methods is not None and method not in self.methods:
            return False
        if self.match == "exact":
            return path == self.path
        if self.match == "tree":
            return path == self.path or path.startswith(self.path + "/")
        if self.match == "prefix":
            return path.startswith(self.path)
        if self.match == "suffix":
            return path.endswith(self.path)
        return self.match == "any"


ROUTE_ROLES: tuple[RouteRole, ...] = (
    RouteRole(ANY, "exact", "/healthz", None, "liveness probes"),
    RouteRole(ANY, "exact", "/metrics", "reader", "upstream code (its docs say unauthenticated)"),
    RouteRole(ANY, "tree", "/v1/auth", None, "auth endpoints check what they need"),
    RouteRole(frozenset({"POST"}), "prefix", "/v1/webhook-deliveries/", None,
              "authenticated by the TaskWebhook's signature (upstream code asks writer; see compatibility)"),
    RouteRole(WRITES, "tree", "/v1/mcp-servers", "admin", "MCP servers run host commands"),
    RouteRole(ANY, "tree", "/v1/admin", "admin", "operator actions (secret key rotation)"),
    RouteRole(READS, "tree", "/v1", "reader"),
    RouteRole(ANY, "suffix", "/status", "controller", "status writes belong to controllers"),
    RouteRole(ANY, "tree", "/v1", "writer", "every other mutation"),
    RouteRole(ANY, "any", "", None, "outside /v1: the web console and static files"),
)


def required_role(method: str, path: str) -> str | None:
    """The role a request needs (None: open), from ``ROUTE_ROLES``."""
    method = method.upper()
    for row in ROUTE_ROLES:
        if row.applies(method, path):
            return row.role
    return None


def role_allows(actual: str, required: str) -> bool:
    return actual in SATISFIED_BY.get(required, frozenset())


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


@dataclass(frozen=True)
class Principal:
    name: str
    role: str
    namespaces: frozenset[str] | None = None
    """The namespaces this token may see and change; None: every namespace."""

    def sees(self, namespace: str | None) -> bool:
        return self.namespaces is None or (namespace or "default") in self.namespaces


CURRENT_PRINCIPAL: ContextVar[Principal | None] = ContextVar("orloj_principal", default=None)
"""Who makes the request being served (set by ``TokenAuth``; None with auth off or on open routes)."""


def parse_tokens(raw: str) -> list[tuple[bytes, Principal]]:
    """``token:role`` / ``name:token:role`` / ``name:token:role:ns-a|ns-b`` entries -> (digest, principal).

    Entries without ``:``, with an empty token or with an unknown role are skipped with a
    warning (never echoing the entry); a non-empty list with no usable entry is a ConfigError,
    and so is an ``admin`` entry with namespaces (admins are cluster-wide: fail closed rather
    than hand out a token its operator believes confined).
    """
    out: list[tuple[bytes, Principal]] = []
    entries = [e.strip() for e in raw.split(",") if e.strip()]
    skipped = 0
    for entry in entries:
        parts = [p.strip() for p in entry.split(":")]
        spaces = None
        if len(parts) == 2:
            name, token, role = "", parts[0], parts[1]
        elif len(parts) == 3 and parts[0]:
            name, token, role = parts
        elif len(parts) == 4 and parts[0]:
            name, token, role = parts[:3]
            spaces = frozenset(n.strip() for n in parts[3].split("|") if n.strip())
        else:
            skipped += 1
            continue
        role = (role or "reader").lower()
        if not token or role not in ROLES or spaces == frozenset():
            skipped += 1
            continue
        if spaces is not None and role == "admin":
            raise ConfigError(f'ORLOJ_API_TOKENS entry "{name}": an admin token is cluster-wide and takes no '
                              "namespace list; give it role writer (or reader) to confine it")
        out.append((_digest(token), Principal(name=name or f"token-{len(out) + 1}", role=role, namespaces=spaces)))
    if skipped:
        log.warning("ORLOJ_API_TOKENS: %d malformed entr%s skipped (expected token:role, name:token:role or "
                    "name:token:role:namespace|namespace, roles %s)", skipped, "y" if skipped == 1 else "ies", ", ".join(ROLES))
    if entries and not out:
        raise ConfigError(f"ORLOJ_API_TOKENS is set but all {len(entries)} entries are malformed: expected "
                          f"token:role or name:token:role with a role of {', '.join(ROLES)}")
    return out


def is_loopback(host: str) -> bool:
    host = (host or "").strip().strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def resolve_auth_mode(config: ServerConfig, host: str | None) -> ServerConfig:
    """The config with ``auth_mode`` decided for an API bound to ``host`` (None: unknown).

    Empty mode: ``off`` on loopback, ``token`` beyond it or when the address is unknown. Token
    mode without a single token is refused (ConfigError naming the fix) rather than run open.
    Auth off beyond loopback is allowed, with a loud WARNING.
    """
    loopback = host is not None and is_loopback(host)
    mode = config.auth_mode or ("off" if loopback else "token")
    if mode == "token" and not parse_tokens(config.api_tokens):
        where = f"binds {host}, beyond loopback" if host is not None else "bind address is not known"
        why = (f"the API {where}, so authentication defaults to token mode"
               if not config.auth_mode else "auth mode is token")
        raise ConfigError(f"{why}, but no API tokens are configured: set ORLOJ_API_TOKENS="
                          f"'<token>:admin,<token>:reader,...' (roles {', '.join(ROLES)}), "
                          f"or bind 127.0.0.1, or pass --auth-mode off (anyone who can reach the port gets full access)")
    if mode == "off" and not loopback:
        log.warning("!!! WARNING: the orloj-ray API binds %s with authentication OFF: anyone who can reach this "
                    "port can read secrets' metadata, create tasks and change every resource. Use --auth-mode token "
                    "with ORLOJ_API_TOKENS. !!!", host if host is not None else "an unknown address")
    return config.with_(auth_mode=mode)


class Authenticator:
    """Checks bearer tokens against ``ROUTE_ROLES``; ``Authenticator.off()`` lets all through."""

    def __init__(self, mode: str, tokens: list[tuple[bytes, Principal]]):
        if mode not in ("off", "token"):
            raise ConfigError(f'unknown auth mode "{mode}": expected off or token (--auth-mode, or ORLOJ_AUTH_MODE)')
        if mode == "token" and not tokens:
            raise ConfigError("auth mode token needs at least one API token (ORLOJ_API_TOKENS)")
        self.mode = mode
        self._tokens = tuple(tokens)

    @classmethod
    def off(cls) -> "Authenticator":
        return cls("off", [])

    @classmethod
    def from_config(cls, config: ServerConfig, host: str | None = None) -> "Authenticator":
        """From a config resolved by ``resolve_auth_mode``; an empty mode is resolved for
        ``host``, and with no host it fails closed (token mode), never open."""
        if not config.auth_mode or host is not None:
            config = resolve_auth_mode(config, host)
        return cls(config.auth_mode, parse_tokens(config.api_tokens) if config.auth_mode == "token" else [])

    @property
    def enabled(self) -> bool:
        return self.mode == "token"

    def principal(self, token: str) -> Principal | None:
        """The token's principal; every digest is compared, so the time taken is the same."""
        digest = _digest(token)
        found = None
        for known, principal in self._tokens:
            if hmac.compare_digest(known, digest):
                found = principal
        return found

    def check(self, method: str, path: str, authorization: str) -> tuple[int, str] | None:
        """None when allowed, else (HTTP status, message)."""
        return self.authenticate(method, path, authorization)[1]

    def authenticate(self, method: str, path: str,
                     authorization: str) -> tuple[Principal | None, tuple[int, str] | None]:
        """(who, None) when allowed, else (who or None, (HTTP status, message)). Open routes
        and auth off: no principal."""
        if not self.enabled:
            return None, None
        required = required_role(method, path)
        if required is None:
            return None, None
        token = bearer_token(authorization)
        if not token:
            return None, (401, "missing bearer token")
        principal = self.principal(token)
        if principal is None:
            return None, (401, "invalid token")
        if not role_allows(principal.role, required):
            return principal, (403, "forbidden")
        return principal, None


def bearer_token(header: str) -> str:
    scheme, _, value = (header or "").strip().partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""


class TokenAuth:
    """Pure ASGI middleware (SSE streams pass untouched) applying an ``Authenticator``."""

    def __init__(self, app: ASGIApp, authenticator: Authenticator) -> None:
        self.app = app
        self.auth = authenticator

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.auth.enabled:
            await self.app(scope, receive, send)
            return
        authorization = ""
        for key, value in scope.get("headers", []):
            if key == b"authorization":
                authorization = value.decode("latin-1")
                break
        principal, denied = self.auth.authenticate(scope.get("method", "GET"), scope.get("path", ""), authorization)
        if denied is None:
            reset = CURRENT_PRINCIPAL.set(principal)
            try:
                await self.app(scope, receive, send)
            finally:
                CURRENT_PRINCIPAL.reset(reset)
            return
        status, message = denied
        code = "unauthorized" if status == 401 else "forbidden"
        headers = {"WWW-Authenticate": 'Bearer realm="orloj"'} if status == 401 else None
        await error_response(status, code, message, headers=headers)(scope, receive, send)


def register(app: FastAPI, authenticator: Authenticator) -> None:
    """``GET /v1/auth/config`` and ``GET /v1/auth/me`` (the token subset of api.md section 2.3)."""

    async def auth_config() -> JSONResponse:
        return JSONResponse({"mode": authenticator.mode, "setup_required": False, "login_methods": []})

    async def auth_me(request: Request) -> JSONResponse:
        if not authenticator.enabled:
            return JSONResponse({"authenticated": True, "method": "none"})
        principal = authenticator.principal(bearer_token(request.headers.get("authorization", "")) or "\0")
        if principal is None:
            return JSONResponse({"authenticated": False, "method": "none"})
        body = {"authenticated": True, "username": principal.name, "role": principal.role, "method": "bearer"}
        if principal.namespaces is not None:
            body["namespaces"] = sorted(principal.namespaces)
        return JSONResponse(body)

    app.add_api_route("/v1/auth/config", auth_config, methods=["GET"], name="auth_config")
    app.add_api_route("/v1/auth/me", auth_me, methods=["GET"], name="auth_me")

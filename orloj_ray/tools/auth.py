"""Tool auth (execution.md 11.4): resolved secrets and how they go on a request.

``resolve_auth`` turns a Tool's ``spec.auth`` into a ``ResolvedAuth`` before the run (in
``resolve_task``); the result travels beside the Tool resource under ``AUTH_KEY`` and is never
written back to the Store. Its secret fields are left out of ``repr`` and it refuses JSON, so
it cannot end up in a trace or a log by accident. A secret that cannot be resolved is kept as
``error`` and fails the call with ``secret_resolution_failed``, as upstream does per call.

``TokenCache`` holds OAuth2 client-credentials tokens until ``expires_in`` (less a margin),
evicted when the tool answers 401.
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass, field
from typing import Awaitable, Callable

import httpx

from orloj_ray.tools.base import ToolError, tool_name

AUTH_KEY = "__orloj_resolved_auth__"
"""Key under which a Tool dict carries its ``ResolvedAuth`` (in memory only)."""


@dataclass(frozen=True)
class ResolvedAuth:
    profile: str
    secret_ref: str
    header_name: str = ""
    token_url: str = ""
    scopes: tuple[str, ...] = ()
    secret: str = field(default="", repr=False)
    client_id: str = field(default="", repr=False)
    client_secret: str = field(default="", repr=False)
    error: str = ""

    def secret_values(self) -> list[str]:
        """Every value a redactor must hide (the basic-auth password on its own too)."""
        values = [v for v in (self.secret, self.client_id, self.client_secret) if v]
        if self.profile == "basic" and ":" in self.secret:
            values.append(self.secret.split(":", 1)[1])
            values.append(base64.b64encode(self.secret.encode()).decode())
        return [v for v in values if len(v) >= 4]

    def __reduce__(self):  # pickles (Ray) but never as JSON
        return (_rebuild, (self.profile, self.secret_ref, self.header_name, self.token_url, self.scopes,
                           self.secret, self.client_id, self.client_secret, self.error))


def _rebuild(*args):
    return ResolvedAuth(*args)


def auth_of(tool: dict) -> ResolvedAuth | None:
    value = tool.get(AUTH_KEY)
    return value if isinstance(value, ResolvedAuth) else None


def with_auth(tool: dict, auth: ResolvedAuth | None) -> dict:
    """A shallow copy of ``tool`` carrying ``auth``: the stored resource is not touched."""
    return {**tool, AUTH_KEY: auth} if auth is not None else tool


async def resolve_auth(tool: dict, lookup: Callable[[str], Awaitable[str]]) -> ResolvedAuth | None:
    """Resolve ``spec.auth`` with ``lookup(secret_ref)`` (the Secret chain of execution.md 14)."""
    auth = (tool.get("spec") or {}).get("auth") or {}
    ref = str(auth.get("secretRef") or auth.get("secret_ref") or "").strip()
    profile = str(auth.get("profile") or "").strip().lower() or ("bearer" if ref else "")
    if not profile:
        return None
    base = dict(profile=profile, secret_ref=ref,
                header_name=str(auth.get("headerName") or auth.get("header_name") or ""),
                token_url=str(auth.get("tokenURL") or auth.get("token_url") or ""),
                scopes=tuple(str(s) for s in auth.get("scopes") or ()))
    try:
        if profile == "oauth2_client_credentials":
            ref_base = ref.rsplit(":", 1)[0] if ":" in ref else ref
            return ResolvedAuth(**base, client_id=await lookup(f"{ref_base}:client_id"),
                                client_secret=await lookup(f"{ref_base}:client_secret"))
        secret = await lookup(ref)
    except LookupError as exc:
        return ResolvedAuth(**base, error=str(exc))
    if profile == "basic" and ":" not in secret:
        return ResolvedAuth(**base, error=f'secret "{ref}" for basic auth must be "user:password"')
    return ResolvedAuth(**base, secret=secret)


def _check(tool: dict, auth: ResolvedAuth) -> None:
    name = tool_name(tool)
    if auth.error:
        raise ToolError(f'tool "{name}" auth secret resolution failed: {auth.error}', code="secret_resolution_failed")
    if auth.profile == "api_key_header" and not auth.header_name:
        raise ToolError(f'tool "{name}": auth.headerName is required for api_key_header', code="runtime_policy_invalid")
    if auth.profile == "oauth2_client_credentials" and not auth.token_url:
        raise ToolError(f'tool "{name}": auth.tokenURL is required for oauth2_client_credentials',
                        code="runtime_policy_invalid")
    if auth.profile not in ("bearer", "api_key_header", "basic", "oauth2_client_credentials"):
        raise ToolError(f'tool "{name}": unknown auth.profile "{auth.profile}"', code="runtime_policy_invalid")


TokenFetcher = Callable[[ResolvedAuth, str], Awaitable[httpx.Response]]


class TokenCache:
    """OAuth2 client-credentials tokens by (token URL, client id, scopes)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, margin_s: float = 30.0):
        self._tokens: dict[tuple, tuple[str, float]] = {}
        self._clock = clock
        self._margin = margin_s
        self.exchanges = 0
        """How many token requests were made (observable for tests and metrics)."""

    @staticmethod
    def _key(auth: ResolvedAuth) -> tuple:
        return (auth.token_url, auth.client_id, auth.scopes)

    def evict(self, auth: ResolvedAuth) -> None:
        self._tokens.pop(self._key(auth), None)

    async def token(self, auth: ResolvedAuth, name: str, post: TokenFetcher) -> str:
        key = self._key(auth)
        cached = self._tokens.get(key)
        if cached and cached[1] > self._clock():
            return cached[0]
        self.exchanges += 1
        try:
            resp = await post(auth, name)
        except ToolError:
            raise
        except httpx.HTTPError as exc:
            raise ToolError(f'tool "{name}" oauth2 token request failed: {type(exc).__name__}',
                            code="secret_resolution_failed", retryable=True) from None
        if resp.status_code >= 400:
            raise ToolError(f'tool "{name}" oauth2 token endpoint answered HTTP {resp.status_code}',
                            code="secret_resolution_failed", retryable=resp.status_code >= 500 or resp.status_code == 429)
        try:
            doc = resp.json()
            token = str(doc["access_token"])
        except (ValueError, KeyError, TypeError):
            raise ToolError(f'tool "{name}" oauth2 token response has no access_token',
                            code="secret_resolution_failed", retryable=True) from None
        expires = float(doc.get("expires_in") or 0) if isinstance(doc, dict) else 0.0
        if expires > 0:
            self._tokens[key] = (token, self._clock() + max(0.0, expires - min(self._margin, expires / 2)))
        return token


async def auth_headers(tool: dict, auth: ResolvedAuth | None, cache: TokenCache, post: TokenFetcher) -> dict[str, str]:
    """The headers that authenticate one attempt."""
    if auth is None:
        return {}
    _check(tool, auth)
    if auth.profile == "bearer":
        return {"Authorization": f"Bearer {auth.secret}"}
    if auth.profile == "api_key_header":
        return {auth.header_name: auth.secret}
    if auth.profile == "basic":
        return {"Authorization": "Basic " + base64.b64encode(auth.secret.encode()).decode()}
    token = await cache.token(auth, tool_name(tool), post)
    return {"Authorization": f"Bearer {token}"}

"""``http`` and ``external`` tools over HTTP (execution.md 11.1, 11.2).

``http``: POST the raw tool input (``Content-Type: application/json``); a 2xx JSON body with a
``status`` is a contract response (``ok|error|denied``), anything else is the result text.
``external``: POST a v1 ``ToolExecutionRequest`` with ``X-Tool-Contract-Version: v1``; the
answer must be a contract response.

Every attempt: the egress guard resolves and pins the host, auth headers are injected
(bearer, api-key header, basic, OAuth2 client credentials), the step's ``Idempotency-Key``
is sent, and the attempt has the tool's ``runtime.timeout``. Retryable failures (connect
errors, timeouts, 429, 5xx, retryable contract errors) are retried up to
``runtime.retry.max_attempts`` (default 1, capped at ``MAX_ATTEMPTS``) on upstream's tool
schedule (``backoff * 2**(n-1)`` capped at ``max_backoff``, ``jitter`` ``none|full|equal``
derived from the tool name, see ``orloj_ray.retry``); a 429's ``Retry-After`` is
honoured within that cap. Redirects are not followed (a redirect
would leave the guard). Secrets and tokens are redacted from every message and output.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from typing import Awaitable, Callable

import httpx

from orloj_ray.redact import Redactor
from orloj_ray.retry import RetryPolicy, delay
from orloj_ray.tools.auth import ResolvedAuth, TokenCache, auth_headers, auth_of
from orloj_ray.tools.base import ToolCallContext, ToolError, seconds, tool_name
from orloj_ray.tools.egress import EgressGuard

MAX_ATTEMPTS = 10
BODY_SNIPPET = 300


def retry_policy(tool: dict):
    """Upstream's tool-level schedule (``orloj_ray.retry``), attempts capped at ``MAX_ATTEMPTS``."""
    try:
        policy = RetryPolicy.for_tool(tool)
    except ValueError as exc:
        raise ToolError(f'tool "{tool_name(tool)}": {exc}', code="runtime_policy_invalid") from None
    return replace(policy, max_attempts=min(policy.max_attempts, MAX_ATTEMPTS))


def retry_delay(policy, attempt: int, name: str, hint: float | None = None) -> float:
    """Wait after failed attempt ``attempt``: capped exponential backoff with upstream's
    deterministic jitter; a 429's ``Retry-After`` lengthens it, never past ``max_backoff``."""
    wait = delay(policy, attempt, name)
    if hint is not None:
        wait = max(wait, min(hint, policy.max_backoff))
    return wait


def _retry_after(resp: httpx.Response) -> float | None:
    try:
        return max(0.0, float(resp.headers.get("Retry-After", "")))
    except ValueError:
        return None


class HttpToolRunner:
    """``type: http`` / ``external`` tools over one shared async client."""

    def __init__(self, client: httpx.AsyncClient | None = None, *, guard: EgressGuard | None = None,
                 tokens: TokenCache | None = None, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep):
        self._client = client
        self._owned: tuple[asyncio.AbstractEventLoop, httpx.AsyncClient] | None = None
        self.guard = guard or EgressGuard()
        self.tokens = tokens or TokenCache()
        self._sleep = sleep

    async def call(self, tool: dict, tool_input: str, ctx: ToolCallContext) -> str:
        spec = tool.get("spec") or {}
        name = tool_name(tool)
        kind = str(spec.get("type") or "http").lower()
        if kind not in ("http", "external"):
            raise ToolError(f'tool "{name}": type "{kind}" is not an HTTP tool', code="unsupported_tool")
        endpoint = str(spec.get("endpoint") or "").strip()
        if not endpoint:
            raise ToolError(f'tool "{name}" has no spec.endpoint', code="runtime_policy_invalid")
        auth = auth_of(tool)
        redactor = Redactor(auth.secret_values() if auth else ())
        policy = retry_policy(tool)
        timeout = seconds(str((spec.get("runtime") or {}).get("timeout") or ""), 30.0)
        client = self._client or self._loop_client()
        for attempt in range(1, policy.max_attempts + 1):
            hint = None
            try:
                text, redactor = await self._attempt(client, tool, kind, endpoint, tool_input, ctx, auth,
                                                     redactor, timeout, attempt)
                return redactor.text(text)
            except _Retry as retry:
                error, hint = retry.error, retry.hint
            if not error.retryable or attempt == policy.max_attempts:
                if policy.max_attempts > 1 and error.retryable:
                    error = ToolError(f"{error.message} (after {attempt} attempts)", code=error.code, retryable=True)
                raise error
            await self._sleep(retry_delay(policy, attempt, name, hint))
        raise AssertionError("unreachable")

    def _loop_client(self) -> httpx.AsyncClient:
        """One pooled client per event loop (building one costs an SSL context)."""
        loop = asyncio.get_running_loop()
        if self._owned is None or self._owned[0] is not loop or self._owned[1].is_closed:
            self._owned = (loop, httpx.AsyncClient())
        return self._owned[1]

    async def aclose(self) -> None:
        if self._owned is not None:
            await self._owned[1].aclose()
            self._owned = None

    async def _attempt(self, client, tool, kind, endpoint, tool_input, ctx, auth: ResolvedAuth | None,
                       redactor: Redactor, timeout: float, attempt: int) -> tuple[str, Redactor]:
        name = tool_name(tool)
        target = await self.guard.check(endpoint, tool=name)
        headers = {"Content-Type": "application/json", "Idempotency-Key": ctx.idempotency_key,
                   "Host": target.host_header}
        try:
            headers.update(await auth_headers(tool, auth, self.tokens, self._post_token(timeout)))
        except ToolError as exc:
            raise _Retry(ToolError(redactor.text(exc.message), code=exc.code, retryable=exc.retryable)) from None
        if auth is not None and auth.profile == "oauth2_client_credentials":
            redactor = redactor.with_values([headers["Authorization"].split(" ", 1)[1]])
        if kind == "external":
            headers["X-Tool-Contract-Version"] = "v1"
            body = json.dumps(_request_envelope(tool, tool_input, ctx, attempt, timeout)).encode()
        else:
            body = tool_input.encode()
        extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
        try:
            resp = await client.post(target.url, content=body, headers=headers, timeout=timeout,
                                     extensions=extensions, follow_redirects=False)
        except httpx.TimeoutException:
            raise _Retry(ToolError(f'tool "{name}" timed out after {timeout:g}s', code="timeout",
                                   retryable=True)) from None
        except httpx.HTTPError as exc:
            raise _Retry(ToolError(redactor.text(f'tool "{name}" request failed: {type(exc).__name__}: {exc}'),
                                   retryable=True)) from None
        status = resp.status_code
        if status >= 300:
            snippet = redactor.text(resp.text[:BODY_SNIPPET].strip())
            detail = f": {snippet}" if snippet else ""
            if status == 401:
                if auth is not None:
                    self.tokens.evict(auth)
                raise _Retry(ToolError(f'tool "{name}" answered HTTP 401 (check the tool\'s auth secret){detail}',
                                       code="auth_invalid"))
            if status == 403:
                raise _Retry(ToolError(f'tool "{name}" answered HTTP 403{detail}', code="auth_forbidden"))
            retryable = status == 429 or status >= 500
            raise _Retry(ToolError(f'tool "{name}" answered HTTP {status}{detail}', retryable=retryable),
                         _retry_after(resp) if status == 429 else None)
        try:
            return parse_response(name, resp.text, strict=kind == "external", redactor=redactor), redactor
        except ToolError as exc:
            raise _Retry(exc) from None

    def _post_token(self, timeout: float):
        async def post(auth: ResolvedAuth, name: str) -> httpx.Response:
            target = await self.guard.check(auth.token_url, tool=name)
            data = {"grant_type": "client_credentials", "client_id": auth.client_id,
                    "client_secret": auth.client_secret}
            if auth.scopes:
                data["scope"] = " ".join(auth.scopes)
            return await self._loop_client().post(target.url, data=data, timeout=timeout, follow_redirects=False,
                                              headers={"Host": target.host_header, "Accept": "application/json"},
                                              extensions={"sni_hostname": target.host} if target.scheme == "https" else {})
        return post


class _Retry(Exception):
    def __init__(self, error: ToolError, hint: float | None = None):
        self.error, self.hint = error, hint


def _request_envelope(tool: dict, tool_input: str, ctx: ToolCallContext, attempt: int, timeout: float) -> dict:
    spec = tool.get("spec") or {}
    auth = spec.get("auth") or {}
    retry = (spec.get("runtime") or {}).get("retry") or {}
    try:
        parsed = json.loads(tool_input or "{}")
    except ValueError:
        parsed = None
    return {
        "tool_contract_version": "v1", "request_id": ctx.idempotency_key, "task_id": f"{ctx.namespace}/{ctx.task}",
        "namespace": ctx.namespace, "agent": ctx.agent,
        "tool": {"name": tool_name(tool), "operation": "invoke", "capabilities": list(spec.get("capabilities") or []),
                 "risk_level": spec.get("risk_level") or "low"},
        "input": parsed if isinstance(parsed, dict) else {"input": tool_input},
        "input_raw": tool_input,
        "runtime": {"mode": "external", "timeout_ms": int(timeout * 1000),
                    "max_attempts": int(retry.get("max_attempts") or 1), "backoff": retry.get("backoff") or "",
                    "max_backoff_ms": int(seconds(str(retry.get("max_backoff") or ""), 30.0) * 1000),
                    "jitter": (retry.get("jitter") or "none") != "none"},
        "auth": {"profile": auth.get("profile") or "", "secret_ref": auth.get("secretRef") or "",
                 "scopes": list(auth.get("scopes") or [])},
        "trace": {"trace_id": "", "span_id": ""}, "attempt": attempt,
    }


def parse_response(name: str, body: str, *, strict: bool = False, redactor: Redactor | None = None) -> str:
    """The result text of a tool answer, or ``ToolError`` for an ``error``/``denied`` envelope.

    ``strict``: the body must be a contract response (``external``, wasm, sandboxed programs
    that print JSON with a ``status`` are parsed the same way)."""
    redactor = redactor or Redactor()
    try:
        doc = json.loads(body)
    except ValueError:
        doc = None
    if not isinstance(doc, dict) or "status" not in doc:
        if strict:
            raise ToolError(f'tool "{name}" response is not a v1 contract envelope', code="execution_failed")
        return body.strip()
    version = doc.get("tool_contract_version") or doc.get("contract_version")
    if version and version != "v1":
        raise ToolError(f'tool "{name}" answered contract version "{version}" (expected v1)', code="invalid_input")
    status = str(doc.get("status") or "ok").lower()
    if status == "ok":
        output = doc.get("output")
        if isinstance(output, dict) and "result" in output:
            result = output["result"]
            return result if isinstance(result, str) else json.dumps(result)
        if isinstance(output, str):
            return output
        return json.dumps(output) if output is not None else ""
    err = doc.get("error")
    if not isinstance(err, dict):
        raise ToolError(f'tool "{name}" returned {status}: tool response missing error envelope')
    message = redactor.text(str(err.get("message") or err.get("reason") or status))
    if status == "denied":
        raise ToolError(f'tool "{name}" denied the call: {message}', code="permission_denied")
    if status != "error":
        raise ToolError(f'tool "{name}" returned unknown status "{status}"', code="execution_failed")
    code = str(err.get("code") or "execution_failed")
    return_code = code if code.replace("_", "").isalnum() else "execution_failed"
    raise ToolError(f'tool "{name}" returned error: {message}', code=return_code, retryable=bool(err.get("retryable")))

"""Tool runtime: how an agent's tool call reaches the tool.

``ToolRunner`` is the seam; ``HttpToolRunner`` implements upstream's ``http`` tool contract
(POST the raw input; a JSON body with a ``status`` is a contract envelope). Every call carries
the step's idempotency key as ``Idempotency-Key`` so a call repeated after a crash can be
recognised by the tool.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Protocol

import httpx

from orloj_ray.errors import OrlojError


class ToolError(OrlojError):
    code = "execution_failed"
    status = 502

    def __init__(self, message: str, *, code: str = "execution_failed", retryable: bool = False):
        super().__init__(message, code=code)
        self.retryable = retryable

    def __reduce__(self):
        return (_rebuild_tool_error, (self.message, self.code, self.retryable))


def _rebuild_tool_error(message, code, retryable):
    return ToolError(message, code=code, retryable=retryable)


@dataclass
class ToolCallContext:
    namespace: str
    task: str
    agent: str
    idempotency_key: str


class ToolRunner(Protocol):
    async def call(self, tool: dict, tool_input: str, ctx: ToolCallContext) -> str: ...


def _seconds(value: str, default: float) -> float:
    from orloj_ray.resources import parse_duration

    try:
        return parse_duration(value).total_seconds() if value else default
    except ValueError:
        return default


class HttpToolRunner:
    """``type: http`` tools over one shared async client."""

    def __init__(self, client: httpx.AsyncClient | None = None):
        self._client = client

    async def call(self, tool: dict, tool_input: str, ctx: ToolCallContext) -> str:
        spec = tool.get("spec") or {}
        name = tool["metadata"]["name"]
        kind = spec.get("type", "http")
        if kind != "http":
            raise ToolError(f'tool "{name}": type "{kind}" is not supported by this runtime yet',
                            code="unsupported_tool")
        endpoint = spec.get("endpoint") or ""
        if not endpoint:
            raise ToolError(f'tool "{name}" has no spec.endpoint', code="runtime_policy_invalid")
        timeout = _seconds((spec.get("runtime") or {}).get("timeout", ""), 30.0)
        client = self._client or httpx.AsyncClient()
        try:
            resp = await client.post(
                endpoint,
                content=tool_input.encode(),
                headers={"Content-Type": "application/json", "Idempotency-Key": ctx.idempotency_key},
                timeout=timeout,
            )
        except httpx.TimeoutException as exc:
            raise ToolError(f'tool "{name}" timed out after {timeout:g}s', code="timeout", retryable=True) from exc
        except httpx.HTTPError as exc:
            raise ToolError(f'tool "{name}" request failed: {exc}', retryable=True) from exc
        finally:
            if self._client is None:
                await client.aclose()
        if resp.status_code >= 400:
            raise ToolError(f'tool "{name}" answered HTTP {resp.status_code}',
                            retryable=resp.status_code == 429 or resp.status_code >= 500)
        return _result_text(name, resp.text)


def _result_text(name: str, body: str) -> str:
    try:
        doc = json.loads(body)
    except ValueError:
        return body.strip()
    if not isinstance(doc, dict) or not doc.get("status"):
        return body.strip()
    status = str(doc["status"]).lower()
    if status == "ok":
        output = doc.get("output")
        if isinstance(output, dict) and "result" in output:
            return str(output["result"])
        return json.dumps(output) if output is not None else ""
    err = doc.get("error") or {}
    raise ToolError(
        f'tool "{name}" returned {status}: {err.get("message") or err.get("reason") or "no error envelope"}',
        code="permission_denied" if status == "denied" else (err.get("code") or "execution_failed"),
        retryable=bool(err.get("retryable")),
    )

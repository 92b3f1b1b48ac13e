"""The HTTP side of ``Client``: one ``httpx`` session with the bearer token, the server's
error bodies mapped back onto the ``orloj_ray.errors`` tree, and Server-Sent Event streams."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Iterator
from typing import Any, Self

import httpx

from orloj_ray.errors import Conflict, InvalidResource, NotFound, OrlojError, TooLarge, Unavailable

DEFAULT_SERVER = "http://127.0.0.1:8080"

_ERRORS_BY_STATUS: dict[int, type[OrlojError]] = {
    400: InvalidResource, 404: NotFound, 409: Conflict, 413: TooLarge, 503: Unavailable,
}


def default_server() -> str:
    """``$ORLOJCTL_SERVER``, else ``$ORLOJ_SERVER``, else ``http://127.0.0.1:8080`` (upstream order)."""
    for var in ("ORLOJCTL_SERVER", "ORLOJ_SERVER"):
        value = os.environ.get(var, "").strip()
        if value:
            return value
    return DEFAULT_SERVER


def default_token() -> str | None:
    for var in ("ORLOJCTL_API_TOKEN", "ORLOJ_API_TOKEN"):
        value = os.environ.get(var, "").strip()
        if value:
            return value
    return None


def error_from_response(status: int, body: str) -> OrlojError:
    """Rebuild an ``orloj_ray.errors`` exception from an error response.

    orloj-ray answers ``{"error": {"code", "message", "field"?}}``; upstream answers plain
    text. Either way the class follows the HTTP status (OrlojError for unmapped ones).
    """
    cls = _ERRORS_BY_STATUS.get(status, OrlojError)
    message, code, fld = body.strip() or f"HTTP {status}", None, None
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict) and isinstance(parsed.get("error"), dict):
        err = parsed["error"]
        message = str(err.get("message") or message)
        code = err.get("code") or None
        fld = err.get("field") or None
    elif isinstance(parsed, dict) and isinstance(parsed.get("error"), str):
        message = parsed["error"]
    if status == 401:  # the API runs in token mode (serve.auth)
        message += " (give a token: orloj --api-token, $ORLOJ_API_TOKEN, or Client(token=...))"
    exc = cls(message, field=fld, code=code)
    if cls is OrlojError:
        exc.status = status
    return exc


def iter_sse(lines: Iterable[str], until: float | None = None) -> Iterator[tuple[str, str]]:
    """``(event, data)`` per Server-Sent Event; comments (``: keep-alive``) are skipped.
    Stops quietly once ``time.monotonic()`` passes ``until``."""
    event, data = "", []
    for line in lines:
        if until is not None and time.monotonic() >= until:
            return
        if line == "":
            if data:
                yield event or "message", "\n".join(data)
            event, data = "", []
            continue
        if line.startswith(":"):
            continue
        key, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if key == "event":
            event = value
        elif key == "data":
            data.append(value)
    if data:
        yield event or "message", "\n".join(data)


class StreamUnsupported(Exception):
    """The server has no such stream (404/405/501): fall back to polling."""


class Session:
    """The connection every part of ``Client`` calls through (``Client`` documents the
    constructor arguments)."""

    def __init__(self, server: str | None = None, *, token: str | None = None, timeout: float = 30,
                 transport: httpx.BaseTransport | None = None):
        self.server = (server or default_server()).rstrip("/")
        if "://" not in self.server:
            self.server = "http://" + self.server
        self.timeout = timeout
        headers = {"Accept": "application/json", "User-Agent": "orloj-ray-client"}
        tok = token if token is not None else default_token()
        if tok:
            headers["Authorization"] = f"Bearer {tok}"
        self._http = httpx.Client(base_url=self.server, headers=headers, timeout=timeout,
                                  transport=transport)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Client({self.server!r})"

    def _unreachable(self, exc: Exception) -> Unavailable:
        return Unavailable(f"cannot reach orloj-ray at {self.server}: is it running? "
                           f"start it with `orloj up`")

    def request(self, method: str, path: str, *, params: dict | None = None, json_body: Any = None,
                allow_404: bool = False, headers: dict | None = None) -> Any:
        """One call; returns the decoded JSON body (None when empty). Raises mapped errors."""
        params = {k: v for k, v in (params or {}).items() if v not in (None, "")}
        try:
            resp = self._http.request(method, path, params=params or None, json=json_body, headers=headers)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise self._unreachable(exc) from exc
        except httpx.TimeoutException as exc:
            raise Unavailable(f"{method} {self.server}{path} timed out after {self.timeout}s") from exc
        except httpx.TransportError as exc:
            raise Unavailable(f"{method} {self.server}{path} failed: {exc}") from exc
        if resp.status_code == 404 and allow_404:
            return None
        if resp.status_code >= 400:
            raise error_from_response(resp.status_code, resp.text)
        if not resp.content.strip():
            return None
        try:
            return resp.json()
        except ValueError:
            return resp.text

    def _stream(self, path: str, params: dict, read_timeout: float,
                until: float | None = None) -> Iterator[tuple[str, str]]:
        """SSE frames from one connection. Ends when the server closes the stream or at
        ``until`` (monotonic); a silent connection raises ``httpx.ReadTimeout``."""
        params = {k: v for k, v in params.items() if v not in (None, "")}
        if until is not None:
            read_timeout = max(0.05, min(read_timeout, until - time.monotonic()))
        timeout = httpx.Timeout(self.timeout, read=read_timeout)
        try:
            with self._http.stream("GET", path, params=params, timeout=timeout,
                                   headers={"Accept": "text/event-stream"}) as resp:
                if resp.status_code in (404, 405, 501):
                    raise StreamUnsupported(path)
                if resp.status_code >= 400:
                    resp.read()
                    raise error_from_response(resp.status_code, resp.text)
                yield from iter_sse(resp.iter_lines(), until)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise self._unreachable(exc) from exc
        except httpx.RemoteProtocolError:
            return  # server closed the stream mid-event: treat as a normal end

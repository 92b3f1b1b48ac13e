"""Pure ASGI middleware (no ``BaseHTTPMiddleware``, so SSE streams pass through untouched).

``RequestContext`` is the outermost layer: it echoes or generates ``X-Request-ID`` on every
response, turns an unexpected exception into a JSON 500 naming the request id (logged with
the traceback under the same id: every 500 is a bug to report), refuses object names and
namespaces in the URL that no object can have (``checked_path``), and enforces the request
body limit twice: the declared ``Content-Length`` up front, then the bytes actually read, for
chunked or lying clients. The limit is checked before any handler reads the body, so a
rejected request changes nothing.
"""

from __future__ import annotations

import logging
import uuid
from urllib.parse import parse_qsl, unquote

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from orloj_ray.errors import InvalidResource, TooLarge
from orloj_ray.resources.envelope import name_problem, namespace_problem
from orloj_ray.resources.kinds import BY_PLURAL
from serve.errors import error_response

log = logging.getLogger("orloj_ray.serve")

MAX_BODY_BYTES = 4 * 1024 * 1024
"""Upstream's ``maxRequestBodyBytes``: 4 MiB for every request body."""


def _too_large_message(limit: int) -> str:
    return f"request body too large: limit is {limit} bytes"


class RequestContext:
    def __init__(self, app: ASGIApp, max_body_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        request_id = ""
        for key, value in scope.get("headers", []):
            if key == b"x-request-id":
                request_id = value.decode("latin-1").strip()[:200]
                break
        if not request_id:
            request_id = uuid.uuid4().hex
        rid_header = (b"x-request-id", request_id.encode("latin-1"))
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = [h for h in message.get("headers", []) if h[0].lower() != b"x-request-id"]
                headers.append(rid_header)
                message = {**message, "headers": headers}
            await send(message)

        try:
            checked_path(scope)
        except InvalidResource as exc:
            await error_response(400, exc.code, exc.message, exc.field)(scope, receive, send_with_id)
            return

        limit = self.max_body_bytes
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await error_response(413, TooLarge.code, _too_large_message(limit))(scope, receive, send_with_id)
            return

        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise TooLarge(_too_large_message(limit))
            return message

        try:
            await self.app(scope, limited_receive, send_with_id)
        except Exception:
            log.exception("unhandled error on %s %s (request id %s)", scope.get("method"), scope.get("path"),
                          request_id)
            if started:
                raise
            await error_response(500, "internal", f"internal server error (request id {request_id})")(
                scope, receive, send_with_id)


def checked_path(scope: Scope) -> None:
    """Refuse ``/v1/<collection>/<name>...`` whose name no object can have (``a%2Fb``,
    ``<script>``, 300 characters) and a ``namespace`` query no namespace can have, with a 400
    naming the field, instead of a 404. DELETE is let through, so an object stored before
    names were checked can still be removed."""
    path = scope.get("path", "")
    if not path.startswith("/v1/"):
        return
    for key, value in parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True):
        if key == "namespace" and value.strip() and (problem := namespace_problem(value.strip(), "namespace")):
            raise InvalidResource(problem, field="namespace")
    raw = scope.get("raw_path")
    segments = (raw.decode("latin-1") if raw else path).split("?", 1)[0].split("/")
    if len(segments) < 4 or segments[2] not in BY_PLURAL or scope.get("method") == "DELETE":
        return
    name = unquote(segments[3], errors="replace")
    if name and name != "watch" and (problem := name_problem(name, "name")):
        raise InvalidResource(problem, field="name")


def _content_length(scope: Scope) -> int | None:
    for key, value in scope.get("headers", []):
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None

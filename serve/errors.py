"""Every error leaves the API as JSON: ``{"error": {"code", "message", "field"?}}``.

Upstream answers errors with ``text/plain`` (Go ``http.Error``); orloj-ray answers with this
envelope on purpose (recorded in docs/compatibility.md). The HTTP status, the ``code`` and the
``field`` come from the ``orloj_ray.errors`` tree; framework errors (unknown route, wrong
method, request validation) and anything unexpected are mapped here to the same shape.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from orloj_ray.errors import OrlojError

log = logging.getLogger("orloj_ray.serve")

_HTTP_CODES = {
    400: "invalid",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
    503: "unavailable",
}


class JSONResponse(Response):
    """JSON followed by a newline, as upstream's ``json.Encoder`` writes it."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return (json.dumps(content, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")


def error_body(code: str, message: str, field: str | None = None) -> dict:
    err: dict[str, Any] = {"code": code, "message": message}
    if field:
        err["field"] = field
    return {"error": err}


def error_response(status: int, code: str, message: str, field: str | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(code, message, field), status_code=status, headers=headers)


def _loc_to_field(loc: tuple | list) -> str | None:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or None


async def _orloj_error(_: Request, exc: OrlojError) -> JSONResponse:
    return JSONResponse(exc.to_dict(), status_code=exc.status)


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    status = exc.status_code
    code = _HTTP_CODES.get(status, "error")
    detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    message = {404: "not found", 405: "method not allowed"}.get(status, detail.lower() if detail else code)
    headers = dict(getattr(exc, "headers", None) or {})
    if status == 405:
        headers["Allow"] = ", ".join(_allowed_methods(request))
    return error_response(status, code, message, headers=headers or None)


def _allowed_methods(request: Request) -> list[str]:
    """Every method some route serves on this path (Starlette only names the first route's)."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        match, _ = route.matches({**request.scope, "method": "-"})
        if match != Match.NONE:
            methods |= set(getattr(route, "methods", None) or ())
    return sorted(methods)


def _validation_response(errors: list[dict]) -> JSONResponse:
    first = errors[0] if errors else {}
    field = _loc_to_field(first.get("loc", ()))
    msg = first.get("msg", "invalid request")
    message = f"{field}: {msg}" if field else msg
    return error_response(400, "invalid", message, field)


async def _request_validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
    return _validation_response(list(exc.errors()))


async def _pydantic_error(_: Request, exc: ValidationError) -> JSONResponse:
    # A model validation error that escaped the resources layer is still a bad request.
    return _validation_response(list(exc.errors()))


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(OrlojError, _orloj_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _request_validation_error)
    app.add_exception_handler(ValidationError, _pydantic_error)

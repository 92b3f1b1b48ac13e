"""Upstream's native-auth routes, answered plainly: orloj-ray authenticates with bearer tokens only.

``POST /v1/auth/setup``, ``/login``, ``/change-password`` and ``/admin/reset-password`` answer
``400 native_auth_unsupported`` saying to use token auth; ``POST /v1/auth/logout`` answers
upstream's ``200 {"status": "ok"}`` (there is no session to end). docs/compatibility.md section 10.
"""

from __future__ import annotations

from fastapi import FastAPI

from orloj_ray.errors import InvalidResource
from serve.errors import JSONResponse

NATIVE_ONLY = ("/v1/auth/setup", "/v1/auth/login", "/v1/auth/change-password", "/v1/auth/admin/reset-password")
MESSAGE = ("native auth (admin password and session cookie) is not supported by orloj-ray: use token auth "
           "(server: ORLOJ_API_TOKENS; clients: Authorization: Bearer <token>, orloj --token or ORLOJ_API_TOKEN)")


def register(app: FastAPI) -> None:
    async def unsupported() -> JSONResponse:
        raise InvalidResource(MESSAGE, code="native_auth_unsupported")

    async def logout() -> JSONResponse:
        return JSONResponse({"status": "ok"})

    for path in NATIVE_ONLY:
        app.add_api_route(path, unsupported, methods=["POST"], name="auth_" + path.rsplit("/", 1)[-1], tags=["auth"])
    app.add_api_route("/v1/auth/logout", logout, methods=["POST"], name="auth_logout", tags=["auth"])

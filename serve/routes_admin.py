"""Operator actions: ``POST /v1/admin/rotate-secret-key`` (``orloj admin rotate-secret-key``).

Admin role only (``serve.auth.ROUTE_ROLES``). The store does the work
(``orloj_ray.store.encryption.EncryptedSecrets.rotate_secret_key``): the API only asks it.
"""

from __future__ import annotations

from fastapi import FastAPI

from orloj_ray.errors import InvalidResource
from serve.errors import JSONResponse


def register(app: FastAPI, store) -> None:
    async def rotate_secret_key() -> JSONResponse:
        rotate = getattr(store, "rotate_secret_key", None)
        if rotate is None:
            raise InvalidResource("this server's store does not encrypt secrets (it was built without "
                                  "orloj_ray.store.open_store)")
        return JSONResponse(await rotate())

    app.add_api_route("/v1/admin/rotate-secret-key", rotate_secret_key, methods=["POST"], name="rotate_secret_key")

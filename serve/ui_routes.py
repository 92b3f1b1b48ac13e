"""The web console at ``/ui/``: static ES modules from ``serve/ui/`` (package data), no build step.

``/`` and ``/ui`` redirect to ``/ui/`` (307, as upstream's non-root UI path does). The files are
open in token mode (``serve/auth.py``: outside ``/v1``); the console asks for a token and
sends it on every API call. ``Cache-Control: no-cache`` makes an upgraded server's console
load at once (the browser revalidates with the ETag, so an unchanged file costs a 304).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

UI_DIR = Path(__file__).resolve().parent / "ui"


class _ConsoleFiles(StaticFiles):
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_no_cache(message):
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"cache-control", b"no-cache")]
            await send(message)

        await super().__call__(scope, receive, send_no_cache)


def register(app: FastAPI) -> None:
    async def to_console() -> RedirectResponse:
        return RedirectResponse("/ui/", status_code=307)

    app.add_api_route("/", to_console, methods=["GET"], name="root", include_in_schema=False)
    app.add_api_route("/ui", to_console, methods=["GET"], name="ui_redirect", include_in_schema=False)
    app.mount("/ui", _ConsoleFiles(directory=UI_DIR, html=True), name="ui")

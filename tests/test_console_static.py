"""The console's files as the API serves them (no browser): redirects, types, caching, the
module graph complete, nothing fetched from elsewhere, and the capability that says it exists."""

from __future__ import annotations

import re

import httpx

from orloj_ray.store import MemoryStore
from serve.app import create_app
from serve.ui_routes import UI_DIR

IMPORT = re.compile(r"""(?:from|import)\s+["'](\./[^"']+)["']""")


def _client() -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(MemoryStore())), base_url="http://api")


async def test_the_console_is_served_at_ui_and_root_and_ui_redirect_there():
    async with _client() as client:
        for path in ("/", "/ui"):
            resp = await client.get(path)
            assert resp.status_code == 307 and resp.headers["location"] == "/ui/"
        page = await client.get("/ui/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert '<script type="module" src="app.js">' in page.text
        assert page.headers["cache-control"] == "no-cache"
        script = await client.get("/ui/app.js")
        assert script.status_code == 200 and "javascript" in script.headers["content-type"]
        assert (await client.get("/ui/nope.js")).status_code == 404
        caps = (await client.get("/v1/capabilities")).json()["capabilities"]
        assert any(c["id"] == "core.ui.baseline" and c["enabled"] for c in caps)


def test_every_module_import_resolves_and_nothing_loads_from_elsewhere():
    files = {p.name: p.read_text() for p in UI_DIR.iterdir() if p.is_file()}
    assert {"index.html", "app.js", "api.js", "style.css"} <= set(files)
    for name, text in files.items():
        for target in IMPORT.findall(text):
            assert target[2:] in files, f"{name} imports {target}, which is not in serve/ui/"
        # no CDN, font or editor from the internet: every URL is relative or built from the API's answers
        assert not re.search(r"(?:src|href)\s*=\s*[\"']?(?:https?:)?//", text), name
        assert "@import" not in text and "fonts.googleapis" not in text, name

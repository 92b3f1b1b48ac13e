"""Helpers for the web console tests: Debian's chromium driven by Playwright, console errors
collected per page, and an app served by uvicorn on loopback (for token mode)."""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from contextlib import contextmanager

import httpx

from tests_support import free_port

CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def chromium_path() -> str:
    """Debian's chromium, installed with apt when it is missing (browser downloads are blocked)."""
    found = shutil.which("chromium") or (CHROMIUM if shutil.os.path.exists(CHROMIUM) else None)
    if found:
        return found
    steps = (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "chromium"])
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True, timeout=900,
                              env={**shutil.os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        if done.returncode != 0:
            raise RuntimeError(f"cannot install chromium for the console tests ({' '.join(step)}): "
                               f"{done.stderr.strip()[-500:]}; install it with `apt-get install -y chromium`")
    return shutil.which("chromium") or CHROMIUM


class ConsoleErrors:
    """Console errors and uncaught exceptions of a page, for ``assert not errors.list``."""

    def __init__(self, page):
        self.list: list[str] = []
        page.on("console", lambda msg: self.list.append(f"console.{msg.type}: {msg.text}")
                if msg.type == "error" else None)
        page.on("pageerror", lambda exc: self.list.append(f"pageerror: {exc}"))


@contextmanager
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium_path(), args=LAUNCH_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


def loaded(page, timeout_ms: int = 15000) -> None:
    """Wait until the console has rendered the page of the current hash (``main[data-ready]``)."""
    page.wait_for_function("() => { const m = document.getElementById('main');"
                           " return m && m.dataset.ready === (location.hash || '#/'); }", timeout=timeout_ms)


@contextmanager
def uvicorn_app(app):
    """Serve ``app`` on a free loopback port in a thread; yields its URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"uvicorn did not answer on {url}")
        time.sleep(0.05)
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=10)

"""A real HTTP server for API tests: uvicorn on 127.0.0.1, a free port, a background thread.

The app (and its MemoryStore) live on the server thread's event loop from ``start()`` on;
fill the store before starting (``asyncio.run``), then talk to it over HTTP only.
"""

from __future__ import annotations

import threading
import time

import uvicorn
from tests_support import free_port


class LiveServer:
    def __init__(self, app, *, start_timeout_s: float = 10.0):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off",
                                access_log=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name=f"uvicorn:{self.port}", daemon=True)
        self.start_timeout_s = start_timeout_s

    def __enter__(self) -> "LiveServer":
        self.thread.start()
        deadline = time.monotonic() + self.start_timeout_s
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"uvicorn did not start on {self.url}")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)

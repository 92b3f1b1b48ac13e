"""Helpers for the governance tests: a loopback tool server that counts calls, manifest loading
from the upstream examples and examples/governance, and running tasks in-process."""

from __future__ import annotations

import asyncio
import json
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import yaml

from orloj_ray.config import ServerConfig
from orloj_ray.engine.controller import Controller
from orloj_ray.engine.runtime import LocalAgentRuntime
from orloj_ray.resources import expand_agent, normalize
from orloj_ray.tools import default_tool_runner

ROOT = Path(__file__).resolve().parent
UPSTREAM = ROOT / "conformance" / "upstream-examples" / "resources"
EXAMPLES = ROOT.parent / "examples" / "governance"
TERMINAL = ("Succeeded", "Failed", "DeadLetter")
LOOPBACK = ServerConfig(tool_allowed_networks=("127.0.0.0/8",))


class ToolServer:
    """Answers every POST with a contract envelope and records (path, body, idempotency key)."""

    def __init__(self):
        self.calls: list[dict] = []
        calls = self.calls

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
                calls.append({"path": self.path, "body": body, "key": self.headers.get("Idempotency-Key", "")})
                reply = json.dumps({"status": "ok", "output": {"result": f"{self.path.strip('/')} done"}}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def paths(self) -> list[str]:
        return [c["path"] for c in self.calls]

    @contextmanager
    def running(self):
        thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._server.shutdown()
            self._server.server_close()
            thread.join(timeout=5)


def read(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


async def apply(store, docs: list[dict], *, tool_url: str = "", namespace: str = "default") -> None:
    """Normalize and store ``docs`` as ``orloj apply`` would (tool endpoints moved to ``tool_url``,
    an Agent's dialect role and policy stored beside it)."""
    for doc in docs:
        doc = json.loads(json.dumps(doc))
        doc.setdefault("metadata", {}).setdefault("namespace", namespace)
        if doc["kind"] == "Tool" and tool_url:
            doc["spec"]["endpoint"] = f"{tool_url}/{doc['metadata']['name']}"
            doc["spec"].pop("auth", None)
        extra = expand_agent(doc) if doc["kind"] == "Agent" else []
        for item in [normalize(doc), *extra]:
            await store.upsert(item)


def mock_endpoint(name: str = "openai-default", model: str = "gpt-4o") -> dict:
    return {"apiVersion": "orloj.dev/v1", "kind": "ModelEndpoint", "metadata": {"name": name},
            "spec": {"provider": "mock", "default_model": model}}


def task(name: str, system: str, topic: str = "AI startups", **spec) -> dict:
    return {"apiVersion": "orloj.dev/v1", "kind": "Task", "metadata": {"name": name},
            "spec": {"system": system, "input": {"topic": topic}, **spec}}


def runtime(**kwargs) -> LocalAgentRuntime:
    return LocalAgentRuntime(tools=default_tool_runner(LOOPBACK), **kwargs)


@contextmanager
def _noop():
    yield


class Running:
    """A Controller running in the background of the test's event loop."""

    def __init__(self, store, *, runtime_=None, parallel: int | None = None, worker: str = "test-worker", **kwargs):
        self.controller = Controller(store, runtime_ or runtime(), worker=worker, max_parallel_turns=parallel,
                                     lease_scan_s=0.2, **kwargs)
        self.store = store

    async def __aenter__(self) -> "Running":
        self._loop = asyncio.create_task(self.controller.run())
        return self

    async def __aexit__(self, *exc) -> None:
        self.controller.stop()
        await asyncio.wait_for(self._loop, 15)


async def wait_phase(store, name: str, phases=TERMINAL, *, namespace: str = "default", timeout: float = 20.0) -> dict:
    async with asyncio.timeout(timeout):
        while True:
            obj = await store.get("Task", namespace, name)
            if (obj.get("status") or {}).get("phase") in phases:
                return obj
            await asyncio.sleep(0.02)


async def run_task(store, doc: dict, *, parallel: int | None = None, timeout: float = 20.0, **kwargs) -> dict:
    await store.create(normalize(doc))
    async with Running(store, parallel=parallel, **kwargs):
        return await wait_phase(store, doc["metadata"]["name"], timeout=timeout)

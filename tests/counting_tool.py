"""A counting tool for fault tests: a real HTTP service on loopback that counts calls per
Idempotency-Key, and a small agent system whose every agent calls it once per turn.

    with CountingTool() as tool:
        await create_counting_system(store, tool.url, tasks=3)
        ...
        assert tool.repeated() == {}      # no step's call seen twice
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SYSTEM = "count-system"
AGENTS = ("count-a", "count-b", "count-c")


class CountingTool:
    def __init__(self, delay_s: float = 0.0):
        self.calls: Counter[str] = Counter()
        self.delay_s = delay_s
        self._lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                key = self.headers.get("Idempotency-Key", "")
                with owner._lock:
                    owner.calls[key] += 1
                    n = owner.calls[key]
                if owner.delay_s:
                    threading.Event().wait(owner.delay_s)
                body = json.dumps({"status": "ok", "output": f"counted {key} #{n}"}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        class Server(ThreadingHTTPServer):
            request_queue_size = 256  # many agents call at once: the default backlog of 5 refuses some
            daemon_threads = True

        self._server = Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/count"

    def repeated(self) -> dict[str, int]:
        with self._lock:
            return {k: n for k, n in self.calls.items() if n > 1}

    def __enter__(self) -> CountingTool:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()


def counting_manifests(tool_url: str, *, namespace: str = "default", tasks: int = 1,
                       latency_ms: int = 0) -> list[dict]:
    """ModelEndpoint (mock), the ``counter`` Tool, a 3-agent pipeline calling it, and ``tasks`` Tasks."""
    meta = lambda name: {"name": name, "namespace": namespace}  # noqa: E731
    docs: list[dict] = [
        {"apiVersion": "orloj.dev/v1", "kind": "ModelEndpoint", "metadata": meta("count-model"),
         "spec": {"provider": "mock", "default_model": "mock-1", "options": {"latency_ms": latency_ms}}},
        {"apiVersion": "orloj.dev/v1", "kind": "Tool", "metadata": meta("counter"),
         "spec": {"type": "http", "endpoint": tool_url, "description": "counts its calls"}},
    ]
    for agent in AGENTS:
        docs.append({"apiVersion": "orloj.dev/v1", "kind": "Agent", "metadata": meta(agent),
                     "spec": {"model_ref": "count-model", "prompt": f"You are {agent}.", "tools": ["counter"],
                              "limits": {"max_steps": 4}}})
    docs.append({"apiVersion": "orloj.dev/v1", "kind": "AgentSystem", "metadata": meta(SYSTEM),
                 "spec": {"agents": list(AGENTS),
                          "graph": {a: {"next": b} for a, b in zip(AGENTS, AGENTS[1:])}}})
    for i in range(tasks):
        docs.append({"apiVersion": "orloj.dev/v1", "kind": "Task", "metadata": meta(f"count-task-{i}"),
                     "spec": {"system": SYSTEM, "input": {"topic": f"count {i}"}}})
    return docs


async def create_counting_system(store, tool_url: str, **kwargs) -> list[str]:
    """Create the manifests in an in-process store; returns the task names."""
    from orloj_ray.resources import normalize

    names = []
    for doc in counting_manifests(tool_url, **kwargs):
        obj = normalize(doc)
        obj.setdefault("status", {})
        if obj["kind"] == "Task":
            obj["status"] = {"phase": "Pending"}
            names.append(obj["metadata"]["name"])
        await store.create(obj)
    return names

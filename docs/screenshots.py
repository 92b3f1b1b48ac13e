"""Take the console screenshots in docs/screenshots/ (rerunnable; about a minute, offline).

    python docs/screenshots.py [--out docs/screenshots]

Starts a throwaway Ray (its own temp dir) with the control plane on a free loopback port, runs
the pipeline blueprint and the governance walk-through (examples/governance, its tools served
in this process) on the mock model, photographs the main pages with Debian's chromium, then
removes everything it started.
"""

from __future__ import annotations

import argparse
import glob
import importlib.util
import socket
import sys
import tempfile
import threading
import time
from http.server import ThreadingHTTPServer
from pathlib import Path

import httpx
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
NS = "demo"
PAGES = (
    ("dashboard", "#/", None),
    ("task-graph", f"#/tasks/pipeline-3?ns={NS}&tab=graph", None),
    ("task-trace", f"#/tasks/scan-q3?ns={NS}&tab=trace", None),
    ("task-messages", f"#/tasks/pipeline-3?ns={NS}&tab=messages", None),
    ("approvals", "#/approvals", None),
    ("audit", "#/audit", None),
    ("agents", "#/agents-runtime", None),
    ("tasks", "#/k/tasks", None),
    ("agent-yaml", f"#/k/agents/compliance-checker?ns={NS}", "YAML"),
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tools() -> tuple[ThreadingHTTPServer, str]:
    spec = importlib.util.spec_from_file_location("compliance_service", ROOT / "examples/governance/compliance_service.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    server = ThreadingHTTPServer(("127.0.0.1", 0), module.Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def _post(http: httpx.Client, doc: dict) -> None:
    from orloj_ray.resources import kind_info

    doc["metadata"]["namespace"] = NS
    resp = http.post(f"/v1/{kind_info(doc['kind']).plural}", json=doc)
    resp.raise_for_status()


def _wait(http: httpx.Client, name: str, phases: tuple[str, ...], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (http.get(f"/v1/tasks/{name}", params={"namespace": NS}).json().get("status") or {}).get("phase") in phases:
            return
        time.sleep(0.3)
    raise TimeoutError(f"task {name} did not reach {phases}")


def seed(http: httpx.Client, tool_url: str) -> None:
    blueprint = ROOT / "examples" / "blueprints" / "pipeline"
    for path in sorted(glob.glob(str(blueprint / "**" / "*.yaml"), recursive=True)):
        for doc in yaml.safe_load_all(Path(path).read_text()):
            if doc and doc["kind"] != "Task":
                if doc["kind"] == "ModelEndpoint":  # a visible duration per turn in the trace
                    doc["spec"]["options"] = {"latency_ms": "350"}
                _post(http, doc)
    governance = ROOT / "examples" / "governance"
    for name in ("resources.yaml", "compliance-checker-with-purge.yaml"):
        for doc in yaml.safe_load_all((governance / name).read_text()):
            if not doc:
                continue
            if doc["kind"] == "Tool":
                doc["spec"]["endpoint"] = f"{tool_url}/{doc['metadata']['name']}"
            if doc["kind"] == "ModelEndpoint":
                doc["spec"]["options"] = {"latency_ms": "350"}
            _post(http, doc)
    system = next(d["metadata"]["name"] for p in blueprint.rglob("*.yaml") for d in yaml.safe_load_all(p.read_text())
                  if d and d["kind"] == "AgentSystem")
    for i in range(1, 4):
        _post(http, {"apiVersion": "orloj.dev/v1", "kind": "Task", "metadata": {"name": f"pipeline-{i}"},
                     "spec": {"system": system, "input": {"topic": "edge AI chips"}}})
    for doc in yaml.safe_load_all((governance / "tasks.yaml").read_text()):
        _post(http, doc)
    _post(http, yaml.safe_load((governance / "purge-task.yaml").read_text()))
    for name in ("pipeline-1", "pipeline-2", "pipeline-3", "scan-q3", "purge-2017"):
        _wait(http, name, ("Succeeded", "Failed", "DeadLetter"))
    _wait(http, "flag-q3", ("WaitingApproval",))


def photograph(url: str, out: Path) -> list[Path]:
    from playwright.sync_api import sync_playwright

    sys.path.insert(0, str(ROOT / "tests"))
    from console_support import LAUNCH_ARGS, chromium_path, loaded

    out.mkdir(parents=True, exist_ok=True)
    written = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=LAUNCH_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(f"{url}/ui/")
        for name, route, tab in PAGES:
            page.goto(f"{url}/ui/{route}")
            loaded(page)
            if tab:
                page.click(f"button:has-text('{tab}')")
            page.wait_for_timeout(300)
            path = out / f"{name}.png"
            page.screenshot(path=str(path), full_page=False)
            written.append(path)
        browser.close()
    return written


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "docs" / "screenshots"))
    args = parser.parse_args()
    from cluster.ray_env import apply_local_env

    apply_local_env()
    import ray

    from cluster.local import deploy, undeploy
    from orloj_ray.config import ServerConfig

    tools, tool_url = _tools()
    temp = tempfile.mkdtemp(prefix="orloj-shots-")
    ray.init(address="local", num_cpus=2, include_dashboard=False, namespace="orloj", logging_level="warning",
             log_to_driver=False, _temp_dir=temp, _node_ip_address="127.0.0.1")
    try:
        url = deploy(host="127.0.0.1", port=_free_port(),
                     config=ServerConfig.from_env(mode="message-driven", tool_allowed_networks="127.0.0.0/8"))
        with httpx.Client(base_url=url, timeout=30) as http:
            seed(http, tool_url)
        for path in photograph(url, Path(args.out)):
            print(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)
        undeploy()
    finally:
        ray.shutdown()
        tools.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())

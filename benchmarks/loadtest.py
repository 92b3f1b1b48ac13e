"""Load test modelled on upstream's orloj-loadtest: N pipeline tasks over REST, completion seen
on the task watch stream (not by polling), quality gates and latency percentiles.

    python benchmarks/loadtest.py --tasks 200 --concurrency 32 [--server URL] [--report out.json]

Against a running `orloj up` (or `--embedded`, which starts Ray, the store, the supervisor and
the API in this process on a free port and tears them down after). Latency is measured from
the POST's return to the terminal watch event. Exits 1 when a quality gate fails.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
TERMINAL = {"Succeeded", "Failed", "DeadLetter"}
NS = "loadtest"


def _setup_docs(latency_ms: int) -> list[tuple[str, dict]]:
    endpoint = {"provider": "mock", "default_model": "gpt-4o"}
    if latency_ms:
        endpoint["options"] = {"latency_ms": str(latency_ms)}
    agents = ["lt-planner", "lt-research", "lt-writer"]
    docs = [("model-endpoints", {"kind": "ModelEndpoint", "metadata": {"name": "lt-model"}, "spec": endpoint})]
    docs += [("agents", {"kind": "Agent", "metadata": {"name": a}, "spec": {"model_ref": "lt-model", "prompt": a}})
             for a in agents]
    docs.append(("agent-systems", {"kind": "AgentSystem", "metadata": {"name": "lt-pipeline"},
                                   "spec": {"agents": agents, "graph": {agents[0]: {"next": agents[1]},
                                                                        agents[1]: {"next": agents[2]}}}}))
    docs.append(("agent-systems", {"kind": "AgentSystem", "metadata": {"name": "lt-invalid"},
                                   "spec": {"agents": ["lt-missing-agent"]}}))
    for _, doc in docs:
        doc["apiVersion"] = "orloj.dev/v1"
        doc["metadata"]["namespace"] = NS
    return docs


async def _watch(http: httpx.AsyncClient, done: dict[str, tuple[str, float]], ready: asyncio.Event) -> None:
    async with http.stream("GET", "/v1/tasks/watch", params={"namespace": NS}, timeout=None) as resp:
        ready.set()
        async for line in resp.aiter_lines():
            if not line.startswith("data:"):
                continue
            frame = json.loads(line[5:])
            task = frame.get("resource") or {}
            phase = (task.get("status") or {}).get("phase")
            name = (task.get("metadata") or {}).get("name")
            if phase in TERMINAL and name not in done:
                done[name] = (phase, time.monotonic())


async def run(server: str, tasks: int, concurrency: int, invalid_every: int, timeout_s: float, cleanup: bool,
              latency_ms: int) -> dict:
    limits = httpx.Limits(max_connections=concurrency + 4)
    async with httpx.AsyncClient(base_url=server, timeout=30, limits=limits) as http:
        for plural, doc in _setup_docs(latency_ms):
            (await http.post(f"/v1/{plural}", json=doc)).raise_for_status()
        done: dict[str, tuple[str, float]] = {}
        ready = asyncio.Event()
        watcher = asyncio.create_task(_watch(http, done, ready))
        await asyncio.wait_for(ready.wait(), 10)
        created: dict[str, float] = {}
        slots = asyncio.Semaphore(concurrency)
        run_id = f"{int(time.time())}"

        async def submit(i: int) -> None:
            name = f"lt-{run_id}-{i:05d}"
            system = "lt-invalid" if invalid_every and i % invalid_every == invalid_every - 1 else "lt-pipeline"
            body = {"apiVersion": "orloj.dev/v1", "kind": "Task", "metadata": {"name": name, "namespace": NS},
                    "spec": {"system": system, "input": {"topic": f"load {i}"}}}
            async with slots:
                (await http.post("/v1/tasks", json=body)).raise_for_status()
                created[name] = time.monotonic()
                deadline = time.monotonic() + timeout_s
                while name not in done and time.monotonic() < deadline:
                    await asyncio.sleep(0.01)
                if cleanup and name in done:
                    await http.delete(f"/v1/tasks/{name}", params={"namespace": NS})

        started = time.monotonic()
        await asyncio.gather(*(submit(i) for i in range(tasks)))
        elapsed = time.monotonic() - started
        watcher.cancel()
    return _report(created, done, elapsed, invalid_every, tasks)


def _report(created, done, elapsed, invalid_every, tasks) -> dict:
    latencies = sorted((done[n][1] - t) * 1000 for n, t in created.items() if n in done)
    phases = [done[n][0] for n in created if n in done]
    invalid = tasks // invalid_every if invalid_every else 0

    def pct(p: float) -> float:
        return round(latencies[max(0, int(round(p * len(latencies))) - 1)], 1) if latencies else 0.0

    return {
        "tasks": tasks, "invalid_injected": invalid, "elapsed_s": round(elapsed, 2),
        "throughput_tasks_per_s": round(tasks / elapsed, 1) if elapsed else 0.0,
        "succeeded": phases.count("Succeeded"), "failed": phases.count("Failed"),
        "deadletter": phases.count("DeadLetter"), "timed_out": len(created) - len(phases),
        "latency_ms": {"p50": pct(0.50), "p95": pct(0.95), "max": round(latencies[-1], 1) if latencies else 0.0,
                       "mean": round(statistics.fmean(latencies), 1) if latencies else 0.0},
    }


def gates(report: dict, args) -> list[str]:
    valid = report["tasks"] - report["invalid_injected"]
    problems = []
    if valid and report["succeeded"] / valid < args.min_success_rate:
        problems.append(f"success rate {report['succeeded'] / valid:.3f} < {args.min_success_rate}")
    if report["deadletter"] / report["tasks"] > args.max_deadletter_rate:
        problems.append(f"deadletter rate above {args.max_deadletter_rate}")
    if (report["failed"] - report["invalid_injected"]) / report["tasks"] > args.max_failed_rate:
        problems.append(f"failed rate above {args.max_failed_rate}")
    if report["timed_out"] > args.max_timed_out:
        problems.append(f"{report['timed_out']} timed out > {args.max_timed_out}")
    return problems


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--server", default=os.environ.get("ORLOJ_SERVER", "http://127.0.0.1:8080"))
    p.add_argument("--embedded", action="store_true", help="start Ray and orloj-ray in this process")
    p.add_argument("--tasks", type=int, default=200)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--invalid-every", type=int, default=0, help="every Nth task names an invalid system")
    p.add_argument("--model-latency-ms", type=int, default=0, help="slow agents: mock model latency")
    p.add_argument("--timeout", type=float, default=120.0, help="per task, seconds")
    p.add_argument("--keep", action="store_true", help="keep finished tasks (default: delete as the run goes)")
    p.add_argument("--min-success-rate", type=float, default=1.0)
    p.add_argument("--max-deadletter-rate", type=float, default=0.0)
    p.add_argument("--max-failed-rate", type=float, default=0.0)
    p.add_argument("--max-timed-out", type=int, default=0)
    p.add_argument("--report", default="")
    args = p.parse_args()
    server = args.server
    if args.embedded:
        server = _start_embedded()
    report = asyncio.run(run(server, args.tasks, args.concurrency, args.invalid_every, args.timeout,
                             not args.keep, args.model_latency_ms))
    report["gates_failed"] = gates(report, args)
    text = json.dumps(report, indent=2)
    print(text)
    if args.report:
        Path(args.report).write_text(text + "\n")
    return 1 if report["gates_failed"] else 0


def _start_embedded() -> str:
    import socket

    from cluster.ray_env import apply_local_env

    apply_local_env()
    import ray

    from cluster.local import deploy

    ray.init(namespace="orloj", include_dashboard=False, logging_level="warning", log_to_driver=False,
             _node_ip_address="127.0.0.1")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return deploy(host="127.0.0.1", port=port, cluster={"mode": "message-driven"})


if __name__ == "__main__":
    sys.exit(main())

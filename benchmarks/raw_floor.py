"""The raw floor: what a three-agent pipeline costs on Ray with nothing of orloj-ray in the way.

Per task, three hops written by hand as plain Ray actor calls; each hop is one JetStream
publish (when a NATS URL is given; file storage, ``Nats-Msg-Id`` set, as the real log does),
one call to a trivial agent actor and one store write (a call to a plain Ray actor holding a
dict). Tasks run with the same bounded concurrency as the load test. Separately, a no-op Serve
round trip: sequential GETs to a trivial Serve deployment over HTTP.

orloj-ray's load test runs this in the same Ray session and reports its own figures as ratios
to these. Standalone (starts its own Ray and Serve):

    python benchmarks/raw_floor.py --tasks 1000 --concurrency 32 [--nats-url nats://127.0.0.1:4222]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
import uuid
from pathlib import Path

import httpx
import ray

REPO = Path(__file__).resolve().parents[1]
AGENTS = ("floor-planner", "floor-research", "floor-writer")
FLOOR_APP = "orloj-raw-floor"
FLOOR_ROUTE = "/raw-floor-noop"
STREAM = "ORLOJ_RAW_FLOOR"


@ray.remote(num_cpus=0, max_concurrency=1000)
class FloorAgent:
    """Stands in for an AgentActor with the mock model: returns a short text at once."""

    def __init__(self, name: str):
        self.name = name

    async def run_turn(self, task: str, hop: int, content: str) -> str:
        return f"{self.name} (step 1, model gpt-4o): {task} hop {hop}: {content[:120]}"


@ray.remote(num_cpus=0, max_concurrency=1000)
class FloorStore:
    """Stands in for the store actor: a dict."""

    def __init__(self):
        self.data: dict[str, dict] = {}

    async def put(self, key: str, value: dict) -> int:
        self.data[key] = value
        return len(self.data)


def percentiles(values_ms: list[float]) -> dict:
    """Nearest-rank p50/p95 and max, as upstream's loadtest (index ceil(p*n)-1)."""
    values = sorted(values_ms)
    if not values:
        return {"p50": 0.0, "p95": 0.0, "max": 0.0, "mean": 0.0}

    def rank(p: float) -> float:
        import math

        return round(values[max(0, math.ceil(p * len(values)) - 1)], 2)

    return {"p50": rank(0.50), "p95": rank(0.95), "max": round(values[-1], 2),
            "mean": round(statistics.fmean(values), 2)}


async def _jetstream(nats_url: str):
    import nats
    from nats.js import api

    nc = await nats.connect(nats_url, connect_timeout=5)
    js = nc.jetstream()
    try:
        await js.delete_stream(STREAM)
    except Exception:
        pass
    await js.add_stream(api.StreamConfig(name=STREAM, subjects=["orloj-raw-floor.>"],
                                         storage=api.StorageType.FILE))
    return nc, js


async def pipeline_floor(tasks: int, concurrency: int, nats_url: str = "") -> dict:
    """``tasks`` three-hop pipelines with ``concurrency`` in flight; latency per task, throughput."""
    if __name__ != "__main__":  # imported (benchmarks/ need not be importable in Ray's workers)
        ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    agents = [FloorAgent.remote(name) for name in AGENTS]
    store = FloorStore.remote()
    await asyncio.gather(*(a.run_turn.remote("warm", 0, "") for a in agents), store.put.remote("warm", {}))
    nc = js = None
    if nats_url:
        nc, js = await _jetstream(nats_url)
    run = uuid.uuid4().hex[:8]
    slots = asyncio.Semaphore(concurrency)
    latencies: list[float] = []

    async def one(i: int) -> None:
        task = f"floor-{run}-{i:05d}"
        async with slots:
            started = time.perf_counter()
            content = f"load {i}"
            for hop, agent in enumerate(agents, start=1):
                if js is not None:
                    await js.publish(f"orloj-raw-floor.{AGENTS[hop - 1]}", content.encode(), stream=STREAM,
                                     headers={"Nats-Msg-Id": f"{task}/h{hop}"})
                content = await agent.run_turn.remote(task, hop, content)
                await store.put.remote(f"{task}/{hop}", {"hop": hop, "output": content})
            latencies.append((time.perf_counter() - started) * 1000)

    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(tasks)))
    elapsed = time.perf_counter() - started
    if nc is not None:
        try:
            await js.delete_stream(STREAM)
        finally:
            await nc.close()
    for handle in [*agents, store]:
        ray.kill(handle)
    return {"tasks": tasks, "concurrency": concurrency, "jetstream": bool(nats_url),
            "elapsed_s": round(elapsed, 3), "throughput_tasks_per_s": round(tasks / elapsed, 1),
            "latency_ms": percentiles(latencies)}


def serve_noop_floor(base_url: str, requests: int = 300) -> dict:
    """Sequential GETs to a no-op Serve deployment on the running Serve HTTP proxy at ``base_url``."""
    from ray import serve

    @serve.deployment(name="noop", max_ongoing_requests=100)
    class Noop:
        async def __call__(self, request) -> str:
            return "ok"

    serve.run(Noop.bind(), name=FLOOR_APP, route_prefix=FLOOR_ROUTE, blocking=False)
    url = base_url.rstrip("/") + FLOOR_ROUTE
    latencies: list[float] = []
    try:
        with httpx.Client(timeout=10) as http:
            for _ in range(200):  # until the route answers (bounded)
                try:
                    if http.get(url).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.1)
            for _ in range(20):
                http.get(url)
            for _ in range(requests):
                started = time.perf_counter()
                http.get(url).raise_for_status()
                latencies.append((time.perf_counter() - started) * 1000)
    finally:
        serve.delete(FLOOR_APP)
    return {"requests": requests, "latency_ms": percentiles(latencies)}


def measure(base_url: str, tasks: int, concurrency: int, nats_url: str = "", serve_requests: int = 300) -> dict:
    """Both floors, in a Ray session this process is already attached to (Serve running at ``base_url``)."""
    pipeline = asyncio.run(pipeline_floor(tasks, concurrency, nats_url))
    noop = serve_noop_floor(base_url, serve_requests)
    return {"pipeline": pipeline, "serve_noop": noop,
            "latency_budget_p50_ms": round(3 * (pipeline["latency_ms"]["p50"] + noop["latency_ms"]["p50"]), 2)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", type=int, default=1000)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--nats-url", default="", help="also publish each hop to JetStream on this server")
    p.add_argument("--serve-requests", type=int, default=300)
    args = p.parse_args()
    sys.path.insert(0, str(REPO))
    from cluster.ray_env import apply_local_env

    apply_local_env()
    import socket

    from ray import serve

    ray.init(namespace="orloj-raw-floor", include_dashboard=False, logging_level="warning", log_to_driver=False,
             _node_ip_address="127.0.0.1")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    try:
        print(json.dumps(measure(f"http://127.0.0.1:{port}", args.tasks, args.concurrency, args.nats_url,
                                 args.serve_requests), indent=2))
    finally:
        serve.shutdown()
        ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())

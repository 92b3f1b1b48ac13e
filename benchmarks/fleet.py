"""Fleet benchmark: many declared agents, a few that work, then idle (issue: agent fleet at scale).

    python benchmarks/fleet.py [--namespaces 50] [--agents-per-namespace 20] [--runs 100]
        [--concurrency 8] [--idle-ttl 45s] [--max-agent-actors 0] [--report out.json]

Starts Ray and orloj-ray in this process (``--agent-idle-ttl`` short for the run), applies
``namespaces x agents-per-namespace`` Agents (each with an AgentSystem of its own) over REST,
runs one task on each of ``--runs`` of them, then waits out the idle TTL. Throughout, every half
second: the live agent actors (Ray's named actors) and their resident memory, against the
per-node cap; every ``--probe-every`` seconds a probe task on one more agent measures the
supervisor's claim latency (POST to the claim recorded in the task's history). Reported:
cold-start latency of each agent's first turn (its message marked Running to its result, actor
creation included), claim latency p50/p95 per phase, the most live agent actors seen vs the
cap, actors and RSS after the runs and after the TTL. Exits 1 when a target is missed: never
above the cap, none left after the TTL, claim latency p95 under 1 s in every phase.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

import aiohttp

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from benchmarks.loadtest import ray_processes  # noqa: E402
from benchmarks.raw_floor import percentiles  # noqa: E402


def _ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")[:26] + "+00:00"
                                  if "." in text else text.replace("Z", "+00:00")).timestamp()


def start(args) -> tuple[str, dict]:
    import socket

    from cluster.ray_env import apply_local_env

    apply_local_env()
    import ray

    from cluster.local import deploy
    from orloj_ray.config import ServerConfig

    ray.init(namespace="orloj", include_dashboard=False, logging_level="warning", log_to_driver=False,
             _node_ip_address="127.0.0.1")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = ServerConfig.from_env(mode="message-driven", agent_idle_ttl=args.idle_ttl,
                                   max_agent_actors=args.max_agent_actors)
    return deploy(host="127.0.0.1", port=port, cluster={"mode": "message-driven"}, config=config), {}


class Sampler(threading.Thread):
    """Live agent actors and their RSS every ``every_s``, by phase."""

    def __init__(self, every_s: float = 0.5):
        super().__init__(daemon=True)
        self.every_s, self.phase, self.samples = every_s, "setup", []
        self._stop = threading.Event()

    def run(self) -> None:
        import ray

        while not self._stop.wait(self.every_s):
            names = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
                     if a["namespace"] == "orloj" and a["name"].startswith("orloj:agent:")]
            agents = ray_processes()["agents"]
            self.samples.append({"t": time.time(), "phase": self.phase, "actors": len(names),
                                 "probe_actors": sum(1 for n in names if n.startswith("orloj:agent:fleet-probe:")),
                                 "rss_mib": round(agents["rss_mib"], 1)})

    def stop(self) -> None:
        self._stop.set()


async def apply(http: aiohttp.ClientSession, namespaces: int, per: int) -> float:
    started = time.monotonic()
    sem = asyncio.Semaphore(16)

    async def post(plural: str, ns: str, doc: dict) -> None:
        async with sem:
            async with http.post(f"/v1/{plural}", params={"namespace": ns},
                                 json={"apiVersion": "orloj.dev/v1", **doc}) as resp:
                if resp.status not in (201, 409):
                    raise RuntimeError(f"{plural} {doc['metadata']['name']}: {resp.status} {await resp.text()}")

    for n in [*range(namespaces), "probe"]:
        ns = f"fleet-{n}" if n == "probe" else f"fleet-{n:02d}"
        await post("model-endpoints", ns, {"kind": "ModelEndpoint", "metadata": {"name": "m", "namespace": ns},
                                           "spec": {"provider": "mock", "default_model": "x"}})
        names = [f"agent-{i:02d}" for i in range(per if n != "probe" else 1)]
        await asyncio.gather(*(post("agents", ns, {"kind": "Agent", "metadata": {"name": a, "namespace": ns},
                                                   "spec": {"model_ref": "m", "prompt": a}}) for a in names))
        await asyncio.gather(*(post("agent-systems", ns, {"kind": "AgentSystem", "metadata": {"name": a, "namespace": ns},
                                                          "spec": {"agents": [a]}}) for a in names))
    return time.monotonic() - started


async def run_task(http: aiohttp.ClientSession, ns: str, system: str, name: str, timeout: float = 120) -> dict:
    body = {"apiVersion": "orloj.dev/v1", "kind": "Task", "metadata": {"name": name, "namespace": ns},
            "spec": {"system": system}}
    async with http.post("/v1/tasks", json=body) as resp:
        resp.raise_for_status()
    created = time.time()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        async with http.get(f"/v1/tasks/{name}", params={"namespace": ns}) as resp:
            task = await resp.json()
        status = task.get("status") or {}
        if status.get("phase") in ("Succeeded", "Failed", "DeadLetter"):
            claim = next((h for h in status.get("history") or [] if h.get("type") == "claim"), None)
            end = next((r for r in status.get("trace") or [] if r.get("type") == "agent_end"), {})
            return {"phase": status["phase"], "claim_ms": (_ts(claim["timestamp"]) - created) * 1000 if claim else None,
                    "first_turn_ms": end.get("elapsed_ms"), "model_ms": end.get("latency_ms"),
                    "error": status.get("lastError", "")}
        await asyncio.sleep(0.1)
    return {"phase": "TimedOut", "claim_ms": None, "first_turn_ms": None}


async def main_async(args, server: str, sampler: Sampler) -> dict:
    report: dict = {}
    async with aiohttp.ClientSession(base_url=server, timeout=aiohttp.ClientTimeout(total=60)) as http:
        report["apply_s"] = round(await apply(http, args.namespaces, args.agents_per_namespace), 1)
        async with http.get("/v1/runtime") as resp:
            runtime = await resp.json()
        report["cap_per_node"] = {n[:12]: v["cap"] for n, v in (runtime.get("agents") or {}).get("nodes", {}).items()}
        probes: list[dict] = []
        stop_probes = asyncio.Event()

        async def probe() -> None:
            i = 0
            while not stop_probes.is_set():
                result = await run_task(http, "fleet-probe", "agent-00", f"probe-{i:04d}")
                result["phase_of_run"] = sampler.phase
                probes.append(result)
                i += 1
                try:
                    await asyncio.wait_for(stop_probes.wait(), args.probe_every)
                except TimeoutError:
                    pass

        prober = asyncio.create_task(probe())
        sampler.phase = "runs"
        sem = asyncio.Semaphore(args.concurrency)
        picks = [(f"fleet-{(k % args.namespaces):02d}", f"agent-{(k // args.namespaces) % args.agents_per_namespace:02d}")
                 for k in range(args.runs)]

        async def one(k: int, ns: str, agent: str) -> dict:
            async with sem:
                return await run_task(http, ns, agent, f"run-{k:04d}")

        started = time.monotonic()
        runs = await asyncio.gather(*(one(k, ns, a) for k, (ns, a) in enumerate(picks)))
        report["runs_s"] = round(time.monotonic() - started, 1)
        sampler.phase = "idle"
        after_runs = sampler.samples[-1] if sampler.samples else {}
        await asyncio.sleep(args.idle_wait_s)
        stop_probes.set()
        await prober
        await asyncio.sleep(2.0)
        sampler.phase = "end"
        await asyncio.sleep(max(2.0, args.ttl_s + 5))  # the probe agent's actor goes too
    end = sampler.samples[-1] if sampler.samples else {}
    report["runs"] = {"count": len(runs), "succeeded": sum(1 for r in runs if r["phase"] == "Succeeded"),
                      "errors": sorted({r["error"] for r in runs if r.get("error")})[:3],
                      "cold_first_turn_ms": percentiles([r["first_turn_ms"] for r in runs if r["first_turn_ms"]]),
                      "claim_ms": percentiles([r["claim_ms"] for r in runs if r["claim_ms"] is not None])}
    report["probe_claim_ms"] = {phase: percentiles([p["claim_ms"] for p in probes
                                                    if p["phase_of_run"] == phase and p["claim_ms"] is not None])
                                for phase in ("runs", "idle")}
    report["live_agent_actors"] = {"max": max((s["actors"] for s in sampler.samples), default=0),
                                   "after_runs": after_runs.get("actors"), "after_runs_rss_mib": after_runs.get("rss_mib"),
                                   "after_ttl": end.get("actors"), "after_ttl_rss_mib": end.get("rss_mib")}
    cap = sum(report["cap_per_node"].values())
    claims = [report["runs"]["claim_ms"], *report["probe_claim_ms"].values()]
    report["targets"] = {
        f"live agent actors never above the cap ({cap})": report["live_agent_actors"]["max"] <= cap,
        "0 live agent actors after the idle TTL": end.get("actors") == 0,
        "claim latency p95 < 1 s at every point": all((c or {}).get("p95", 0) < 1000 for c in claims),
        "every run succeeded": report["runs"]["succeeded"] == len(runs),
    }
    return report


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--namespaces", type=int, default=50)
    p.add_argument("--agents-per-namespace", type=int, default=20)
    p.add_argument("--runs", type=int, default=100, help="tasks, one per agent, on this many agents")
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--idle-ttl", default="45s", help="the server's --agent-idle-ttl for the run")
    p.add_argument("--max-agent-actors", type=int, default=0, help="the server's cap (0: derived from memory)")
    p.add_argument("--probe-every", type=float, default=3.0, help="seconds between claim-latency probes")
    p.add_argument("--report", default="")
    args = p.parse_args()
    from orloj_ray.config import parse_idle_ttl

    args.ttl_s = parse_idle_ttl(args.idle_ttl)
    args.idle_wait_s = args.ttl_s + 10
    server, _ = start(args)
    sampler = Sampler()
    sampler.start()
    try:
        report = asyncio.run(main_async(args, server, sampler))
    finally:
        sampler.stop()
    report["config"] = {k: v for k, v in vars(args).items() if k != "report"}
    report["machine"] = {"cpus": os.cpu_count(), "python": sys.version.split()[0]}
    report["samples"] = sampler.samples[::4]
    text = json.dumps(report, indent=2)
    print(text)
    if args.report:
        Path(args.report).write_text(text + "\n")
    return 0 if all(report["targets"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())

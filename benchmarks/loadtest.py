"""Load test modelled on upstream's orloj-loadtest: N pipeline tasks over REST, completion seen
on the task watch stream (not by polling), quality gates, latency percentiles, fault injection,
memory figures and, in the same run, the raw floor (benchmarks/raw_floor.py).

    python benchmarks/loadtest.py --embedded --tasks 1000 --concurrency 32 [--log jetstream]
        [--invalid-every 50] [--slow-every 100] [--expired-lease-every 100] [--kill-agent-every-s 5]
        [--memory-at 1000,10000] [--report out.json]

Against a running `orloj up` (``--server``), or ``--embedded``: starts Ray, the store, the
supervisor and the API in this process on a free port (with ``--log jetstream`` also a local
nats-server) and tears them down after. Latency runs from the POST's return to the terminal
watch event. Finished tasks are deleted as the run goes (``--keep`` keeps them). Exits 1 when
a quality gate fails. Benchmarks are not tests: nothing here runs in the test suite.

Fault injection: ``--invalid-every N`` (every Nth task names a system with a missing agent: it
must fail, within ``--max-invalid-latency-s``, with a reason naming the agent),
``--slow-every N`` (every Nth task runs a pipeline whose mock model takes
``--slow-latency-ms``), ``--expired-lease-every N`` (every Nth task has its status rewritten
over REST to a lease held by a crashed owner that expired, as upstream's injection: the
supervisor must take it over), ``--kill-agent-every-s S`` / ``--kill-supervisor-every-s S``
(embedded only: kill a random agent actor / the supervisor with ``ray.kill``; Ray restarts it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import aiohttp  # with ray[default]; a leaner client than httpx: the load generator shares the 2 cores

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from benchmarks.raw_floor import percentiles  # noqa: E402

TERMINAL = {"Succeeded", "Failed", "DeadLetter"}
NS = "loadtest"
AGENTS = ["lt-planner", "lt-research", "lt-writer"]
CRASHED_OWNER = "worker-crashed-simulated"


def _setup_docs(latency_ms: int, slow_latency_ms: int = 0) -> list[tuple[str, dict]]:
    docs: list[tuple[str, dict]] = []
    for suffix, latency in (("", latency_ms), ("-slow", slow_latency_ms)):
        if suffix and not slow_latency_ms:
            continue
        endpoint = {"provider": "mock", "default_model": "gpt-4o"}
        if latency:
            endpoint["options"] = {"latency_ms": str(latency)}
        agents = [a + suffix for a in AGENTS]
        docs.append(("model-endpoints", {"kind": "ModelEndpoint", "metadata": {"name": "lt-model" + suffix},
                                         "spec": endpoint}))
        docs += [("agents", {"kind": "Agent", "metadata": {"name": a},
                             "spec": {"model_ref": "lt-model" + suffix, "prompt": a}}) for a in agents]
        docs.append(("agent-systems", {"kind": "AgentSystem", "metadata": {"name": "lt-pipeline" + suffix},
                                       "spec": {"agents": agents, "graph": {agents[0]: {"next": agents[1]},
                                                                            agents[1]: {"next": agents[2]}}}}))
    docs.append(("agent-systems", {"kind": "AgentSystem", "metadata": {"name": "lt-invalid"},
                                   "spec": {"agents": ["lt-missing-agent"]}}))
    for _, doc in docs:
        doc["apiVersion"] = "orloj.dev/v1"
        doc["metadata"]["namespace"] = NS
    return docs


def _every(n: int, i: int) -> bool:
    return bool(n) and i % n == n - 1


class Tracker:
    """Terminal phases seen on the watch stream, with a waiter per task (no polling)."""

    def __init__(self):
        self.done: dict[str, tuple[str, float, str]] = {}
        self.claimed_by: dict[str, str] = {}
        """Task -> the supervisor (identity) of its first claim, and of its last (a takeover)."""
        self.finished_by: dict[str, str] = {}
        self._waiters: dict[str, asyncio.Future] = {}

    def seen(self, name: str, phase: str, error: str, history: list | None = None) -> None:
        if name in self.done:
            return
        owners = [str(h.get("worker", "")).split("#", 1)[0] for h in history or []
                  if h.get("type") in ("claim", "takeover")]
        if owners:
            self.claimed_by[name], self.finished_by[name] = owners[0], owners[-1]
        self.done[name] = (phase, time.monotonic(), error)
        waiter = self._waiters.pop(name, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait(self, name: str, timeout_s: float) -> bool:
        if name in self.done:
            return True
        waiter = self._waiters.setdefault(name, asyncio.get_running_loop().create_future())
        try:
            await asyncio.wait_for(asyncio.shield(waiter), timeout_s)
        except TimeoutError:
            self._waiters.pop(name, None)
        return name in self.done


async def _watch(http: aiohttp.ClientSession, tracker: Tracker, ready: asyncio.Event) -> None:
    async with http.get("/v1/tasks/watch", params={"namespace": NS}, timeout=aiohttp.ClientTimeout()) as resp:
        resp.raise_for_status()
        ready.set()
        async for line in resp.content:  # one line at a time
            if not line.startswith(b"data:"):
                continue
            frame = json.loads(line[5:])
            task = frame.get("resource") or {}
            status = task.get("status") or {}
            phase = status.get("phase")
            if phase in TERMINAL:
                tracker.seen((task.get("metadata") or {}).get("name"), phase, status.get("lastError") or "",
                             status.get("history"))


async def _expire_lease(http: aiohttp.ClientSession, name: str) -> str:
    """Upstream's expired-lease injection: the task looks Running under a crashed owner whose
    lease ran out 15 s ago. Retried on 409 (the supervisor writes too). Returns "" or an error."""
    now = datetime.now(timezone.utc)
    for attempt in range(5):
        async with http.get(f"/v1/tasks/{name}", params={"namespace": NS}) as resp:
            task = await resp.json()
        status = dict(task.get("status") or {})
        if status.get("phase") in TERMINAL:
            return ""  # finished before the injection landed: nothing to take over
        status.update(phase="Running", claimedBy=CRASHED_OWNER, assignedWorker=CRASHED_OWNER,
                      leaseUntil=(now - timedelta(seconds=15)).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                      lastHeartbeat=(now - timedelta(seconds=30)).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                      attempts=max(1, int(status.get("attempts") or 0)))
        status.setdefault("history", []).append({"timestamp": now.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                                                 "type": "failure_injection", "worker": CRASHED_OWNER,
                                                 "message": "loadtest: expired lease injected"})
        rv = task["metadata"]["resourceVersion"]
        async with http.put(f"/v1/tasks/{name}/status", params={"namespace": NS},
                            json={"status": status}, headers={"If-Match": rv}) as resp:
            if resp.status != 409:
                return "" if resp.ok else f"{resp.status} {(await resp.text())[:200]}"
        await asyncio.sleep(0.015 * (attempt + 1))
    return "409 conflict 5 times"


async def run(server: str, args, memory_probe=None) -> dict:
    connector = aiohttp.TCPConnector(limit=args.concurrency + 8)
    async with aiohttp.ClientSession(base_url=server, connector=connector, timeout=aiohttp.ClientTimeout(total=30),
                                     read_bufsize=1 << 20) as http:  # a watch frame is one line: up to 1 MiB
        for plural, doc in _setup_docs(args.model_latency_ms, args.slow_latency_ms if args.slow_every else 0):
            async with http.post(f"/v1/{plural}", json=doc) as resp:
                resp.raise_for_status()
        tracker = Tracker()
        ready = asyncio.Event()
        watcher = asyncio.create_task(_watch(http, tracker, ready))
        await asyncio.wait_for(ready.wait(), 10)
        created: dict[str, float] = {}
        kinds: dict[str, str] = {}
        injection_errors: list[str] = []
        create_errors: list[str] = []
        slots = asyncio.Semaphore(args.concurrency)
        run_id = f"{int(time.time())}"
        marks = sorted(int(m) for m in args.memory_at.split(",") if m.strip()) if memory_probe else []
        memory: dict[str, dict] = {}
        http_ms: dict[str, list[float]] = {"post": [], "delete": []}
        finished = 0

        async def submit(i: int) -> None:
            nonlocal finished
            name = f"lt-{run_id}-{i:05d}"
            kind = ("invalid" if _every(args.invalid_every, i) else "slow" if _every(args.slow_every, i)
                    else "expired_lease" if _every(args.expired_lease_every, i) else "pipeline")
            system = {"invalid": "lt-invalid", "slow": "lt-pipeline-slow"}.get(kind, "lt-pipeline")
            body = {"apiVersion": "orloj.dev/v1", "kind": "Task", "metadata": {"name": name, "namespace": NS},
                    "spec": {"system": system, "input": {"topic": f"load {i}"}}}
            async with slots:
                posted = time.monotonic()
                async with http.post("/v1/tasks", json=body) as resp:
                    error = "" if resp.ok else f"{name}: {resp.status} {(await resp.text())[:200]}"
                http_ms["post"].append((time.monotonic() - posted) * 1000)
                if error:
                    create_errors.append(error)
                    return
                created[name] = time.monotonic()
                kinds[name] = kind
                if kind == "expired_lease":
                    await asyncio.sleep(random.uniform(0, 0.05))  # land before, during or after the claim
                    error = await _expire_lease(http, name)
                    if error:
                        injection_errors.append(f"{name}: {error}")
                if await tracker.wait(name, args.timeout) and not args.keep:
                    deleting = time.monotonic()
                    async with http.delete(f"/v1/tasks/{name}", params={"namespace": NS}) as resp:
                        await resp.read()
                    http_ms["delete"].append((time.monotonic() - deleting) * 1000)
                finished += 1
                if args.kill_supervisor_after and finished == args.kill_supervisor_after:
                    await asyncio.to_thread(_kill_one_supervisor, args)
                if marks and finished >= marks[0]:
                    mark = marks.pop(0)
                    memory[str(mark)] = await asyncio.to_thread(memory_probe)

        started = time.monotonic()
        await asyncio.gather(*(submit(i) for i in range(args.tasks)))
        elapsed = time.monotonic() - started
        watcher.cancel()
    report = _report(created, kinds, tracker.done, elapsed, args.tasks)
    report["supervisors"] = _supervisor_shares(created, tracker)
    report["http_ms"] = {k: percentiles(v) for k, v in http_ms.items()}
    report["create_errors"] = create_errors[:20]
    report["injection_errors"] = injection_errors[:20]
    if memory:
        report["memory_rss_mib"] = memory
    return report


def _supervisor_shares(created, tracker: Tracker) -> dict:
    """How the tasks spread over the supervisors: first claims, and who finished them."""
    first = {}
    for name in created:
        owner = tracker.claimed_by.get(name)
        if owner:
            first[owner] = first.get(owner, 0) + 1
    total = sum(first.values()) or 1
    moved = sum(1 for n in created if tracker.claimed_by.get(n) != tracker.finished_by.get(n))
    return {"first_claims": dict(sorted(first.items())),
            "first_claim_share": {k: round(v / total, 3) for k, v in sorted(first.items())},
            "taken_over": moved}


def _kill_one_supervisor(args) -> None:
    """Kill the last supervisor for good (no restart): the others must take its shard over."""
    import ray

    from actors import RAY_NAMESPACE, supervisor_name

    name = supervisor_name(max(0, args.supervisors - 1))
    ray.kill(ray.get_actor(name, namespace=RAY_NAMESPACE), no_restart=True)
    print(f"killed {name} (no restart) after {args.kill_supervisor_after} finished tasks", file=sys.stderr)


def _report(created, kinds, done, elapsed, tasks) -> dict:
    normal = [n for n in created if kinds[n] in ("pipeline", "expired_lease")]
    latencies = [(done[n][1] - created[n]) * 1000 for n in normal if n in done]
    phases = [done[n][0] for n in created if n in done]
    invalid = [n for n in created if kinds[n] == "invalid"]
    invalid_ms = [(done[n][1] - created[n]) * 1000 for n in invalid if n in done]
    by_kind = {}
    for kind in sorted(set(kinds.values())):
        names = [n for n in created if kinds[n] == kind]
        by_kind[kind] = {"created": len(names),
                         "succeeded": sum(1 for n in names if n in done and done[n][0] == "Succeeded"),
                         "failed": sum(1 for n in names if n in done and done[n][0] == "Failed"),
                         "deadletter": sum(1 for n in names if n in done and done[n][0] == "DeadLetter"),
                         "timed_out": sum(1 for n in names if n not in done)}
    return {
        "tasks": tasks, "created": len(created), "invalid_injected": len(invalid), "elapsed_s": round(elapsed, 2),
        "throughput_tasks_per_s": round(tasks / elapsed, 1) if elapsed else 0.0,
        "succeeded": phases.count("Succeeded"), "failed": phases.count("Failed"),
        "deadletter": phases.count("DeadLetter"), "timed_out": len(created) - len(phases),
        "latency_ms": percentiles(latencies),
        "by_kind": by_kind,
        "invalid": {"failed": sum(1 for n in invalid if n in done and done[n][0] == "Failed"),
                    "latency_ms": percentiles(invalid_ms),
                    "reasons": sorted({done[n][2] for n in invalid if n in done})[:3]},
        "errors": sorted({done[n][2] for n in normal if n in done and done[n][0] != "Succeeded"})[:5],
    }


def gates(report: dict, args) -> list[str]:
    valid = report["created"] - report["invalid_injected"]
    problems = []
    if report["create_errors"]:
        problems.append(f"{len(report['create_errors'])} create errors")
    if report["injection_errors"]:
        problems.append(f"{len(report['injection_errors'])} injection errors")
    succeeded = sum(v["succeeded"] for k, v in report["by_kind"].items() if k != "invalid")
    if valid and succeeded / valid < args.min_success_rate:
        problems.append(f"success rate {succeeded / valid:.4f} < {args.min_success_rate}")
    if report["deadletter"] / max(1, report["created"]) > args.max_deadletter_rate:
        problems.append(f"deadletter rate above {args.max_deadletter_rate}")
    if (report["failed"] - report["invalid"]["failed"]) / max(1, report["created"]) > args.max_failed_rate:
        problems.append(f"failed rate above {args.max_failed_rate}")
    if report["timed_out"] > args.max_timed_out:
        problems.append(f"{report['timed_out']} timed out > {args.max_timed_out}")
    if report["invalid"]["failed"] != report["invalid_injected"]:
        problems.append(f"{report['invalid_injected'] - report['invalid']['failed']} invalid tasks did not fail")
    if report["invalid_injected"] and report["invalid"]["latency_ms"]["max"] > args.max_invalid_latency_s * 1000:
        problems.append(f"an invalid task took {report['invalid']['latency_ms']['max']:.0f} ms to fail "
                        f"(> {args.max_invalid_latency_s} s)")
    if report["invalid_injected"] and not all("lt-missing-agent" in r for r in report["invalid"]["reasons"]):
        problems.append(f"invalid tasks failed without naming the missing agent: {report['invalid']['reasons']}")
    return problems


def compare(report: dict, floor: dict) -> dict:
    """orloj-ray's figures as ratios to the raw floor, and the issue's targets."""
    pipeline, noop = floor["pipeline"], floor["serve_noop"]
    budget = pipeline["latency_ms"]["p50"] + noop["latency_ms"]["p50"]
    ours = report["latency_ms"]
    return {
        "throughput_fraction_of_floor": round(report["throughput_tasks_per_s"] / pipeline["throughput_tasks_per_s"], 3),
        "p50_over_floor_p50_plus_serve_noop": round(ours["p50"] / budget, 2) if budget else None,
        "p95_over_floor_p95_plus_serve_noop": round(
            ours["p95"] / (pipeline["latency_ms"]["p95"] + noop["latency_ms"]["p95"]), 2),
        "targets": {"throughput_tasks_per_s >= 50": report["throughput_tasks_per_s"] >= 50,
                    "p50 <= 3 x (floor p50 + serve no-op p50)": ours["p50"] <= 3 * budget},
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--server", default=os.environ.get("ORLOJ_SERVER", "http://127.0.0.1:8080"))
    p.add_argument("--embedded", action="store_true", help="start Ray and orloj-ray in this process")
    p.add_argument("--log", choices=("memory", "jetstream"), default="memory", help="embedded: the message log")
    p.add_argument("--nats-url", default="", help="embedded --log jetstream: this server (default: start one)")
    p.add_argument("--tasks", type=int, default=200)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--invalid-every", type=int, default=0, help="every Nth task names an invalid system")
    p.add_argument("--max-invalid-latency-s", type=float, default=5.0)
    p.add_argument("--model-latency-ms", type=int, default=0, help="mock model latency of every agent")
    p.add_argument("--slow-every", type=int, default=0, help="every Nth task runs slow agents")
    p.add_argument("--slow-latency-ms", type=int, default=2000)
    p.add_argument("--expired-lease-every", type=int, default=0, help="every Nth task gets an expired lease")
    p.add_argument("--kill-agent-every-s", type=float, default=0, help="embedded: kill an agent actor this often")
    p.add_argument("--kill-supervisor-every-s", type=float, default=0, help="embedded: kill a supervisor this often")
    p.add_argument("--supervisors", type=int, default=1, help="embedded: supervisor actors (--supervisors)")
    p.add_argument("--store", choices=("memory", "postgres"), default="memory", help="embedded: the store")
    p.add_argument("--database-url", default="", help="embedded --store postgres: the database")
    p.add_argument("--kill-supervisor-after", type=int, default=0,
                   help="embedded: kill the last supervisor for good once this many tasks finished")
    p.add_argument("--timeout", type=float, default=120.0, help="per task, seconds")
    p.add_argument("--keep", action="store_true", help="keep finished tasks (default: delete as the run goes)")
    p.add_argument("--min-success-rate", type=float, default=1.0)
    p.add_argument("--max-deadletter-rate", type=float, default=0.0)
    p.add_argument("--max-failed-rate", type=float, default=0.0)
    p.add_argument("--max-timed-out", type=int, default=0)
    p.add_argument("--raw-floor", action=argparse.BooleanOptionalAction, default=None,
                   help="measure the raw floor first (default: on with --embedded)")
    p.add_argument("--floor-tasks", type=int, default=0, help="raw floor tasks (default: --tasks, at most 2000)")
    p.add_argument("--memory-at", default="1000,10000", help="embedded: RSS snapshots after this many finished tasks")
    p.add_argument("--report", default="")
    args = p.parse_args()
    server, nats, floor, probe = args.server, None, None, None
    stop_kills = threading.Event()
    try:
        if args.embedded:
            if args.log == "jetstream" and not args.nats_url:
                from cluster.nats_server import NatsServer

                nats = NatsServer(tempfile.mkdtemp(prefix="orloj-loadtest-nats-")).start()
                args.nats_url = nats.url
            server = _start_embedded(args)
            probe = ray_rss_mib
        if args.raw_floor if args.raw_floor is not None else args.embedded:
            from benchmarks.raw_floor import measure

            floor = measure(server, args.floor_tasks or min(args.tasks, 2000), args.concurrency,
                            args.nats_url if args.log == "jetstream" else "")
        baseline_memory = probe() if probe else None
        cpu_before = ray_processes() if args.embedded else None
        calls_before = store_stats() if args.embedded and args.store == "memory" else None
        kills = _start_kills(args, stop_kills)
        report = asyncio.run(run(server, args, probe))
        stop_kills.set()
        if cpu_before is not None:
            after = ray_processes()
            report["cpu_ms_per_task"] = {role: round((after[role]["cpu_s"] - cpu_before[role]["cpu_s"]) * 1000 / args.tasks, 1)
                                         for role in after if role != "_pids"}
            report["cpu_ms_per_task"]["total"] = round(sum(report["cpu_ms_per_task"].values()), 1)
            report["busiest_process"] = busiest(cpu_before, after)
            if calls_before is not None:
                report["store_per_task"] = per_task(calls_before, store_stats(), args.tasks)
        report["kills"] = kills
        if probe:
            report.setdefault("memory_rss_mib", {}).update(before_run=baseline_memory, end=probe())
    finally:
        stop_kills.set()
        if nats is not None:
            nats.stop()
    report["config"] = {k: v for k, v in vars(args).items() if k != "report"}
    report["machine"] = {"cpus": os.cpu_count(), "python": sys.version.split()[0]}
    if floor is not None:
        report["raw_floor"] = floor
        report["vs_raw_floor"] = compare(report, floor)
    mem = report.get("memory_rss_mib") or {}
    marks = sorted((k for k in mem if k.isdigit()), key=int)
    if len(marks) >= 2:
        report["memory_growth"] = {f"total_after_{marks[-1]}_over_{marks[0]}":
                                   round(mem[marks[-1]]["total"] / mem[marks[0]]["total"], 3)}
    report["gates_failed"] = gates(report, args)
    text = json.dumps(report, indent=2)
    print(text)
    if args.report:
        Path(args.report).write_text(text + "\n")
    return 1 if report["gates_failed"] else 0


# -- embedded: Ray in this process ----------------------------------------------------------------

ROLES = (("StoreHost", "store"), ("Supervisor", "supervisor"), ("AgentActor", "agents"), ("AgentPool", "agent_pool"),
         ("ServeReplica", "serve_replica"), ("ProxyActor", "serve_proxy"), ("HAProxyManager", "serve_proxy"),
         ("ServeController", "serve_controller"))
"""Ray worker process titles by role; ``serve_proxy`` also counts HAProxy itself (the ingress's
processes: the Python proxy actor, or HAProxy and the actor that manages it)."""
RAY_SYSTEM = ("/gcs_server", "/raylet", "/ray/dashboard/", "/log_monitor.py", "/autoscaler/_private/monitor.py",
              "/runtime_env/agent/main.py")
"""Ray's own processes (``ray_system``): counted in CPU, listed apart from the memory total."""


def ray_processes() -> dict[str, dict[str, float]]:
    """RSS (MiB) and CPU time used so far (s) of the Ray worker processes involved, by role
    (their ``ray::<Class>`` process titles); ``driver``: this process (load client + Ray driver)."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {role: {"rss_mib": 0.0, "cpu_s": 0.0} for _, role in ROLES}
    out["driver"] = {"rss_mib": 0.0, "cpu_s": 0.0}
    out["ray_system"] = {"rss_mib": 0.0, "cpu_s": 0.0}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            title = argv[0].decode(errors="replace")
            if int(pid) == os.getpid():
                role = "driver"
            elif title.startswith("ray::"):
                role = next((r for cls, r in ROLES if title[5:].startswith(cls)), None)
            elif title.rsplit("/", 1)[-1] == "haproxy":
                role = "serve_proxy"
            elif any(part in arg.decode(errors="replace") for arg in argv[:3] for part in RAY_SYSTEM):
                role = "ray_system"
            else:
                role = None
            if role is None:
                continue
            rss_kib = next(int(line.split()[1]) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                           if line.startswith("VmRSS:"))
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            cpu_s = (int(fields[11]) + int(fields[12])) / tick  # utime + stime
        except (OSError, StopIteration, ValueError, IndexError):
            continue
        out[role]["rss_mib"] += rss_kib / 1024
        out[role]["cpu_s"] += cpu_s
        out.setdefault("_pids", {})[pid] = {"role": role, "cpu_s": cpu_s}
    return out


def busiest(before: dict, after: dict) -> dict:
    """The single process that used the most CPU between two ``ray_processes``, and its share of all."""
    pids_before, pids_after = before.get("_pids", {}), after.get("_pids", {})
    used = {pid: p["cpu_s"] - pids_before.get(pid, {}).get("cpu_s", 0.0) for pid, p in pids_after.items()}
    total = sum(max(0.0, v) for v in used.values()) or 1.0
    pid = max(used, key=used.get) if used else None
    return {"role": pids_after[pid]["role"], "share_of_cpu": round(used[pid] / total, 3)} if pid else {}


def store_stats() -> dict:
    """The store actor's call counters (``StoreHost.stats``)."""
    import ray

    from actors import RAY_NAMESPACE, STORE_ACTOR

    return ray.get(ray.get_actor(STORE_ACTOR, namespace=RAY_NAMESPACE).stats.remote())


def per_task(before: dict, after: dict, tasks: int) -> dict:
    """Store actor calls (a batch is one) and store calls by method per task, between two ``store_stats``."""
    methods = {m: round((n - before["store_calls"].get(m, 0)) / tasks, 2) for m, n in after["store_calls"].items()}
    return {"actor_calls": round((after["actor_calls"] - before["actor_calls"]) / tasks, 2),
            "store_calls": {m: n for m, n in sorted(methods.items()) if n}}


def ray_rss_mib() -> dict:
    """Resident memory (MiB) of the Ray processes involved, by role, and the total of orloj-ray's
    (``ray_system``, Ray's own processes, is listed apart)."""
    out = {role: round(v["rss_mib"], 1) for role, v in ray_processes().items() if role not in ("driver", "_pids")}
    out["total"] = round(sum(v for role, v in out.items() if role != "ray_system"), 1)
    return out


def _start_kills(args, stop: threading.Event) -> dict:
    """Kill agent actors / the supervisor on a timer in a thread; Ray restarts them."""
    counts = {"agent": 0, "supervisor": 0}
    if not args.embedded or not (args.kill_agent_every_s or args.kill_supervisor_every_s):
        return counts
    import ray

    from actors import AGENT_PREFIX, RAY_NAMESPACE, supervisor_name

    def loop(every_s: float, what: str) -> None:
        rng = random.Random(7)
        while not stop.wait(every_s):
            try:
                if what == "agent":
                    names = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
                             if a["namespace"] == RAY_NAMESPACE and a["name"].startswith(f"{AGENT_PREFIX}:{NS}:")]
                    if not names:
                        continue
                    name = rng.choice(sorted(names))
                else:
                    name = supervisor_name(rng.randrange(max(1, getattr(args, "supervisors", 1) or 1)))
                ray.kill(ray.get_actor(name, namespace=RAY_NAMESPACE), no_restart=False)
                counts[what] += 1
            except Exception as exc:  # gone between listing and killing: try again next tick
                print(f"kill {what} failed: {exc}", file=sys.stderr)

    for every_s, what in ((args.kill_agent_every_s, "agent"), (args.kill_supervisor_every_s, "supervisor")):
        if every_s:
            threading.Thread(target=loop, args=(every_s, what), daemon=True).start()
    return counts


def _start_embedded(args) -> str:
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
    config = ServerConfig.from_env(mode="message-driven", log=args.log, nats_url=args.nats_url or None,
                                   supervisors=args.supervisors, store=args.store,
                                   database_url=args.database_url or None)
    return deploy(host="127.0.0.1", port=port, cluster={"mode": "message-driven"}, config=config)


if __name__ == "__main__":
    sys.exit(main())

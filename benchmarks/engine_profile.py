"""The engine's cost per task without Ray: N pipeline tasks through the real Controller and
TaskExecutor over a MemoryStore, turns run in-process (LocalAgentRuntime), messages through the
in-memory log. Counts Store calls per task and the pickled bytes they would ship to the store
actor on Ray (the cost that dominates there), and optionally profiles with cProfile.

    python benchmarks/engine_profile.py --tasks 200 [--profile out.pstats] [--top 25]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import collections
import json
import pickle
import pstats
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from orloj_ray.engine.controller import Controller  # noqa: E402
from orloj_ray.engine.mailbox import Mailbox  # noqa: E402
from orloj_ray.engine.runtime import LocalAgentRuntime  # noqa: E402
from orloj_ray.messaging import MemoryLog  # noqa: E402
from orloj_ray.store import MemoryStore  # noqa: E402

TERMINAL = ("Succeeded", "Failed", "DeadLetter")


class CountingStore:
    """Forwards to a Store, counting calls and the pickled size of arguments and results."""

    def __init__(self, inner):
        self._inner = inner
        self.calls: collections.Counter = collections.Counter()
        self.bytes: collections.Counter = collections.Counter()
        self.measure = True
        self.sites: collections.Counter | None = None

    def __getattr__(self, method):
        target = getattr(self._inner, method)
        if not callable(target):
            return target

        async def call(*args, **kwargs):
            try:
                result = await target(*args, **kwargs)
            except Exception as exc:
                if self.measure:
                    self.calls[f"{method} raised {type(exc).__name__}"] += 1
                raise
            if self.measure and method != "events_after":
                self.calls[method] += 1
                self.bytes[method] += len(pickle.dumps((args, kwargs))) + len(pickle.dumps(result))
                if self.sites is not None:
                    self.sites[(method, args[0] if args and isinstance(args[0], str) else "", _caller())] += 1
            return result

        return call


def _caller() -> str:
    """The first engine function up the stack that is not a store helper."""
    frame = sys._getframe(2)
    names = []
    while frame is not None and len(names) < 3:
        code = frame.f_code
        if "orloj_ray" in code.co_filename and "/store/" not in code.co_filename:
            names.append(code.co_name)
        frame = frame.f_back
    return "<".join(names)


def setup_docs() -> list[dict]:
    from benchmarks.loadtest import _setup_docs

    return [doc for _, doc in _setup_docs(0)]


async def run(tasks: int, concurrency: int, delete: bool, sites: bool = False) -> dict:
    base = MemoryStore()
    store = CountingStore(base)
    for doc in setup_docs():
        await base.upsert({**doc, "status": {}})
    async def probe(namespace: str, agent: str) -> str:  # as on Ray once the agent's actor answers
        return "running"

    controller = Controller(store, LocalAgentRuntime(), worker="profile-worker", probe=probe,
                            mailbox=Mailbox(MemoryLog(), store))
    loop = asyncio.create_task(controller.run())
    await asyncio.sleep(0.1)
    store.calls.clear()
    store.bytes.clear()
    if sites:
        store.sites = collections.Counter()
    phases: collections.Counter = collections.Counter()
    slots = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        name = f"pf-{i:05d}"
        async with slots:
            await base.create({"apiVersion": "orloj.dev/v1", "kind": "Task",
                               "metadata": {"name": name, "namespace": "loadtest"},
                               "spec": {"system": "lt-pipeline", "input": {"topic": f"load {i}"}},
                               "status": {"phase": "Pending"}})
            for _ in range(6000):
                task = await base.get("Task", "loadtest", name)
                phase = (task.get("status") or {}).get("phase")
                if phase in TERMINAL:
                    phases[phase] += 1
                    break
                await asyncio.sleep(0.005)
            if delete:
                await base.delete("Task", "loadtest", name)

    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(tasks)))
    elapsed = time.perf_counter() - started
    store.measure = False
    controller.stop()
    await loop
    out = {
        "tasks": tasks, "elapsed_s": round(elapsed, 3), "tasks_per_s": round(tasks / elapsed, 1),
        "phases": dict(phases),
        "store_calls_per_task": {k: round(v / tasks, 2) for k, v in sorted(store.calls.items())},
        "store_calls_per_task_total": round(sum(store.calls.values()) / tasks, 2),
        "pickled_kib_per_task": {k: round(v / tasks / 1024, 1) for k, v in sorted(store.bytes.items())},
        "pickled_kib_per_task_total": round(sum(store.bytes.values()) / tasks / 1024, 1),
    }
    if store.sites is not None:
        out["call_sites_per_task"] = {f"{m} {k} {c}": round(n / tasks, 2) for (m, k, c), n in store.sites.most_common()}
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", type=int, default=200)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--keep", action="store_true", help="keep finished tasks")
    p.add_argument("--profile", default="", help="write cProfile stats here and print the top entries")
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--sites", action="store_true", help="count Store calls by calling engine function")
    args = p.parse_args()
    profiler = cProfile.Profile() if args.profile else None
    if profiler:
        profiler.enable()
    report = asyncio.run(run(args.tasks, args.concurrency, not args.keep, args.sites))
    if profiler:
        profiler.disable()
        profiler.dump_stats(args.profile)
        pstats.Stats(args.profile).sort_stats("cumulative").print_stats(args.top)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

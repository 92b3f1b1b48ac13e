"""What an idle agent actor holds: resident memory before its first turn and after one.

    python benchmarks/agent_rss.py [--actors 3] [--report out.json]

An agent actor imports the turn machinery (gateway, tools, governance, memory, MCP client) on
its first turn, not at start (``actors/agent_actor.py``). Before that change every actor
imported it in its constructor, so "after one turn" is also what an idle actor of the old code
held. Each figure is the median over ``--actors`` actors of one Ray cluster started here, read
from /proc (VmRSS) once the actor has answered.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--actors", type=int, default=3)
    p.add_argument("--report", default="")
    args = p.parse_args()
    from cluster.ray_env import apply_local_env

    apply_local_env()
    import ray

    from actors.agent_actor import AgentActor
    from orloj_ray.engine.turn import TurnRequest
    from orloj_ray.gateway import Endpoint

    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="warning", log_to_driver=False,
             _node_ip_address="127.0.0.1")
    try:
        handles = [AgentActor.remote("bench", f"a{i}") for i in range(args.actors)]
        pids = ray.get([h.__ray_call__.remote(lambda self: os.getpid()) for h in handles])
        ray.get([h.stats.remote() for h in handles])
        time.sleep(1.0)
        idle = [rss_mib(pid) for pid in pids]
        agent = {"metadata": {"name": "a", "namespace": "bench"}, "spec": {"prompt": "p"}}
        request = TurnRequest(namespace="bench", task="t", attempt=1, agent=agent,
                              endpoint=Endpoint("mock", "mock", "", "m"), key="bench/t/a001/a/b001/h001")
        results = ray.get([h.run_turn.remote(request) for h in handles])
        assert all(r.ok for r in results), [r.error for r in results]
        time.sleep(1.0)
        after = [rss_mib(pid) for pid in pids]
    finally:
        ray.shutdown()
    report = {"actors": args.actors,
              "idle_before_first_turn_mib": round(statistics.median(idle), 1),
              "after_one_mock_turn_mib": round(statistics.median(after), 1),
              "note": "after one turn = what every idle actor held before the turn machinery was imported lazily"}
    report["saved_per_idle_actor_mib"] = round(report["after_one_mock_turn_mib"] - report["idle_before_first_turn_mib"], 1)
    text = json.dumps(report, indent=2)
    print(text)
    if args.report:
        Path(args.report).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

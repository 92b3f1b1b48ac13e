"""Run the pipeline blueprint against a running orloj-ray and print what each agent did.

    orloj up --detach
    python examples/drivers/run_pipeline.py [-n NAMESPACE] ["topic to research"]

Uses only the Python client: apply the manifests, start a task, follow it, print the trace.
Exits 1 if the task fails, 2 if orloj-ray cannot be reached or the manifests are invalid.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

try:
    import orloj_ray  # noqa: F401
except ImportError:  # running from a source checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from orloj_ray import Client  # noqa: E402
from orloj_ray.client import TaskFailed  # noqa: E402
from orloj_ray.errors import OrlojError  # noqa: E402

BLUEPRINT = Path(__file__).resolve().parent.parent / "blueprints" / "pipeline"
SYSTEM = "bp-pipeline-system"


def main() -> int:
    parser = argparse.ArgumentParser(description="Run the pipeline blueprint on a running orloj-ray.")
    parser.add_argument("-n", "--namespace", default="default")
    parser.add_argument("topic", nargs="*", default=["state of enterprise AI copilots"])
    args = parser.parse_args()
    topic = " ".join(args.topic)
    with Client() as client:
        try:
            for obj in client.apply(BLUEPRINT, namespace=args.namespace):  # validated locally first; the blueprint's own task is skipped
                print(f"applied {obj['kind'].lower()}/{obj['metadata']['name']}")
            done: list[str] = []

            def progress(task: dict) -> None:
                for entry in (task.get("status") or {}).get("trace") or []:
                    if entry.get("type") == "agent_end" and entry.get("agent") not in done:
                        done.append(entry["agent"])
                        print(f"  agent done: {entry['agent']}")

            task = client.run_task(SYSTEM, {"topic": topic}, namespace=args.namespace, timeout=300,
                                   on_update=progress)
        except TaskFailed as exc:  # the task ran and failed: print what it did, then why
            task = exc.task
        except OrlojError as exc:
            print(f"error: {exc.message}", file=sys.stderr)
            return 2

    status = task.get("status") or {}
    print(f"\ntask {task['metadata']['name']}: {status.get('phase')}")
    print("\ntrace (one line per agent step):")
    for e in status.get("trace") or []:
        if not e.get("agent") or e.get("type") == "agent_message":
            continue
        extra = " ".join(f"{k}={e[k]}" for k in ("tokens", "tool") if e.get(k) not in (None, ""))
        print(f"  {e.get('timestamp', '')[11:23]}  {e['agent']:<28} {e.get('type', ''):<14} {extra:<12} {e.get('message', '')}")
    output = status.get("output") or {}
    print(f"\nexecution order: {output.get('execution_order', '-')}")
    print(f"tokens used:     {output.get('tokens_used_total', '-')}")
    print("\noutput:")
    print(output.get("final_output") or output.get("last_output") or output)
    if status.get("phase") != "Succeeded":
        print(f"error: task {status.get('phase')}: {status.get('lastError', '')}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

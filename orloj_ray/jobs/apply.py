"""``python -m orloj_ray.jobs.apply``: apply manifests, optionally run their tasks and wait.

Meant as a ``ray job submit`` entry point on a cluster where the control plane runs (started by
``python -m cluster.up --address auto`` as another job, by ``orloj up``, or by a RayService)::

    ray job submit --working-dir . -- \\
        python -m orloj_ray.jobs.apply -f examples/blueprints/pipeline --run --wait

Exit codes: 0 everything applied (and every waited task Succeeded); 1 an object was refused, a
task ended Failed/DeadLetter, or the wait timed out; 2 bad arguments or invalid manifests
(nothing is sent then). Progress goes to stdout, which ``ray job logs`` shows.
"""

from __future__ import annotations

if __name__ == "__main__":  # a Ray job's `python` may not be the one orloj-ray is installed in: say so first
    from orloj_ray.jobs.interpreter import require_orloj_python

    require_orloj_python("orloj_ray.jobs.apply")

import argparse
import sys
import time
from collections.abc import Callable

from orloj_ray.client import Client, PlannedObject, References, WaitTimeout, plan_apply, rerun_name
from orloj_ray.errors import OrlojError, Unavailable

Print = Callable[[str], None]


def _parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m orloj_ray.jobs.apply", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-f", "--filename", action="append", required=True, metavar="PATH",
                   help="manifest file or directory (repeatable)")
    p.add_argument("--run", action="store_true",
                   help="also create the runnable Tasks found in directories (a task that already "
                        "finished under its name runs again as <name>-<unix ms>)")
    p.add_argument("--wait", action="store_true", help="wait until every task applied is terminal")
    p.add_argument("--server", default=None,
                   help="API URL (default $ORLOJCTL_SERVER, $ORLOJ_SERVER, http://127.0.0.1:8080)")
    p.add_argument("--api-token", default=None, help="bearer token (default $ORLOJCTL_API_TOKEN, $ORLOJ_API_TOKEN)")
    p.add_argument("--namespace", "-n", default=None, help="put every object in this namespace")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for the tasks (default 600)")
    p.add_argument("--server-timeout", type=float, default=120.0,
                   help="seconds to wait for the API's /healthz before applying (default 120), so this "
                        "job may be submitted right after the control-plane job")
    return p.parse_args(argv)


def wait_for_server(client: Client, timeout: float, out: Print) -> None:
    """Poll ``/healthz`` until it answers; raises ``Unavailable`` naming the URL after ``timeout``."""
    deadline = time.monotonic() + timeout
    said = False
    while True:
        try:
            client.health()
            return
        except Unavailable:
            if time.monotonic() >= deadline:
                raise Unavailable(f"the orloj API at {client.server} did not answer /healthz within "
                                  f"{timeout:g}s: start the control plane first (ray job submit ... -- "
                                  f"python -m cluster.up --address auto) or pass --server") from None
            if not said:
                out(f"waiting for the orloj API at {client.server} ...")
                said = True
            time.sleep(min(1.0, max(deadline - time.monotonic(), 0.05)))


def apply_plan(client: Client, objects: list[PlannedObject], out: Print) -> tuple[list[tuple[str, str]], int]:
    """POST every object in order, then warn of what they name that the server lacks; returns
    (tasks created as (namespace, name), refused count)."""
    tasks: list[tuple[str, str]] = []
    applied: list[dict] = []
    refused = 0
    for item in objects:
        doc = item.doc
        is_run = item.kind == "Task" and str((doc.get("spec") or {}).get("mode") or "run").lower() != "template"
        if is_run and client.finished_phase(item.name, item.namespace):
            doc = {**doc, "metadata": {**doc["metadata"], "name": rerun_name(item.name)}}
        try:
            stored = client.create(doc)
        except Unavailable:
            raise
        except OrlojError as exc:
            refused += 1
            out(f"error: {item.source}: {item.ref}: {exc.message}")
            continue
        name = stored["metadata"]["name"]
        suffix = f" (generated from {item.generated_from})" if item.generated_from else ""
        out(f"applied {item.kind.lower()}/{name}{suffix}")
        applied.append(doc)
        if is_run:
            tasks.append((stored["metadata"].get("namespace") or "default", name))
    for line in References(client).warnings(applied):
        out(line)
    return tasks, refused


class _Progress:
    """Prints a task's phase changes and each agent step as it is recorded."""

    def __init__(self, name: str, out: Print):
        self.name, self.out = name, out
        self.phase = None
        self.steps = 0

    def __call__(self, task: dict) -> None:
        status = task.get("status") or {}
        phase = status.get("phase") or "Pending"
        if phase != self.phase:
            self.phase = phase
            self.out(f"task/{self.name}: {phase}")
        ends = [r for r in status.get("trace") or [] if r.get("type") == "agent_end"]
        for row in ends[self.steps:]:
            elapsed = f", {row['elapsed_ms']} ms since it was sent" if row.get("elapsed_ms") is not None else ""
            self.out(f"task/{self.name}: agent {row.get('agent', '?')} done "
                     f"({row.get('tokens', 0)} tokens, turn {row.get('latency_ms', 0)} ms{elapsed})")
        self.steps = max(self.steps, len(ends))


def wait_tasks(client: Client, tasks: list[tuple[str, str]], timeout: float, out: Print) -> int:
    """Wait for each task (one shared deadline); returns how many did not succeed."""
    deadline = time.monotonic() + timeout
    bad = 0
    for ns, name in tasks:
        try:
            task = client.wait("task", name, namespace=ns, timeout=max(deadline - time.monotonic(), 0.1),
                               on_update=_Progress(name, out))
        except WaitTimeout as exc:
            out(f"error: {exc.message}")
            bad += 1
            continue
        status = task.get("status") or {}
        if status.get("phase") == "Succeeded":
            final = (status.get("output") or {}).get("final_output", "")
            out(f"task/{name}: Succeeded; final_output: {final}")
        else:
            out(f"error: task/{name} ended {status.get('phase')}: {status.get('lastError') or 'no error recorded'}")
            bad += 1
    return bad


def main(argv: list[str] | None = None, out: Print | None = None) -> int:
    args = _parse(sys.argv[1:] if argv is None else argv)
    out = out or (lambda line: print(line, flush=True))
    from orloj_ray.resources import ManifestError, ManifestErrors

    try:
        plan = plan_apply(args.filename, run=args.run, namespace=args.namespace)
    except (ManifestErrors, ManifestError) as exc:
        errors = getattr(exc, "errors", None) or [exc]
        for err in errors:
            out(f"error: {err}")
        n = len({(getattr(e, "source", ""), getattr(e, "index", None)) for e in errors})  # one line per problem
        out(f"error: {n} invalid document{'s' if n != 1 else ''}; nothing was applied")
        return 2
    for item in plan.objects:
        for warning in item.warnings:
            out(f"warning: {item.source}: document {item.index + 1}: {warning['message']}")
    for item in plan.skipped:
        out(f"skipped task/{item.name} from {item.source}; pass --run to create it")
    with Client(args.server, token=args.api_token) as client:
        try:
            wait_for_server(client, args.server_timeout, out)
            tasks, refused = apply_plan(client, plan.objects, out)
            out(f"{len(plan.objects) - refused} applied" + (f", {refused} refused" if refused else ""))
            if refused:
                return 1
            if not args.wait:
                return 0
            if not tasks:
                out("no tasks to wait for")
                return 0
            failed = wait_tasks(client, tasks, args.timeout, out)
        except OrlojError as exc:
            out(f"error: {exc.message}")
            return 1
    if failed:
        out(f"error: {failed} of {len(tasks)} task{'s' if len(tasks) != 1 else ''} did not succeed")
        return 1
    out(f"{len(tasks)} task{'s' if len(tasks) != 1 else ''} succeeded")
    return 0


if __name__ == "__main__":
    sys.exit(main())

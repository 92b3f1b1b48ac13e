"""``orloj run --follow``: the agents' model output printed as it is written.

The text goes to stderr with the progress lines, so stdout stays the task's result, as
without ``--follow``; it is written as is (no markup: a model may write brackets).
"""

from __future__ import annotations

import sys
import time


def follow_task(client, name: str, namespace: str, timeout: float) -> dict:
    """Print ``name``'s token stream until the task ends; return the finished task. A server
    without the stream (upstream Orloj) gets the plain wait instead."""
    from orloj_ray.errors import NotFound

    deadline = time.monotonic() + timeout
    out = sys.stderr
    turn = None
    try:
        for event, data in client.task_stream(name, namespace=namespace, timeout=timeout):
            if event == "token":
                who = (data.get("agent"), data.get("message_id"), data.get("step"))
                if who != turn:
                    out.write(f"\n── {data.get('agent')} · step {data.get('step')} ──\n")
                    turn = who
                if data.get("restart"):
                    out.write("\n[the model call is retried; its text starts again]\n")
                out.write(str(data.get("delta") or ""))
                out.flush()
            elif event == "turn_end" and turn is not None:
                out.write("\n")
                out.flush()
                turn = None
            elif event == "end":
                break
    except NotFound:
        pass  # no token stream on this server (or no such task: the wait says so)
    return client.wait("task", name, namespace=namespace, timeout=max(deadline - time.monotonic(), 1.0))

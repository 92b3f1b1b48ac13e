"""The task state machine (orloj_ray/lifecycle.py): named transitions, the phases each may
start from, and two properties over random sequences: never two owners, never out of a
terminal phase except by an explicit requeue."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings, strategies as st

from orloj_ray import lifecycle as lc
from orloj_ray.lifecycle import Phase

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)


def task(status: dict | None = None, **spec) -> dict:
    return {"metadata": {"name": "t", "namespace": "default"}, "spec": {"system": "s", **spec},
            "status": status or {}}


def test_a_claim_starts_an_attempt_and_a_takeover_keeps_it():
    claimed = lc.claim(task(), worker="sup:0#a", now=T0)
    assert claimed["phase"] == "Running" and claimed["attempts"] == 1 and claimed["leaseEpoch"] == 1
    assert claimed["claimedBy"] == claimed["assignedWorker"] == "sup:0#a"
    assert claimed["history"][-1]["message"] == "task claimed by worker=sup:0#a lease=30s"
    # a live lease of another supervisor is respected ...
    assert lc.take(task(claimed), worker="sup:1#b", now=T0 + timedelta(seconds=5)) is None
    # ... until it expires, or its holder is known to be gone
    later = lc.take(task(claimed), worker="sup:1#b", now=T0 + timedelta(seconds=31))
    gone = lc.take(task(claimed), worker="sup:1#b", now=T0 + timedelta(seconds=5), dead=frozenset({"sup:0"}))
    for status in (later, gone):
        assert status["attempts"] == 1 and status["leaseEpoch"] == 2 and status["claimedBy"] == "sup:1#b"
        assert status["history"][-1]["type"] == "takeover"
    # a restarted incarnation of the same supervisor takes over at once
    again = lc.take(task(claimed), worker="sup:0#c", now=T0 + timedelta(seconds=1))
    assert again["history"][-1]["message"] == "previous incarnation sup:0#a replaced by sup:0#c"


def test_templates_and_retries_not_yet_due_are_not_claimed():
    assert lc.take(task(mode="template"), worker="w") is None
    waiting = {"phase": "Pending", "nextAttemptAt": "2999-01-01T00:00:00Z"}
    assert lc.take(task(waiting), worker="w") is None
    assert lc.take(task({"phase": "Pending", "nextAttemptAt": "2000-01-01T00:00:00Z"}), worker="w")["attempts"] == 1


def test_schedule_retry_goes_back_to_pending_with_when_and_why():
    running = lc.claim(task(), worker="w#1", now=T0)
    running["output"], running["messages"] = {"x": "1"}, [{"message_id": "m"}]
    status = lc.schedule_retry(running, worker="w#1", code="agent_timeout", error="agent a timed out after 1s",
                               delay_s=2, now=T0)
    assert status["phase"] == "Pending" and status["nextAttemptAt"] == "2026-12-01T12:00:02Z"
    assert status["lastError"] == "agent a timed out after 1s (retry scheduled in 2s)"
    assert "output" not in status and "messages" not in status and "claimedBy" not in status
    assert status["history"][-1]["type"] == "retry_scheduled"
    nxt = lc.claim(task(status), worker="w#1", now=T0 + timedelta(seconds=3))
    assert nxt["attempts"] == 2 and "lastError" not in nxt


@pytest.mark.parametrize("transition", [lc.succeed, lc.pause_for_approval, lc.schedule_retry])
def test_transitions_refuse_phases_they_may_not_start_from(transition):
    kwargs = {"worker": "w", "approval": "a", "error": "e", "code": "c", "delay_s": 1}
    import inspect

    params = inspect.signature(transition).parameters
    with pytest.raises(lc.TransitionRefused):
        transition({"phase": "Pending"}, **{k: v for k, v in kwargs.items() if k in params})
    with pytest.raises(lc.TaskStopped):  # a finished task stops the run that asked
        transition({"phase": "Succeeded"}, **{k: v for k, v in kwargs.items() if k in params})


def test_cancel_fails_any_active_task_and_a_finished_one_stays_finished():
    for phase in ("Pending", "Running", "WaitingApproval"):
        status = lc.cancel({"phase": phase, "claimedBy": "w", "pendingApproval": "x"}, reason="stop")
        assert status["phase"] == "Failed" and status["lastError"] == "stop" and "claimedBy" not in status
    with pytest.raises(lc.TaskStopped):
        lc.cancel({"phase": "DeadLetter"})


def test_succeed_clears_a_resolved_error_but_keeps_its_history():
    status = lc.resume(task({"phase": "WaitingApproval", "lastError": "tool approval required", "attempts": 1}),
                       worker="w#1", message="approved")
    done = lc.succeed(status, worker="w#1")
    assert "lastError" not in done and [h["type"] for h in done["history"]] == ["running", "succeeded"]


def test_the_status_subresource_only_makes_moves_of_the_machine():
    lc.check_status_write(task({"phase": "Running"}), {"phase": "Running"})
    lc.check_status_write(task({"phase": "Pending"}), {"phase": "Failed"})  # a cancel
    lc.check_status_write(task({"phase": "Running"}), {"phase": "Succeeded"})
    with pytest.raises(ValueError, match="is not a task phase"):
        lc.check_status_write(task({}), {"phase": 'k\u00a9\U0002c694"W'})
    with pytest.raises(ValueError):
        lc.check_status_write(task({}), {"phase": 7})
    with pytest.raises(lc.TransitionRefused, match="from Succeeded to Running"):
        lc.check_status_write(task({"phase": "Succeeded"}), {"phase": "Running"})
    with pytest.raises(lc.TransitionRefused, match="from Pending to Succeeded"):
        lc.check_status_write(task({"phase": "Pending"}), {"phase": "Succeeded"})


# -- properties over random histories -------------------------------------------------------------

WORKERS = ("sup:0#a", "sup:0#b", "sup:1#a", "sup:2#a")
OPS = ("claim", "renew", "release", "pause", "resume", "retry", "succeed", "fail", "dead_letter", "cancel",
       "requeue")


def _apply(status: dict, op: str, worker: str, epoch, now: datetime, dead: frozenset[str]) -> dict:
    """One step by ``worker``, which believes it holds ``epoch`` (its last claim's)."""
    if op == "claim":
        out = lc.take(task(status), worker=worker, now=now, dead=dead)
        if out is None:
            raise lc.TransitionRefused(op, lc.phase_of(status))
        return out
    if op == "resume":
        return lc.resume(task(status), worker=worker, message="approved", now=now)
    if op == "cancel":
        return lc.cancel(status, now=now)
    if op == "requeue":
        return lc.requeue(status, now=now)
    lc.check_owner(status, worker, epoch, op)  # what the recorder checks before every write
    return {
        "renew": lambda: lc.renew(status, now=now),
        "release": lambda: lc.release(status, worker=worker, now=now),
        "pause": lambda: lc.pause_for_approval(status, worker=worker, approval="a", error="e", now=now),
        "retry": lambda: lc.schedule_retry(status, worker=worker, code="c", error="e", delay_s=1, now=now),
        "succeed": lambda: lc.succeed(status, worker=worker, now=now),
        "fail": lambda: lc.fail(status, worker=worker, code="c", message="m", now=now),
        "dead_letter": lambda: lc.fail(status, worker=worker, code="c", message="m", dead_letter=True, now=now),
    }[op]()


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(OPS), st.sampled_from(WORKERS), st.integers(0, 40),
                          st.sets(st.sampled_from(("sup:0", "sup:1", "sup:2")), max_size=1)),
                min_size=1, max_size=40))
def test_never_two_owners_and_never_out_of_a_terminal_phase_unasked(steps):
    status: dict = {}
    held: dict[str, object] = {}  # worker -> the epoch it last claimed under
    now = T0
    for op, worker, seconds, dead in steps:
        now += timedelta(seconds=seconds)
        before = lc.phase_of(status)
        try:
            after = _apply(status, op, worker, held.get(worker), now, frozenset(dead))
        except lc.TransitionRefused:
            continue  # refused: nothing changes
        assert lc.phase_of(after) in lc.PHASES
        if before in lc.TERMINAL:
            assert op == "requeue", f"{op} left the terminal phase {before}"
        if op in ("claim", "resume"):
            held[worker] = after["leaseEpoch"]
            # the epoch only grows: every earlier holder is fenced off from now on
            assert all(e is None or e < after["leaseEpoch"] for w, e in held.items() if w != worker)
        if lc.phase_of(after) == Phase.RUNNING.value:
            owners = [w for w, e in held.items() if e == after["leaseEpoch"] and after.get("claimedBy") == w]
            assert owners == [after["claimedBy"]]
        else:
            assert not any(after.get(k) for k in lc.LEASE_FIELDS)  # nobody holds a task that is not Running
        status = after

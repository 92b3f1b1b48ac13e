"""Graph routing (orloj_ray/engine/routing.py), pure: what an arriving message means and what a
turn sends on, for pipelines, fan-out, joins, loops and failed branches."""

from __future__ import annotations

from orloj_ray.engine.routing import Absorbed, Activate, Done, FailTask, Router, Run, Wait
from orloj_ray.graph import Graph
from orloj_ray.messaging import Envelope, message_id


def router(graph: dict, agents: list[str], *, max_turns: int = 0) -> Router:
    def envelope(src, dst, hop, branch, content, **fields):
        return Envelope(message_id("ns", "t", 1, hop, src, dst), dst, from_agent=src, namespace="ns", task="t",
                        branch_id=branch, payload=content, hop=hop, **fields)

    return Router(Graph.from_spec({"agents": agents, "graph": graph}), max_turns=max_turns, envelope=envelope)


def test_a_pipeline_forwards_hop_by_hop_on_one_branch():
    r = router({"a": {"next": "b"}, "b": {"next": "c"}}, ["a", "b", "c"])
    (kick,) = r.kickoff("topic")
    assert (kick.from_agent, kick.to_agent, kick.branch_id, kick.hop, kick.type) == ("system", "a", "b001", 1,
                                                                                      "task_start")
    arrival = r.arrive(kick)
    assert isinstance(arrival, Run) and arrival.inbox == [kick] and arrival.turns == 1
    (to_b,) = r.forward(kick, "a says", arrival.turns)
    assert (to_b.to_agent, to_b.branch_id, to_b.hop, to_b.payload, to_b.parent_id) == (
        "b", "b001", 2, "a says", kick.message_id)
    (to_c,) = r.forward(to_b, "b says", 1)
    assert to_c.hop == 3 and r.forward(to_c, "c says", 1) == []


def test_fan_out_makes_child_branches_and_a_join_waits_then_runs_once_with_inputs_in_graph_order():
    r = router({"m": {"edges": [{"to": "x"}, {"to": "y"}]}, "x": {"next": "j"}, "y": {"next": "j"}}, ["m", "x", "y", "j"])
    (kick,) = r.kickoff("go")
    to_x, to_y = r.forward(kick, "plan", 1)
    assert (to_x.branch_id, to_y.branch_id) == ("b001.001", "b001.002")
    assert to_x.parent_branch_id == "b001"
    (from_y,) = r.forward(to_y, "y out", 1)
    (from_x,) = r.forward(to_x, "x out", 1)
    wait = r.arrive(from_y)  # y arrives first
    assert isinstance(wait, Wait) and (wait.node, wait.received, wait.join.required) == ("j", 1, 2)
    run = r.arrive(from_x)
    assert isinstance(run, Run) and run.join is not None and run.join.activated_by == from_x.message_id
    assert [e.from_agent for e in run.inbox] == ["x", "y"]  # declaration order, not arrival order
    assert r.arrive(from_y) == Done("join_already_activated")


def test_max_turns_bounds_a_loop_per_branch():
    r = router({"a": {"next": "b"}, "b": {"next": "a"}}, ["a", "b"], max_turns=3)
    env = r.kickoff("loop")[0]
    turns = []
    for _ in range(5):
        arrival = r.arrive(env)
        if isinstance(arrival, Done):
            turns.append(arrival.why)
            break
        r.turn_started(env)
        turns.append(env.to_agent)
        nxt = r.forward(env, "out", arrival.turns)
        if not nxt:
            break
        env = nxt[0]
    assert turns == ["a", "b", "a"]  # the third turn is the branch's last: it sends nothing on


def test_a_failed_branch_is_absorbed_only_by_a_tolerant_join_downstream():
    graph = {"m": {"edges": [{"to": "x"}, {"to": "y"}]}, "x": {"next": "j"}, "y": {"next": "j"},
             "j": {"join": {"on_failure": "skip"}}}
    r = router(graph, ["m", "x", "y", "j"])
    (kick,) = r.kickoff("go")
    to_x, to_y = r.forward(kick, "plan", 1)
    assert r.branch_failed("y") == Absorbed("j", "skip")  # j now waits for x alone
    (from_x,) = r.forward(to_x, "x out", 1)
    run = r.arrive(from_x)
    assert isinstance(run, Run) and [e.from_agent for e in run.inbox] == ["x"]
    # with both branches dead there is nothing left to join
    r2 = router(graph, ["m", "x", "y", "j"])
    r2.forward(r2.kickoff("go")[0], "plan", 1)
    assert r2.branch_failed("x") == Absorbed("j", "skip")
    failed = r2.branch_failed("y")
    assert isinstance(failed, FailTask) and failed.node == "j" and "every branch" in failed.reason
    # without a tolerant join the task fails
    r3 = router({"a": {"next": "b"}}, ["a", "b"])
    assert r3.branch_failed("a") == FailTask()


def test_continue_partial_runs_the_join_at_once_with_what_arrived():
    graph = {"m": {"edges": [{"to": "x"}, {"to": "y"}]}, "x": {"next": "j"}, "y": {"next": "j"},
             "j": {"join": {"on_failure": "continue_partial"}}}
    r = router(graph, ["m", "x", "y", "j"])
    to_x, to_y = r.forward(r.kickoff("go")[0], "plan", 1)
    (from_x,) = r.forward(to_x, "x out", 1)
    assert isinstance(r.arrive(from_x), Wait)
    activate = r.branch_failed("y")
    assert isinstance(activate, Activate) and activate.trigger.message_id == from_x.message_id
    run = r.arrive(activate.trigger)
    assert isinstance(run, Run) and [e.from_agent for e in run.inbox] == ["x"]


def test_restore_rebuilds_joins_and_branch_turns_from_the_record():
    r = router({"m": {"edges": [{"to": "x"}, {"to": "y"}]}, "x": {"next": "j"}, "y": {"next": "j"}},
               ["m", "x", "y", "j"])
    to_x, to_y = r.forward(r.kickoff("go")[0], "plan", 1)
    (from_x,) = r.forward(to_x, "x out", 1)
    record = {"message_id": from_x.message_id, "from_agent": "x", "to_agent": "j", "branch_id": from_x.branch_id,
              "content": "x out", "outcome": "join_wait"}
    fresh = router({"m": {"edges": [{"to": "x"}, {"to": "y"}]}, "x": {"next": "j"}, "y": {"next": "j"}},
                   ["m", "x", "y", "j"])
    fresh.restore([record], [{"node": "j", "quorum_required": 2, "mode": "wait_for_all",
                              "sources": [{"message_id": from_x.message_id}]}],
                  lambda rec: Envelope(rec["message_id"], rec["to_agent"], from_agent=rec["from_agent"],
                                       branch_id=rec["branch_id"], payload=rec["content"]))
    (from_y,) = r.forward(to_y, "y out", 1)
    run = fresh.arrive(from_y)
    assert isinstance(run, Run) and [e.from_agent for e in run.inbox] == ["x", "y"]

"""AgentSystem graph semantics: order, entry points, joins and cycles."""

import pytest

from orloj_ray.graph import Graph, GraphError, Join


def spec(agents, graph=None):
    return {"agents": agents, "graph": graph or {}}


def test_pipeline_order_follows_edges_not_declaration():
    g = Graph.from_spec(spec(["c", "a", "b"], {"a": {"edges": [{"to": "b"}]}, "b": {"next": "c"}}))
    assert g.entry_agents() == ["a"]
    assert g.topological_order() == ["a", "b", "c"]


def test_no_graph_means_declaration_order_pipeline():
    g = Graph.from_spec(spec(["x", "y", "z"]))
    assert g.successors == {"x": ["y"], "y": ["z"], "z": []}


def test_fan_out_and_join_gate():
    g = Graph.from_spec(spec(["m", "l1", "l2", "e"], {
        "m": {"edges": [{"to": "l1"}, {"to": "l2"}]},
        "l1": {"edges": [{"to": "e"}]}, "l2": {"edges": [{"to": "e"}]},
        "e": {"join": {"mode": "wait_for_all"}},
    }))
    assert g.successors["m"] == ["l1", "l2"]
    assert g.join_for("e") == Join()
    assert g.join_for("l1") is None
    assert g.topological_order()[-1] == "e"


@pytest.mark.parametrize("join,expected,required", [
    (Join(), 3, 3),
    (Join(mode="quorum", quorum_count=2), 3, 2),
    (Join(mode="quorum", quorum_percent=50), 3, 2),
    (Join(mode="quorum"), 3, 3),
    (Join(mode="quorum", quorum_count=9), 3, 3),
])
def test_join_required(join, expected, required):
    assert join.required(expected) == required


def test_duplicate_routes_are_collapsed_case_insensitively():
    g = Graph.from_spec(spec(["a", "b"], {"a": {"next": "b", "edges": [{"to": "b"}, {"to": "B"}]}}))
    assert g.successors["a"] == ["b"]


def test_errors_name_the_node_and_edge():
    with pytest.raises(GraphError) as err:
        Graph.from_spec(spec(["a"], {"a": {"edges": [{"to": "ghost"}]}, "zz": {}}))
    assert 'graph edge "a" -> "ghost" points to unknown agent' in str(err.value)
    assert 'graph node "zz" is not listed in spec.agents' in str(err.value)


def test_bad_join_values_are_rejected():
    with pytest.raises(GraphError, match="quorum_percent must be within 0..100"):
        Graph.from_spec(spec(["a", "b"], {"a": {"next": "b"}, "b": {"join": {"mode": "quorum", "quorum_percent": 150}}}))


def test_cycle_needs_max_turns_and_message_names_it():
    g = Graph.from_spec(spec(["m", "r"], {"m": {"next": "r"}, "r": {"next": "m"}}))
    assert g.find_cycle() == ["m", "r", "m"]
    with pytest.raises(GraphError, match=r"cycle \(m -> r -> m\); set task.spec.max_turns > 0"):
        g.check_runnable(0)
    g.check_runnable(4)
    assert g.entry_agents() == ["m"]  # a pure cycle starts at the first declared agent


def test_empty_system_is_an_error():
    with pytest.raises(GraphError, match="no spec.agents"):
        Graph.from_spec(spec([]))

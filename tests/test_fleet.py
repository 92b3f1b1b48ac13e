"""The agent fleet's rules (orloj_ray/engine/fleet.py): what is reclaimed, when, and where a new
actor goes under the per-node cap. Pure; the Ray side is tests/test_agent_pool.py."""

from __future__ import annotations

import pytest

from orloj_ray.config import ConfigError, ServerConfig, parse_idle_ttl
from orloj_ray.engine.fleet import ActorInfo, FleetSettings, default_cap, make_room, reclaims


def actor(agent="a", *, replica=0, node="n1", inflight=0, idle_s=0.0, ns="team", reqs=None, name=None, turns=1):
    return ActorInfo(name=name or f"orloj:agent:{ns}:{agent}" + (f"#{replica}" if replica else ""), namespace=ns,
                     agent=agent, replica=replica, node_id=node, inflight=inflight, idle_s=idle_s,
                     agent_requirements=reqs or {}, turns=turns)


def agent(name="a", **spec):
    return {"metadata": {"name": name, "namespace": "team"}, "spec": spec}


def reasons(actors, agents, **settings):
    return sorted((a.name, why) for a, why in reclaims(actors, agents, FleetSettings(**settings)))


def test_a_deleted_agents_actors_go_even_while_busy():
    busy = actor(inflight=2)
    assert reasons([busy], {}) == [(busy.name, "deleted")]


def test_idle_actors_go_after_the_ttl_and_never_with_ttl_zero():
    fresh, stale, busy = actor("a", idle_s=30), actor("b", idle_s=700), actor("c", idle_s=900, inflight=1)
    agents = {("team", n): agent(n) for n in "abc"}
    assert reasons([fresh, stale, busy], agents, idle_ttl_s=600) == [(stale.name, "idle")]
    assert reasons([fresh, stale, busy], agents, idle_ttl_s=0) == []


def test_a_placement_change_reclaims_actors_made_for_the_old_placement():
    old = actor(reqs={"region": "eu-west"})
    assert reasons([old], {("team", "a"): agent(requirements={"region": "us-east"})}) == [(old.name, "placement_changed")]
    assert reasons([old], {("team", "a"): agent(requirements={"region": "EU-West"})}) == []  # same region


def test_scale_down_takes_only_the_newest_idle_replica_above_the_minimum():
    spec = {"autoscaling": {"min_replicas": 1, "max_replicas": 3, "scale_down_after": "30s"}}
    r0, r1, r2 = actor(idle_s=100), actor(replica=1, idle_s=100), actor(replica=2, idle_s=40)
    assert reasons([r0, r1, r2], {("team", "a"): agent(**spec)}, idle_ttl_s=0) == [(r2.name, "scaled_down")]
    r2.inflight = 1
    assert reasons([r0, r1, r2], {("team", "a"): agent(**spec)}, idle_ttl_s=0) == []
    # the minimum is kept by scale-down; only the idle TTL takes an agent to zero
    assert reasons([r0], {("team", "a"): agent(**spec)}, idle_ttl_s=50) == [(r0.name, "idle")]


def test_room_goes_to_the_freest_node_then_to_the_lru_idle_actor_then_waits():
    caps = {"n1": 2, "n2": 2}
    one = [actor("x", node="n1")]
    assert make_room(["n1", "n2"], one, caps).node_id == "n2"
    full = [actor("x", node="n1", idle_s=5), actor("y", node="n1", idle_s=50, inflight=1),
            actor("z", node="n2", idle_s=20), actor("w", node="n2", idle_s=1)]
    room = make_room(["n1", "n2"], full, caps)
    assert (room.node_id, room.evict.agent) == ("n2", "z")  # idle longest; y is busier but not idle
    # an actor waiting for its first turn, or idle only a moment, is not taken: its turn is on the way
    fresh = [actor("x", node="n1", idle_s=9, turns=0), actor("y", node="n1", idle_s=0.2),
             actor("z", node="n2", inflight=1), actor("w", node="n2", inflight=1)]
    assert make_room(["n1", "n2"], fresh, caps).wait
    for a in full:
        a.inflight = 1
    room = make_room(["n1", "n2"], full, caps)
    assert room.node_id == "" and room.evict is None
    assert "at its agent actor cap with no idle actor" in room.wait and "n1 2/2" in room.wait
    assert make_room([], [], caps).wait


def test_the_default_cap_follows_node_memory():
    assert default_cap(24 * 1024**3) == 76
    assert default_cap(512 * 1024**2) == 4
    assert FleetSettings(max_actors_per_node=3).cap(24 * 1024**3) == 3


def test_fleet_settings_are_server_settings_with_clear_errors():
    config = ServerConfig.from_env({"ORLOJ_AGENT_IDLE_TTL": "90s", "ORLOJ_MAX_AGENT_ACTORS": "12",
                                    "ORLOJ_SUPERVISORS": "3"})
    assert (parse_idle_ttl(config.agent_idle_ttl), config.max_agent_actors, config.supervisors) == (90, 12, 3)
    assert parse_idle_ttl("0") == 0 and parse_idle_ttl("10m") == 600
    with pytest.raises(ConfigError, match="ORLOJ_AGENT_IDLE_TTL"):
        ServerConfig.from_env({"ORLOJ_AGENT_IDLE_TTL": "soon"})
    with pytest.raises(ConfigError, match="ORLOJ_MAX_AGENT_ACTORS"):
        ServerConfig.from_env({"ORLOJ_MAX_AGENT_ACTORS": "-1"})
    with pytest.raises(ConfigError, match="--supervisors"):
        ServerConfig(supervisors=0)

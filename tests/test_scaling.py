"""Replica decisions: fixed replicas spread load, autoscaling adds replicas with mailbox depth."""

import pytest

from orloj_ray.engine.scaling import Scaling


def test_defaults_are_one_replica():
    s = Scaling.for_agent({"spec": {}})
    assert (s.min_replicas, s.max_replicas) == (1, 1)
    assert s.pick([5]) == 0  # never more than one


def test_fixed_replicas_take_the_least_loaded():
    s = Scaling.for_agent({"spec": {"replicas": 2}})
    assert (s.min_replicas, s.max_replicas) == (2, 2)
    assert s.pick([0, 0]) == 0 and s.pick([1, 0]) == 1 and s.pick([3, 3]) == 0


def test_autoscaling_adds_replicas_with_depth_up_to_the_maximum():
    s = Scaling.for_agent({"spec": {"autoscaling": {"min_replicas": 1, "max_replicas": 3, "target_inflight": 2}}})
    assert s.pick([0]) == 0 and s.pick([1]) == 0
    assert s.pick([2]) == 1  # a third turn on one replica passes the target of 2
    assert s.pick([2, 2]) == 2
    assert s.pick([2, 2, 2]) == 0  # at the maximum: least loaded
    assert s.desired(0, 3) == 3  # never shrinks below what runs


def test_scale_down_removes_only_the_newest_idle_replica_above_the_minimum():
    scaling = Scaling.for_agent({"spec": {"autoscaling": {"min_replicas": 1, "max_replicas": 3,
                                                          "scale_down_after": "30s"}}})
    assert scaling.scale_down_after_s == 30
    assert scaling.removable([0, 0, 0], [99, 99, 99]) == 2
    assert scaling.removable([0, 0, 1], [99, 99, 0]) is None  # the newest is busy: keep the indices dense
    assert scaling.removable([0, 0], [99, 10]) is None  # not idle long enough
    assert scaling.removable([0], [999]) is None  # never below min_replicas
    assert Scaling.for_agent({"spec": {"replicas": 2}}).removable([0, 0], [999, 999]) is None  # fixed count


def test_a_bad_scale_down_duration_names_the_field():
    from orloj_ray.resources import normalize

    doc = {"apiVersion": "orloj.dev/v1", "kind": "Agent", "metadata": {"name": "a"},
           "spec": {"model_ref": "m", "autoscaling": {"max_replicas": 2, "scale_down_after": "soon"}}}
    with pytest.raises(Exception, match="spec.autoscaling.scale_down_after"):
        normalize(doc)

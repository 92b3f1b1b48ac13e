"""Replica decisions: fixed replicas spread load, autoscaling adds replicas with mailbox depth."""

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

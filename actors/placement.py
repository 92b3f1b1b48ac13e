"""Ray side of placement: what the nodes offer, and actor options that honour requirements.

Node conventions (what ``cluster/multinode.py`` sets, and what to set on your own nodes):

* region: the node label ``orloj.dev/region=<region>`` (``ray start --labels``,
  ``ray.init(labels=...)``, KubeRay ``rayStartParams``). A node without it is region ``default``.
* GPU: Ray's own ``GPU`` resource (``--num-gpus``); nothing to add.
* models: one custom resource per supported model, ``orloj.dev/model:<name>`` (any amount;
  ``--resources '{"orloj.dev/model:gpt-4o": 1000}'``). No such resource means "any model".
  Ray label values cannot hold a list (no commas, at most 63 characters of ``[A-Za-z0-9_.-]``,
  so no ``/`` or ``:`` either), while resource names can hold any model name.

Actor options (``actor_options``), computed against the live nodes when the actor is created,
so they select exactly the nodes ``feasible`` accepted:

* region: ``label_selector`` on ``orloj.dev/region``: ``in(<the spellings present>)`` since
  labels compare case-sensitively; for ``default``, ``!in(<every other region>)``, which also
  matches nodes with no region label. ``label_selector`` works for ``num_cpus=0`` actors;
  ``NodeLabelSchedulingStrategy`` does not (Ray issue 41824).
* gpu and model: ``label_selector`` on Ray's built-in ``ray.io/node-id`` label excluding the
  live nodes without a GPU, or with a model list that lacks the model. The actor takes no
  slice of a GPU (a fractional ``num_gpus`` would block whole-GPU work on that device).
  A node that joins later is not excluded.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from actors import agent_actor_name
from orloj_ray.engine.placement import NodeInfo, Requirements, feasible, gpu_matches, model_matches, region_matches

REGION_LABEL = "orloj.dev/region"
MODEL_RESOURCE_PREFIX = "orloj.dev/model:"
MODEL_RESOURCE_AMOUNT = 1000.0
"""What ``node_resources`` advertises per model; the amount is not consumed by agent actors."""
NODE_ID_LABEL = "ray.io/node-id"


# -- describing nodes -----------------------------------------------------------------------------

def node_labels(region: str = "") -> dict[str, str]:
    """Labels to start a node with for ``region`` (none for the default region)."""
    return {REGION_LABEL: region} if region and region.lower() != "default" else {}


def node_resources(models: Iterable[str] = ()) -> dict[str, float]:
    """Custom resources to start a node with that supports exactly ``models`` (none: any)."""
    return {f"{MODEL_RESOURCE_PREFIX}{m}": MODEL_RESOURCE_AMOUNT for m in models if m}


def node_info(raw: Mapping[str, Any]) -> NodeInfo:
    """One entry of ``ray.nodes()`` as a ``NodeInfo``."""
    labels = dict(raw.get("Labels") or {})
    resources = raw.get("Resources") or {}
    models = tuple(sorted(k[len(MODEL_RESOURCE_PREFIX):] for k in resources if k.startswith(MODEL_RESOURCE_PREFIX)))
    return NodeInfo(
        node_id=str(raw.get("NodeID", "")),
        alive=bool(raw.get("Alive", raw.get("alive", False))),
        region=str(labels.get(REGION_LABEL, "")).strip(),
        gpus=float(resources.get("GPU", 0.0)),
        models=models,
        labels=labels,
        cpus=float(resources.get("CPU", 0.0)),
        address=str(raw.get("NodeManagerAddress", "")),
    )


def nodes() -> list[NodeInfo]:
    """The cluster's nodes, alive and dead, from the GCS (``ray.nodes()``: milliseconds)."""
    import ray

    return [node_info(n) for n in ray.nodes()]


# -- options for an actor ---------------------------------------------------------------------------

class Infeasible(ValueError):
    pass


def _in(values: Iterable[str], negate: bool = False) -> str:
    return ("!" if negate else "") + "in(" + ",".join(sorted(set(values))) + ")"


def actor_options(req: Requirements, nodes: Iterable[NodeInfo]) -> dict:
    """Ray actor options (``label_selector``) placing an actor on nodes meeting ``req``.

    ``nodes`` are the live nodes (``nodes()``); raises ``Infeasible`` with the reason when none
    meets the requirements. ``{}`` for no requirements.
    """
    nodes = [n for n in nodes if n.alive]
    if req.empty:
        return {}
    ok, reason = feasible(req, nodes)
    if not ok:
        raise Infeasible(reason)
    selector: dict[str, str] = {}
    if req.region:
        labelled = {n.region for n in nodes if n.region}
        if req.region.lower() == "default":
            others = {r for r in labelled if r.lower() != "default"}
            if others:
                selector[REGION_LABEL] = _in(others, negate=True)
        else:
            selector[REGION_LABEL] = _in(r for r in labelled if r.lower() == req.region.lower())
    excluded = {n.node_id for n in nodes
                if region_matches(req, n) and not (gpu_matches(req, n) and model_matches(req, n))}
    if excluded:
        selector[NODE_ID_LABEL] = _in(excluded, negate=True)
    return {"label_selector": selector} if selector else {}


def placed_actor_name(namespace: str, agent: str, klass: str = "") -> str:
    """``orloj:agent:<ns>:<agent>`` for no requirements, ``...:<placement class>`` otherwise."""
    base = agent_actor_name(namespace, agent)
    return f"{base}:{klass}" if klass else base


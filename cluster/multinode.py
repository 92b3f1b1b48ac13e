"""``python -m cluster.multinode``: a local multi-node Ray cluster on loopback, for trying
placement by region, GPU and model on one machine (and for the test suite).

    python -m cluster.multinode --regions default,eu-west --gpu-node --gpu-models gpt-4o

starts a head node for the first region, one node for each further region, and optionally a
fake-GPU node (Ray's ``--num-gpus``, no real device) supporting the given models. It prints
one JSON line with the GCS address and the nodes, then runs until SIGINT/SIGTERM, and on the
way out removes exactly the nodes it started (never ``ray stop``). Join it from another shell:

    orloj up --address 127.0.0.1:<port>

It uses ``ray.cluster_utils.Cluster``: every node is a set of processes of this one on
127.0.0.1 (``ray start`` for extra nodes does not work with the loopback setting, see
``cluster/ray_env.py``). Each cluster gets its own Ray temp folder (``RAY_TMPDIR``), so its
"current cluster" address file never redirects another ``ray.init()`` on the machine.
Node conventions (labels, model resources) are those of ``actors/placement.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field

from actors.placement import node_labels, node_resources
from cluster.ray_env import apply_local_env

HEAD = "head"


@dataclass(frozen=True)
class NodeSpec:
    name: str
    region: str = "default"
    cpus: float = 1
    gpus: float = 0
    models: tuple[str, ...] = ()
    """Models the node supports; empty: any model."""


def plan(regions: list[str] | tuple[str, ...] = ("default",), *, gpu_node: bool = False,
         gpu_region: str = "default", gpu_models: tuple[str, ...] = (), head_cpus: float = 2,
         node_cpus: float = 1) -> list[NodeSpec]:
    """The nodes for ``regions`` (the head takes the first) plus an optional fake-GPU node."""
    regions = [r.strip() for r in regions if r.strip()] or ["default"]
    specs = [NodeSpec(HEAD, regions[0], cpus=head_cpus)]
    specs += [NodeSpec(f"region-{r}", r, cpus=node_cpus) for r in regions[1:]]
    if gpu_node:
        specs.append(NodeSpec("gpu", gpu_region, cpus=node_cpus, gpus=1, models=tuple(gpu_models)))
    return specs


@dataclass
class LocalCluster:
    """A running ``cluster_utils.Cluster`` and the names of its nodes."""

    cluster: object
    address: str
    temp_dir: str
    specs: dict[str, NodeSpec]
    node_ids: dict[str, str] = field(default_factory=dict)
    _saved_tmpdir: str | None = None

    def describe(self) -> dict:
        return {"address": self.address, "temp_dir": self.temp_dir,
                "nodes": [{"name": n, "node_id": self.node_ids[n], "region": s.region, "cpus": s.cpus, "gpus": s.gpus,
                           "models": list(s.models)} for n, s in self.specs.items()]}

    def shutdown(self) -> None:
        """Disconnect this process if attached, then remove every node and the temp folder."""
        import ray

        if ray.is_initialized():
            ray.shutdown()
        try:
            self.cluster.shutdown()
        finally:
            if self._saved_tmpdir is None:
                os.environ.pop("RAY_TMPDIR", None)
            else:
                os.environ["RAY_TMPDIR"] = self._saved_tmpdir
            shutil.rmtree(self.temp_dir, ignore_errors=True)


def start(specs: list[NodeSpec], *, temp_dir: str | None = None, wait_s: float = 60.0) -> LocalCluster:
    """Start the nodes on 127.0.0.1 (the first is the head) and wait until all are alive."""
    apply_local_env()
    from ray.cluster_utils import Cluster

    if not specs:
        raise ValueError("a cluster needs at least a head node")
    temp_dir = temp_dir or tempfile.mkdtemp(prefix="orloj-mn-", dir="/tmp")
    saved = os.environ.get("RAY_TMPDIR")
    os.environ["RAY_TMPDIR"] = temp_dir  # Ray writes its current-cluster file under here, not /tmp/ray
    cluster = None
    try:
        def args(spec: NodeSpec) -> dict:
            return {"num_cpus": spec.cpus, "num_gpus": spec.gpus, "node_ip_address": "127.0.0.1",
                    "labels": node_labels(spec.region), "resources": node_resources(spec.models)}

        head = specs[0]
        cluster = Cluster(initialize_head=True, head_node_args={"include_dashboard": False, **args(head)})
        nodes = {head.name: cluster.head_node}
        for spec in specs[1:]:
            nodes[spec.name] = cluster.add_node(**args(spec))
        cluster.wait_for_nodes(timeout=wait_s)
    except BaseException:
        if cluster is not None:
            cluster.shutdown()
        if saved is None:
            os.environ.pop("RAY_TMPDIR", None)
        else:
            os.environ["RAY_TMPDIR"] = saved
        shutil.rmtree(temp_dir, ignore_errors=True)
        raise
    return LocalCluster(cluster=cluster, address=cluster.address, temp_dir=temp_dir,
                        specs={s.name: s for s in specs}, node_ids={n: node.node_id for n, node in nodes.items()},
                        _saved_tmpdir=saved)


def _parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m cluster.multinode", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--regions", default="default",
                   help="comma list; the head takes the first, each other region gets a node (default: default)")
    p.add_argument("--gpu-node", action="store_true", help="add a node with one fake GPU")
    p.add_argument("--gpu-region", default="default", help="region of the GPU node (default: default)")
    p.add_argument("--gpu-models", default="", help="comma list of models the GPU node supports (default: any)")
    p.add_argument("--head-cpus", type=float, default=2)
    p.add_argument("--node-cpus", type=float, default=1)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse(sys.argv[1:] if argv is None else argv)
    specs = plan(args.regions.split(","), gpu_node=args.gpu_node, gpu_region=args.gpu_region,
                 gpu_models=tuple(m.strip() for m in args.gpu_models.split(",") if m.strip()),
                 head_cpus=args.head_cpus, node_cpus=args.node_cpus)
    started = time.monotonic()
    local = start(specs)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        info = local.describe()
        info["started_s"] = round(time.monotonic() - started, 1)
        print(json.dumps(info), flush=True)
        print(f"Ray cluster up at {local.address}; join it with: orloj up --address {local.address}  "
              f"(Ctrl-C stops it)", file=sys.stderr, flush=True)
        while not stop.wait(1.0):
            pass
    finally:
        local.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())

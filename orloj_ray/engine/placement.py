"""Where an agent may run: requirements, placement classes and feasibility (no Ray here).

A Task's ``spec.requirements`` (region, gpu, model; resources.md section 12) says which
workers may run it. orloj-ray also reads the same block on an Agent (``spec.requirements``,
our extension); the agent's fields win where it sets them. The merged ``Requirements`` decide
the agent's *placement class*, a short stable key (``region=eu-west,gpu,model=gpt-4o``, or
``""`` for no requirements): actors are keyed by (namespace, agent, placement class).

``feasible`` applies upstream's matching rules (execution.md section 3.1, ``taskMatchesWorker``)
to the live nodes, described as ``NodeInfo``:

* region: equal ignoring case; a node without a region is region ``default``;
* gpu: the node has GPUs;
* model: in the node's supported models, unless that list is empty (any model).

Reading nodes from Ray and turning requirements into actor options is ``actors/placement.py``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

DEFAULT_REGION = "default"
"""The region of a node that declares none (upstream's worker binary registers ``default``)."""

HEARTBEAT_STALE_S = 20.0
"""A Worker whose ``lastHeartbeat`` is older than this is ``NotReady`` (execution.md 3.5)."""
WORKER_STOPPED = "worker stopped"


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def _flag(value: Any) -> bool | None:
    """A set boolean, or None when unset. Accepts YAML-ish strings (``"true"``)."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return value.strip().lower() in ("true", "yes", "1", "on")
    return bool(value)


@dataclass(frozen=True)
class Requirements:
    region: str = ""
    gpu: bool = False
    model: str = ""

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any] | None) -> Requirements:
        doc = doc or {}
        return cls(region=_text(doc.get("region")), gpu=bool(_flag(doc.get("gpu"))), model=_text(doc.get("model")))

    @classmethod
    def merge(cls, task: Mapping[str, Any] | None, agent: Mapping[str, Any] | None = None) -> Requirements:
        """The task's requirements with the agent's on top: an agent field wins where it is set
        (a non-empty region or model, a ``gpu`` key with a boolean)."""
        base = cls.from_dict(task)
        agent = agent or {}
        gpu = _flag(agent.get("gpu"))
        return cls(region=_text(agent.get("region")) or base.region,
                   gpu=base.gpu if gpu is None else gpu,
                   model=_text(agent.get("model")) or base.model)

    @classmethod
    def for_agent(cls, task_requirements: Mapping[str, Any] | None, agent: Mapping[str, Any]) -> Requirements:
        """Requirements of one turn: the task's block merged with the Agent resource's."""
        return cls.merge(task_requirements, (agent.get("spec") or {}).get("requirements"))

    @property
    def empty(self) -> bool:
        return not (self.region or self.gpu or self.model)

    def describe(self) -> str:
        return placement_class(self) or "none"


def placement_class(req: Requirements) -> str:
    """Stable key of the requirements: ``region=<lower-case>,gpu,model=<name>``, ``""`` for none.

    Regions match ignoring case, so ``EU-West`` and ``eu-west`` share a class; models match
    exactly.
    """
    parts = []
    if req.region:
        parts.append(f"region={req.region.lower()}")
    if req.gpu:
        parts.append("gpu")
    if req.model:
        parts.append(f"model={req.model}")
    return ",".join(parts)


@dataclass(frozen=True)
class NodeInfo:
    """One cluster node as placement sees it."""

    node_id: str
    alive: bool = True
    region: str = ""
    """``""`` when the node declares none; it then counts as ``default``."""
    gpus: float = 0.0
    models: tuple[str, ...] = ()
    """Supported models; empty means any model."""
    labels: Mapping[str, str] = field(default_factory=dict)
    cpus: float = 0.0
    address: str = ""

    @property
    def effective_region(self) -> str:
        return self.region or DEFAULT_REGION

    def matches(self, req: Requirements) -> bool:
        return (self.alive and region_matches(req, self) and gpu_matches(req, self)
                and model_matches(req, self))


def region_matches(req: Requirements, node: NodeInfo) -> bool:
    return not req.region or node.effective_region.lower() == req.region.lower()


def gpu_matches(req: Requirements, node: NodeInfo) -> bool:
    return not req.gpu or node.gpus > 0


def model_matches(req: Requirements, node: NodeInfo) -> bool:
    return not req.model or not node.models or req.model in node.models


def matching_nodes(req: Requirements, nodes: Iterable[NodeInfo]) -> list[NodeInfo]:
    return [n for n in nodes if n.matches(req)]


def _names(values: Iterable[str]) -> str:
    found = sorted(set(values))
    return ", ".join(found) if found else "none"


def feasible(req: Requirements, nodes: Iterable[NodeInfo]) -> tuple[bool, str]:
    """Whether some alive node meets every requirement; if not, why (the first unmet one,
    checked in the order region, gpu, model, and what the candidate nodes offer)."""
    alive = [n for n in nodes if n.alive]
    if not alive:
        return False, "no alive node in the cluster"
    if req.empty:
        return True, ""
    where = ""
    candidates = alive
    if req.region:
        candidates = [n for n in alive if region_matches(req, n)]
        if not candidates:
            regions = _names(n.effective_region for n in alive)
            return False, f'no alive node has region "{req.region}" (regions: {regions})'
        where = f' in region "{req.region}"'
    if req.gpu:
        with_gpu = [n for n in candidates if n.gpus > 0]
        if not with_gpu:
            elsewhere = _names(n.effective_region for n in alive if n.gpus > 0)
            offer = f"regions with GPU nodes: {elsewhere}" if elsewhere != "none" else "no node has a GPU"
            return False, f"no alive node{where} has a GPU ({offer})"
        candidates = with_gpu
        where += " with a GPU"
    if req.model:
        serving = [n for n in candidates if model_matches(req, n)]
        if not serving:
            models = _names(m for n in candidates for m in n.models)
            return False, f'no alive node{where} supports model "{req.model}" (models: {models})'
    return True, ""


# -- Worker liveness (execution.md 3.5), for the Worker reconciler ----------------------------------

def _parse_time(value: str) -> datetime | None:
    text = value.strip()
    if not text:
        return None
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    if "." in text:  # Go RFC3339Nano may carry up to 9 fraction digits; Python takes 6
        head, _, rest = text.partition(".")
        digits = "".join(c for c in rest if c.isdigit())
        zone = rest[len(digits):]
        text = f"{head}.{digits[:6].ljust(6, '0')}{zone}"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def worker_liveness(status: Mapping[str, Any] | None, now: datetime | None = None,
                    stale_s: float = HEARTBEAT_STALE_S) -> tuple[str, str]:
    """Desired ``(phase, lastError)`` of a Worker from its heartbeat (upstream's WorkerController).

    A worker marked ``NotReady`` / ``worker stopped`` (a Ray node that died or left) stays so
    until a new heartbeat marks it ``Ready`` again.
    """
    status = status or {}
    if status.get("phase") == "NotReady" and status.get("lastError") == WORKER_STOPPED:
        return "NotReady", WORKER_STOPPED
    beat = str(status.get("lastHeartbeat") or "")
    if not beat.strip():
        return "NotReady", "no heartbeat received"
    when = _parse_time(beat)
    if when is None:
        return "NotReady", "invalid heartbeat timestamp"
    now = now or datetime.now(timezone.utc)
    if (now - when).total_seconds() > stale_s:
        return "NotReady", "worker heartbeat stale"
    return "Ready", ""

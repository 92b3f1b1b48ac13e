"""Backup and restore of every resource through the REST API (``orloj export`` / ``orloj import``).

An export is what the API shows: each object with its status, minus ``resourceVersion`` and
``generation`` (counters of the server it came from). Secrets come out as the API shows them,
values masked (``***``): an export file holds no secret values, so it may be stored like any
other file, and Secrets are re-created by hand after a restore (``orloj create secret``).
Workers mirrored from Ray nodes (label ``orloj.dev/source: ray-node``) are left out: the
cluster recreates them.

An import applies in dependency order (Secrets, ModelEndpoints, Tools, ... Agents,
AgentSystems, Tasks, then TaskSchedules, TaskWebhooks and ToolApprovals), so nothing is created
before what it references:

- a missing object is created with its exported status (a finished task stays finished and
  is not run again; a task that was Running loses its lease and is resumed by the supervisor);
- an existing object is updated as ``apply`` does (spec from the file, live status kept),
  except Tasks and ToolApprovals, which are records and are left as they are;
- a Secret whose values are masked is never written: an existing one is kept, a missing one is
  reported so that it can be re-created.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable
from dataclasses import dataclass, field

import yaml

from orloj_ray import lifecycle
from orloj_ray.errors import InvalidResource
from orloj_ray.resources.kinds import KINDS, kind_info

MASKED = "***"
RAY_NODE_SOURCE = ("orloj.dev/source", "ray-node")
EXPORT_ORDER = ("Secret", "ModelEndpoint", "McpServer", "Tool", "Memory", "AgentRole", "ToolPermission",
                "AgentPolicy", "Agent", "AgentSystem", "Worker", "Task", "TaskSchedule", "TaskWebhook",
                "ToolApproval")
RECORD_KINDS = ("Task", "ToolApproval")
"""Kinds whose existing objects an import leaves alone."""
assert set(EXPORT_ORDER) == {k.kind for k in KINDS}


def _rank(doc: dict) -> int:
    kind = str(doc.get("kind", ""))
    try:
        return EXPORT_ORDER.index(kind_info(kind).kind)
    except (InvalidResource, ValueError):
        return len(EXPORT_ORDER)


def for_export(obj: dict) -> dict | None:
    """The object as written to an export, or None when it is not exported (mirrored Workers)."""
    meta = obj.get("metadata") or {}
    if obj.get("kind") == "Worker" and (meta.get("labels") or {}).get(RAY_NODE_SOURCE[0]) == RAY_NODE_SOURCE[1]:
        return None
    out = copy.deepcopy(obj)
    for key in ("resourceVersion", "generation"):
        out.get("metadata", {}).pop(key, None)
    return out


def is_masked_secret(doc: dict) -> bool:
    """A Secret carrying masked values (as exported), which must never be written back."""
    if str(doc.get("kind", "")).lower() != "secret":
        return False
    spec = doc.get("spec") or {}
    values = [*(spec.get("data") or {}).values(), *(spec.get("stringData") or {}).values()]
    return any(v == MASKED for v in values)


def for_import(doc: dict) -> dict:
    """The body to POST: server counters dropped, a non-terminal task's lease released."""
    out = copy.deepcopy(doc)
    meta = out.setdefault("metadata", {})
    for key in ("resourceVersion", "generation", "createdAt"):
        meta.pop(key, None)
    status = out.get("status")
    if str(out.get("kind", "")).lower() == "task" and isinstance(status, dict):
        out["status"] = lifecycle.unown(status)
    return out


def ordered(docs: Iterable[dict]) -> list[dict]:
    """Dependency order, stable within a kind."""
    return sorted(docs, key=_rank)


def dump(objects: list[dict], fmt: str = "yaml", header: str = "") -> str:
    """YAML documents (with ``header`` as comment lines) or a JSON ``List``."""
    if fmt == "json":
        return json.dumps({"apiVersion": "orloj.dev/v1", "kind": "List", "items": objects}, indent=2) + "\n"
    lines = "".join(f"# {line}\n" for line in header.splitlines())
    body = yaml.safe_dump_all(objects, sort_keys=False, allow_unicode=True, default_flow_style=False)
    return lines + (body if objects else "")


def parse(text: str, source: str = "<input>") -> list[dict]:
    """Objects of an export file: YAML documents, a JSON ``List`` or a JSON array."""
    try:
        docs = list(yaml.safe_load_all(text))  # YAML is a superset of JSON
    except yaml.YAMLError as exc:
        raise InvalidResource(f"{source}: not YAML or JSON: {exc}", field="file") from None
    out: list[dict] = []
    for index, doc in enumerate(docs):
        if doc is None:
            continue
        items = doc.get("items") if isinstance(doc, dict) and doc.get("kind") == "List" else None
        if isinstance(doc, list):
            items = doc
        for item in items if items is not None else [doc]:
            if not isinstance(item, dict) or not item.get("kind") or not (item.get("metadata") or {}).get("name"):
                raise InvalidResource(f"{source}: document {index + 1}: expected an object with kind and "
                                      f"metadata.name", field="file")
            kind_info(str(item["kind"]))  # unknown kinds fail before anything is sent
            out.append(item)
    return out


@dataclass
class ImportReport:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    """Existing records (tasks, approvals) and existing Secrets, left as they are."""
    secrets_to_recreate: list[str] = field(default_factory=list)
    """Masked Secrets that did not exist: re-create them with ``orloj create secret``."""
    failed: list[tuple[str, str]] = field(default_factory=list)
    """``(ref, message)`` of objects the server refused."""


def ref(doc: dict) -> str:
    meta = doc.get("metadata") or {}
    return f"{str(doc.get('kind', '')).lower()}/{meta.get('name', '')} (namespace {meta.get('namespace') or 'default'})"

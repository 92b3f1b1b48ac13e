"""Validate and normalize one manifest into upstream's wire shape.

``normalize`` is idempotent and keeps server-owned metadata (``resourceVersion``,
``generation``, ``createdAt``) and status, so the Store and the REST layer can run it on
anything they hold.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from orloj_ray.errors import InvalidResource
from orloj_ray.resources.agents import Agent, AgentSystem
from orloj_ray.resources.base import describe, quote, validate
from orloj_ray.resources.endpoints import Memory, ModelEndpoint, Secret
from orloj_ray.resources.envelope import Resource
from orloj_ray.resources.errors import ManifestError
from orloj_ray.resources.governance import AgentPolicy, AgentRole, ToolApproval, ToolPermission
from orloj_ray.resources.kinds import BY_KIND, KINDS
from orloj_ray.resources.tasks import Task, TaskSchedule, TaskWebhook, Worker
from orloj_ray.resources.tools import McpServer, Tool

RESOURCE_MODELS: dict[str, type[Resource]] = {
    model.__name__: model
    for model in (Agent, AgentSystem, ModelEndpoint, Tool, Secret, Memory, AgentPolicy, AgentRole,
                  ToolPermission, ToolApproval, Task, TaskSchedule, TaskWebhook, Worker, McpServer)
}
"""Model class of each kind, keyed by canonical kind name."""

_KIND_LIST = ", ".join(k.kind for k in KINDS)


def parse_resource(doc: Any, *, kind: str | None = None, now: datetime | None = None) -> Resource:
    """Validate and normalize ``doc`` into its kind's model (``Agent``, ``Task``, ...).

    ``kind`` is the kind the caller expects (e.g. the REST collection's): a document without
    ``kind`` takes it, one with another kind is refused (``unsupported kind "Tool" for Agent``).
    ``now`` is the clock for defaults that depend on it (ToolApproval ``expires_at``).
    """
    if not isinstance(doc, dict):
        raise InvalidResource(f"expected a manifest (a map with apiVersion, kind, metadata, spec), "
                              f"got {describe(doc)}")
    model = RESOURCE_MODELS[_resolve_kind(doc.get("kind"), kind)]
    resource = validate(model, doc)
    resource.normalize(now or datetime.now(timezone.utc))
    return resource


def normalize(doc: Any, *, kind: str | None = None, source: str | None = None, index: int | None = None,
              now: datetime | None = None) -> dict[str, Any]:
    """Validate ``doc`` and return it in upstream's normalized JSON shape.

    Raises ``InvalidResource`` (``field`` = dotted path such as ``spec.tools[1].name``); with
    ``source`` or ``index`` given, a ``ManifestError`` naming the file and document instead.
    """
    try:
        return parse_resource(doc, kind=kind, now=now).wire()
    except InvalidResource as exc:
        if source is None and index is None:
            raise
        raise ManifestError(exc.message, source=source or "<text>", index=index, field=exc.field) from None


def _resolve_kind(written: Any, expected: str | None) -> str:
    if expected is not None:
        info = BY_KIND.get(expected.strip().lower())
        if info is None:
            raise InvalidResource(f"unsupported kind {quote(expected)}: expected one of {_KIND_LIST}", field="kind")
        if written is not None and str(written).strip() and str(written).strip().lower() != info.lower:
            raise InvalidResource(f"unsupported kind {quote(str(written))} for {info.kind}", field="kind")
        return info.kind
    if written is None or not str(written).strip():
        raise InvalidResource(f"kind is required: expected one of {_KIND_LIST}", field="kind")
    info = BY_KIND.get(str(written).strip().lower())
    if info is None:
        raise InvalidResource(f"unsupported kind {quote(str(written))}: expected one of {_KIND_LIST}", field="kind")
    return info.kind

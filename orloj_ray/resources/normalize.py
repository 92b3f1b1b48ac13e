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
from orloj_ray.resources.base import collecting, describe, quote, report, unknown_fields, validate_all, warn
from orloj_ray.resources.endpoints import Memory, ModelEndpoint, Secret
from orloj_ray.resources.envelope import Resource
from orloj_ray.resources.errors import ManifestError, ManifestErrors
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


def check(doc: Any, *, kind: str | None = None, now: datetime | None = None,
          strict: bool = False) -> tuple[Resource, list[dict[str, str]]]:
    """Validate and normalize ``doc`` into its kind's model; return it with the warnings found
    (``{"field", "message"}``: unknown fields, a schedule that never fires, ...).

    Every problem of the document is reported at once: ``InvalidResource`` whose ``problems``
    list them all (its ``field`` and the start of its ``message`` are the first one's).
    ``kind`` is the kind the caller expects (e.g. the REST collection's): a document without
    ``kind`` takes it, one with another kind is refused (``unsupported kind "Tool" for Agent``).
    ``now`` is the clock for defaults that depend on it (ToolApproval ``expires_at``).
    ``strict`` makes unknown fields errors instead of warnings.
    """
    if not isinstance(doc, dict):
        raise InvalidResource(f"expected a manifest (a map with apiVersion, kind, metadata, spec), "
                              f"got {describe(doc)}")
    model = RESOURCE_MODELS[_resolve_kind(doc.get("kind"), kind)]
    with collecting() as found:
        resource, bad = validate_all(model, doc)
        typed = len(found.errors)
        if resource is not None:
            for path, closest in unknown_fields(resource, doc):
                hint = f' (did you mean "{closest}"?)' if closest else ""
                if strict:
                    report(path, f"{path}: unknown field{hint}")
                else:
                    warn(path, f"{path}: unknown field, ignored{hint}")
            try:
                resource.normalize(now or datetime.now(timezone.utc))
            except InvalidResource as exc:
                report(exc.field or "", exc.message)
    # A value refused by type is left out before the rules run: what they say of it is noise.
    errors = found.errors[:typed] + [e for e in found.errors[typed:] if not _within(e["field"], bad)]
    if errors or resource is None:
        # what was warned about often explains the refusal (`modle_ref` -> model_ref is required)
        errors = (errors or [{"field": "", "message": "invalid manifest"}]) + [
            {**w, "severity": "warning"} for w in found.warnings]
        raise InvalidResource("; ".join(e["message"] for e in errors), field=errors[0]["field"] or None,
                              problems=errors)
    return resource, found.warnings


def _within(path: str, bad: list[str]) -> bool:
    def key(p: str) -> str:
        return p.replace("_", "").lower()

    path = key(path)
    return any(path == b or path.startswith(b + ".") or path.startswith(b + "[") for b in map(key, bad))


def parse_resource(doc: Any, *, kind: str | None = None, now: datetime | None = None) -> Resource:
    """``check`` without the warnings: the validated, normalized model (``Agent``, ``Task``, ...)."""
    return check(doc, kind=kind, now=now)[0]


def normalize(doc: Any, *, kind: str | None = None, source: str | None = None, index: int | None = None,
              now: datetime | None = None, warnings: list[dict[str, str]] | None = None,
              strict: bool = False) -> dict[str, Any]:
    """Validate ``doc`` and return it in upstream's normalized JSON shape.

    Raises ``InvalidResource`` (``field`` = dotted path such as ``spec.tools[1].name``,
    ``problems`` = every problem); with ``source`` or ``index`` given, a ``ManifestError``
    naming the file and document instead (``ManifestErrors``, one per problem, when there
    are several). ``warnings``, when given, receives what ``check`` warns about.
    """
    try:
        resource, found = check(doc, kind=kind, now=now, strict=strict)
    except InvalidResource as exc:
        if source is None and index is None:
            raise
        problems = exc.problems or [{"field": exc.field or "", "message": exc.message}]
        errors = [ManifestError(p["message"], source=source or "<text>", index=index, field=p["field"] or None)
                  for p in problems]
        raise (errors[0] if len(errors) == 1 else ManifestErrors(errors)) from None
    if warnings is not None:
        warnings.extend(found)
    return resource.wire()


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

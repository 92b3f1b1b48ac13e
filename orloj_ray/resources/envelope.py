"""The envelope every kind shares: ``apiVersion``, ``kind``, ``metadata``, ``spec``, ``status``.

``status`` stays a free-form map (controllers own it; Task status holds many snake_case
records): normalization only defaults ``phase`` and drops empty top-level values, as Go's
``omitempty`` does. Kind-specific status fields are filled by each kind's ``Spec.normalize``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from pydantic import Field

from orloj_ray.resources.base import Int, Spec, Str, Wire, describe, invalid, is_empty
from orloj_ray.resources.kinds import API_VERSION, BY_KIND

DEFAULT_NAMESPACE = "default"


class Metadata(Wire):
    KEEP: ClassVar[frozenset[str]] = frozenset({"name"})
    CAMEL: ClassVar[frozenset[str]] = frozenset({"resource_version", "created_at"})

    name: Str = ""
    namespace: Str = ""
    labels: dict[Str, Str] = {}
    annotations: dict[Str, Str] = {}
    resource_version: Str = ""
    """Server-owned: decimal counter, +1 on every write."""
    generation: Int = 0
    """Server-owned: +1 when the spec changes."""
    created_at: Str = ""
    """Server-owned: RFC 3339, seconds."""

    def normalize(self) -> None:
        self.name = self.name.strip()
        if not self.name:
            raise invalid("metadata.name", "metadata.name is required")
        self.namespace = self.namespace.strip() or DEFAULT_NAMESPACE


class Resource(Wire):
    """One resource of any kind; each kind subclasses it with its own ``spec`` model and is
    named exactly as the kind."""

    KEEP: ClassVar[frozenset[str]] = frozenset({"metadata", "spec", "status"})
    CAMEL: ClassVar[frozenset[str]] = frozenset({"api_version"})

    api_version: Str = ""
    kind: Str = ""
    metadata: Metadata = Field(default_factory=Metadata)
    spec: Spec = Field(default_factory=Spec)
    status: dict[Str, Any] = {}

    def normalize(self, now: datetime) -> None:
        info = BY_KIND[type(self).__name__.lower()]
        self.api_version = self.api_version or API_VERSION
        self.kind = info.kind
        self.metadata.normalize()
        phase = self.status.get("phase") or ""
        if not isinstance(phase, str):
            raise invalid("status.phase", f"status.phase: expected a string, got {describe(phase)}")
        if info.default_phase == "Ready" and phase.strip().lower() == "pending":
            phase = ""  # governance kinds have no controller to move them on
        self.status = {k: v for k, v in self.status.items() if not is_empty(v)}
        self.status["phase"] = phase or info.default_phase
        self.spec.normalize(self.metadata, self.status, now)

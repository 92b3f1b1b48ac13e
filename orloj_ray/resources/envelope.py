"""The envelope every kind shares: ``apiVersion``, ``kind``, ``metadata``, ``spec``, ``status``.

``status`` stays a free-form map (controllers own it; Task status holds many snake_case
records): normalization only defaults ``phase`` and drops empty top-level values, as Go's
``omitempty`` does. Kind-specific status fields are filled by each kind's ``Spec.normalize``.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, ClassVar

from pydantic import Field

from orloj_ray.resources.base import Int, Spec, Str, Wire, describe, invalid, is_empty, quote, report
from orloj_ray.resources.kinds import API_VERSION, BY_KIND

DEFAULT_NAMESPACE = "default"

MAX_NAME_LENGTH = 253
MAX_NAMESPACE_LENGTH = 63
_LABEL = r"[A-Za-z0-9](?:[-A-Za-z0-9_]*[A-Za-z0-9])?"
_NAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
_NAMESPACE = re.compile(_LABEL)
NAME_RULE = ("letters, digits, '-', '_' and '.', starting and ending with a letter or digit, "
             f"at most {MAX_NAME_LENGTH} characters")
NAMESPACE_RULE = ("letters, digits, '-' and '_', starting and ending with a letter or digit, "
                  f"at most {MAX_NAMESPACE_LENGTH} characters")


def name_problem(name: str, field: str = "metadata.name") -> str | None:
    """Why ``name`` cannot name an object (None when it can): a DNS-1123 subdomain, with
    upper-case letters and ``_`` also allowed (upstream's examples name tools ``web_search``,
    MCP tool names are camelCase). So no ``/``, ``..``, spaces, ``<`` or control characters:
    every name can be put in a URL path and read back, listed and deleted."""
    if len(name) > MAX_NAME_LENGTH:
        return f"invalid {field}: {len(name)} characters, at most {MAX_NAME_LENGTH} allowed"
    if not _NAME.fullmatch(name):
        return f"invalid {field} {quote(name)}: use {NAME_RULE}"
    return None


def namespace_problem(namespace: str, field: str = "metadata.namespace") -> str | None:
    """Why ``namespace`` cannot name a namespace (None when it can): a DNS-1123 label, with
    upper-case letters and ``_`` also allowed."""
    if len(namespace) > MAX_NAMESPACE_LENGTH or not _NAMESPACE.fullmatch(namespace):
        shown = quote(namespace if len(namespace) <= 80 else namespace[:60] + "...")
        return f"invalid {field} {shown}: use {NAMESPACE_RULE}"
    return None


class Metadata(Wire):
    KEEP: ClassVar[frozenset[str]] = frozenset({"name"})
    CAMEL: ClassVar[frozenset[str]] = frozenset({"resource_version", "created_at"})

    name: Str = ""
    namespace: Str = ""
    labels: dict[Str, Str] = {}
    annotations: dict[Str, Str] = {}
    resource_version: Str = ""
    """Server-owned: decimal counter, +1 on every write."""
    generation: Int = Field(0, ge=0)
    """Server-owned: +1 when the spec changes."""
    created_at: Str = ""
    """Server-owned: RFC 3339, seconds."""

    def normalize(self) -> None:
        self.name = self.name.strip()
        if not self.name:
            report("metadata.name", "metadata.name is required")
        elif problem := name_problem(self.name):
            report("metadata.name", problem)
        self.namespace = self.namespace.strip() or DEFAULT_NAMESPACE
        if problem := namespace_problem(self.namespace):
            report("metadata.namespace", problem)


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
        self.api_version = self.api_version.strip() or API_VERSION
        if self.api_version != API_VERSION:
            report("apiVersion", f"unsupported apiVersion {quote(self.api_version)}: expected {API_VERSION}")
            self.api_version = API_VERSION
        self.kind = info.kind
        self.metadata.normalize()
        if info.watchable and self.metadata.name == "watch":
            report("metadata.name", f'invalid metadata.name "watch": /v1/{info.plural}/watch is the watch stream '
                                    f"of {info.plural}, so no {info.kind} can be named watch")
        phase = self.status.get("phase") or ""
        if not isinstance(phase, str):
            raise invalid("status.phase", f"status.phase: expected a string, got {describe(phase)}")
        if info.default_phase == "Ready" and phase.strip().lower() == "pending":
            phase = ""  # governance kinds have no controller to move them on
        self.status = {k: v for k, v in self.status.items() if not is_empty(v)}
        self.status["phase"] = phase or info.default_phase
        self.spec.normalize(self.metadata, self.status, now)

"""What an object names that the server does not hold: checked after ``apply``, so a user
learns at once that an agent's tools or model endpoint are missing, not when a task fails.

Read-only GETs, one per distinct reference (cached for the apply). The rules follow the
engine's resolution (``orloj_ray.engine.resolve``): ``spec.model_ref`` names a ModelEndpoint;
``spec.model`` alone is served by the namespace's default endpoint (named ``default``, or
labelled ``orloj.dev/default-model-endpoint: "true"``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from orloj_ray.resources.dialect import agent_tool_names

if TYPE_CHECKING:
    from orloj_ray.client import Client

DEFAULT_ENDPOINT_LABEL = "orloj.dev/default-model-endpoint"
BUILTIN_TOOL_PREFIX = "memory."
"""``memory.read`` and the rest are offered by ``spec.memory``, not Tool resources."""


def _split(ref: str, namespace: str) -> tuple[str, str]:
    ns, sep, name = ref.strip().partition("/")
    return (ns or namespace, name) if sep else (namespace, ref.strip())


class References:
    """Missing references of applied objects, with one GET per (kind, namespace, name)."""

    def __init__(self, client: Client):
        self.client = client
        self._seen: dict[tuple[str, str, str], bool] = {}
        self._default: dict[str, bool] = {}

    def exists(self, kind: str, namespace: str, name: str) -> bool:
        key = (kind, namespace, name)
        if key not in self._seen:
            plural = self.client.kind(kind).plural
            self._seen[key] = self.client.request("GET", f"/v1/{plural}/{name}", params={"namespace": namespace},
                                                  allow_404=True) is not None
        return self._seen[key]

    def has_default_endpoint(self, namespace: str) -> bool:
        if namespace not in self._default:
            found = self.exists("ModelEndpoint", namespace, "default") or bool(
                self.client.list("ModelEndpoint", namespace, f"{DEFAULT_ENDPOINT_LABEL}=true"))
            self._default[namespace] = found
        return self._default[namespace]

    def missing(self, doc: dict) -> list[str]:
        """``["model endpoint default", "tools scan-documents, flag-issues"]``; empty when all exist."""
        kind = str(doc.get("kind", ""))
        ns = str((doc.get("metadata") or {}).get("namespace") or "default")
        spec = doc.get("spec") or {}
        out: list[str] = []
        if kind == "Agent":
            if spec.get("model_ref"):
                ref_ns, ref = _split(str(spec["model_ref"]), ns)
                if not self.exists("ModelEndpoint", ref_ns, ref):
                    out.append(f"model endpoint {spec['model_ref']}")
            elif spec.get("model") and not self.has_default_endpoint(ns):
                out.append(f'model endpoint default (spec.model {spec["model"]!r} is served by the namespace\'s '
                           f'ModelEndpoint named "default")')
            self._names(out, "tool", "Tool", ns, [t for t in agent_tool_names(spec)
                                                  if not t.startswith(BUILTIN_TOOL_PREFIX)])
            self._names(out, "role", "AgentRole", ns, [r for r in spec.get("roles") or [] if isinstance(r, str)])
            memory = (spec.get("memory") or {}).get("ref") if isinstance(spec.get("memory"), dict) else None
            if memory:
                self._names(out, "memory", "Memory", ns, [memory])
        elif kind == "AgentSystem":
            self._names(out, "agent", "Agent", ns, [a for a in spec.get("agents") or [] if isinstance(a, str)])
        elif kind == "Task" and str(spec.get("mode") or "run").lower() != "template" and spec.get("system"):
            self._names(out, "agent system", "AgentSystem", ns, [str(spec["system"])])
        return out

    def warnings(self, docs: list[dict]) -> list[str]:
        """``warning: agent/x: missing in namespace ns: tools a, b (...)``, one line per object of
        ``docs`` that names something the server lacks."""
        lines = []
        for doc in docs:
            missing = self.missing(doc)
            if missing:
                meta = doc.get("metadata") or {}
                what = "it fails" if doc.get("kind") == "Task" else "its tasks fail until they exist"
                lines.append(f"warning: {str(doc.get('kind', '')).lower()}/{meta.get('name')}: missing in namespace "
                             f"{meta.get('namespace') or 'default'}: {'; '.join(missing)} ({what})")
        return lines

    def _names(self, out: list[str], label: str, kind: str, ns: str, names: list[str]) -> None:
        absent = [n for n in dict.fromkeys(names) if n and not self.exists(kind, *_split(n, ns))]
        if absent:
            out.append(f"{label}{'s' if len(absent) > 1 else ''} {', '.join(absent)}")

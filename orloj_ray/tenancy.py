"""Namespaces as a boundary: what one namespace may use of another's, and which policies are
cluster-wide.

* A reference into another namespace (a Secret ``ns/name``, a ``model_ref``, a role, a
  schedule's or webhook's ``task_ref``) resolves only when the target shares itself with the
  referring namespace: the annotation ``orloj.dev/shared-with`` on the target lists the
  namespaces it is shared with (comma-separated) or ``*`` for all. Whoever may write the
  target's namespace decides; nothing in the referring namespace can.
* An AgentPolicy with ``apply_mode: global`` applies to every namespace, unless it carries
  ``orloj.dev/policy-scope: namespace``: then to its own only. The API sets that annotation
  on every AgentPolicy a token that is not ``admin`` writes, so only an admin makes a
  cluster-wide policy (``serve/tenancy.py``).
"""

from __future__ import annotations

SHARED_WITH = "orloj.dev/shared-with"
POLICY_SCOPE = "orloj.dev/policy-scope"
NAMESPACE_SCOPE = "namespace"


def _annotations(obj: dict) -> dict:
    return (obj.get("metadata") or {}).get("annotations") or {}


def namespace_of(obj: dict) -> str:
    return (obj.get("metadata") or {}).get("namespace") or "default"


def shared_with(obj: dict, namespace: str) -> bool:
    """May ``namespace`` use ``obj``? Always in its own namespace; else when ``obj`` says so."""
    if namespace_of(obj) == (namespace or "default"):
        return True
    listed = {n.strip() for n in str(_annotations(obj).get(SHARED_WITH) or "").split(",") if n.strip()}
    return "*" in listed or (namespace or "default") in listed


def not_shared(what: str, obj: dict, namespace: str) -> str:
    """The refusal for a reference from ``namespace`` to ``obj`` (``what``: e.g. ``secret``)."""
    owner = namespace_of(obj)
    name = (obj.get("metadata") or {}).get("name")
    return (f'{what} "{owner}/{name}" is in namespace "{owner}", which does not share it with namespace '
            f'"{namespace}": the owner of "{owner}" can annotate it {SHARED_WITH}: "{namespace}" (or "*")')


def confined(policy_metadata: dict) -> bool:
    """A global policy confined to its own namespace (written by a token that is not admin)."""
    return str((policy_metadata.get("annotations") or {}).get(POLICY_SCOPE) or "").strip().lower() == NAMESPACE_SCOPE

"""Namespaces as a boundary in the API: the store each request sees (``TenantStore``).

``create_app`` wraps its store once; every route reads and writes through it, and the
request's principal (``serve.auth.CURRENT_PRINCIPAL``, set by ``TokenAuth``) decides:

* A token with a namespace list (``name:token:role:ns-a|ns-b``) sees only those namespaces. A
  GET of an object elsewhere answers 404, as if it did not exist (so object names of other
  tenants are not revealed); lists, watches, the event stream, ``/v1/namespaces``, the audit
  trail and ``/metrics`` leave other namespaces out. A write elsewhere answers 403 naming the
  token's namespaces (the namespace is the caller's own choice, so saying so reveals nothing).
* Every AgentPolicy written by a token that is not ``admin`` is marked
  ``orloj.dev/policy-scope: namespace``: an ``apply_mode: global`` policy then applies to its
  own namespace only (``orloj_ray.tenancy``). Such a token may neither change nor delete a
  policy that applies cluster-wide.
* Every write a token makes is an audit record (``created``, ``updated``, ``status_updated``,
  ``deleted``, or ``denied`` with code ``forbidden``) naming the token in ``decided_by``.

No principal (auth off, or an open route such as a signed webhook delivery): the store as it is.
"""

from __future__ import annotations

import json
import time

from orloj_ray.errors import Forbidden, NotFound
from orloj_ray.engine.approvals import persist_audit
from orloj_ray.governance import audit_record
from orloj_ray.store.base import ListPage
from orloj_ray.store.util import clamp_limit
from orloj_ray.tenancy import NAMESPACE_SCOPE, POLICY_SCOPE, confined
from serve.auth import CURRENT_PRINCIPAL, Principal

SOURCE = "apiserver"


class EventBatch(list):
    """Events a scoped token may see, with ``cursor``: the id of the last event read, shown or
    not, so a watcher moves past other tenants' events instead of reading them again."""

    cursor: int = 0


def _ns(namespace: str | None) -> str:
    return namespace or "default"


def _name_of(obj: dict) -> tuple[str, str, str]:
    meta = obj.get("metadata") or {}
    return str(obj.get("kind") or ""), _ns(meta.get("namespace")), str(meta.get("name") or "")


def cluster_wide(policy: dict) -> bool:
    spec = policy.get("spec") or {}
    return (str(spec.get("apply_mode") or "").strip().lower() == "global"
            and not confined(policy.get("metadata") or {}))


class TenantStore:
    """``store`` as the current request's principal may see and change it."""

    def __init__(self, store):
        self.inner = store

    def __getattr__(self, name: str):  # rotate_secret_key and the like (admin routes)
        return getattr(self.inner, name)

    # -- who ---------------------------------------------------------------------------------

    @staticmethod
    def _scoped() -> Principal | None:
        principal = CURRENT_PRINCIPAL.get()
        return principal if principal is not None and principal.namespaces is not None else None

    async def _audit(self, principal: Principal, decision: str, kind: str, namespace: str, name: str,
                     code: str = "", reason: str = "") -> None:
        await persist_audit(self.inner, [audit_record(
            decision, namespace=namespace, task=name if kind == "Task" else "", subject_kind=kind, subject=name,
            code=code, rule="api", reason=reason or f"{decision} by {principal.name} ({principal.role})",
            decided_by=principal.name)])

    async def _may_write(self, kind: str, namespace: str, name: str) -> Principal | None:
        principal = CURRENT_PRINCIPAL.get()
        if principal is None:
            return None
        if not principal.sees(namespace):
            message = (f'token "{principal.name}" may not write namespace "{namespace}" '
                       f'(its namespaces: {", ".join(sorted(principal.namespaces or ()))})')
            await self._audit(principal, "denied", kind, namespace, name, "forbidden", message)
            raise Forbidden(message, field="metadata.namespace")
        if kind == "AgentPolicy" and principal.role != "admin":
            try:
                current = await self.inner.get(kind, namespace, name)
            except NotFound:
                current = None
            if current is not None and cluster_wide(current):
                message = (f'agentpolicy "{name}" applies to every namespace: only an admin token may change or '
                           "delete it")
                await self._audit(principal, "denied", kind, namespace, name, "forbidden", message)
                raise Forbidden(message)
        return principal

    async def _admit(self, obj: dict) -> tuple[dict, Principal | None]:
        kind, namespace, name = _name_of(obj)
        principal = await self._may_write(kind, namespace, name)
        if principal is not None and kind == "AgentPolicy" and principal.role != "admin":
            meta = dict(obj.get("metadata") or {})
            meta["annotations"] = {**(meta.get("annotations") or {}), POLICY_SCOPE: NAMESPACE_SCOPE}
            obj = {**obj, "metadata": meta}
        return obj, principal

    # -- writes ------------------------------------------------------------------------------

    async def create(self, obj: dict, *, source: str = SOURCE) -> dict:
        obj, principal = await self._admit(obj)
        stored = await self.inner.create(obj, source=source)
        if principal is not None:
            await self._audit(principal, "created", *_name_of(stored))
        return stored

    async def upsert(self, obj: dict, *, source: str = SOURCE) -> tuple[dict, bool]:
        obj, principal = await self._admit(obj)
        stored, created = await self.inner.upsert(obj, source=source)
        if principal is not None:
            await self._audit(principal, "created" if created else "updated", *_name_of(stored))
        return stored, created

    async def update(self, obj: dict, expected_rv: str, *, source: str = SOURCE) -> dict:
        obj, principal = await self._admit(obj)
        stored = await self.inner.update(obj, expected_rv, source=source)
        if principal is not None:
            await self._audit(principal, "updated", *_name_of(stored))
        return stored

    async def update_status(self, kind: str, namespace: str, name: str, status: dict, expected_rv: str,
                            *, source: str = SOURCE) -> dict:
        principal = await self._may_write(kind, _ns(namespace), name)
        stored = await self.inner.update_status(kind, namespace, name, status, expected_rv, source=source)
        if principal is not None:
            await self._audit(principal, "status_updated", kind, _ns(namespace), name)
        return stored

    async def claim(self, kind: str, namespace: str, name: str, decide, *, source: str = SOURCE):
        await self._may_write(kind, _ns(namespace), name)
        return await self.inner.claim(kind, namespace, name, decide, source=source)

    async def delete(self, kind: str, namespace: str, name: str, *, source: str = SOURCE) -> dict:
        principal = await self._may_write(kind, _ns(namespace), name)
        deleted = await self.inner.delete(kind, namespace, name, source=source)
        if principal is not None:
            await self._audit(principal, "deleted", kind, _ns(namespace), name)
        return deleted

    async def publish(self, event):
        principal = self._scoped()
        if principal is not None and not principal.sees(event.namespace):
            raise Forbidden(f'token "{principal.name}" may not write namespace "{_ns(event.namespace)}"')
        return await self.inner.publish(event)

    async def append_audit(self, record: dict) -> dict:
        return await self.inner.append_audit(record)

    # -- reads -------------------------------------------------------------------------------

    async def get(self, kind: str, namespace: str, name: str) -> dict:
        principal = self._scoped()
        if principal is not None and not principal.sees(namespace):
            raise NotFound(f"{kind.lower()} {json.dumps(name, ensure_ascii=False)} not found")
        return await self.inner.get(kind, namespace, name)

    async def list(self, kind: str, namespace: str | None = None, selector=None, limit: int | None = None,
                   after: str | None = None) -> ListPage:
        principal = self._scoped()
        if principal is None:
            return await self.inner.list(kind, namespace, selector, limit, after)
        if namespace:
            if not principal.sees(namespace):
                return ListPage(items=[])
            return await self.inner.list(kind, namespace, selector, limit, after)
        # every namespace this token sees, in (namespace, name) order, cut as the store cuts
        limit = clamp_limit(limit)
        after_ns, after_name = after.split("/", 1) if after and "/" in after else (None, after or None)
        items: list[dict] = []
        for ns in sorted(principal.namespaces):
            if after_ns is not None and ns < after_ns:
                continue
            start = after_name if after_ns is None or ns == after_ns else None
            items += (await self.inner.list(kind, ns, selector, limit - len(items), start)).items
            if len(items) >= limit:
                break
        cont = None
        if items and len(items) == limit:
            last = items[-1]["metadata"]
            cont = f'{_ns(last.get("namespace"))}/{last["name"]}'
        return ListPage(items=items, continue_=cont)

    async def events_after(self, after_id: int, timeout_s: float = 0.0, limit: int = 1000, kinds=None):
        principal = self._scoped()
        if principal is None:
            return await self.inner.events_after(after_id, timeout_s, limit, kinds)
        deadline = time.monotonic() + timeout_s
        batch = EventBatch()
        batch.cursor = after_id
        while True:
            events = await self.inner.events_after(batch.cursor, max(0.0, deadline - time.monotonic()), limit, kinds)
            if not events:
                return batch
            batch.cursor = events[-1].id
            batch.extend(e for e in events if principal.sees(e.namespace))
            if batch or time.monotonic() >= deadline:
                return batch

    async def list_audit(self, namespace: str | None = None, **filters) -> list[dict]:
        principal = self._scoped()
        if principal is None:
            return await self.inner.list_audit(namespace, **filters)
        if namespace:
            return await self.inner.list_audit(namespace, **filters) if principal.sees(namespace) else []
        limit = clamp_limit(filters.get("limit"))
        merged = []
        for ns in sorted(principal.namespaces):
            merged += await self.inner.list_audit(ns, **filters)
        return sorted(merged, key=lambda r: r["id"])[:limit]

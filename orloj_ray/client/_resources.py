"""Resource CRUD and ``apply`` (planned locally by ``_plan``, then POSTed)."""

from __future__ import annotations

from typing import Any

from orloj_ray.client._plan import plan_apply
from orloj_ray.client._transport import Session
from orloj_ray.client._types import MemoryEntries, Resource
from orloj_ray.resources.kinds import KindInfo, kind_info


class ResourceAPI(Session):
    @staticmethod
    def kind(kind: str | KindInfo) -> KindInfo:
        return kind if isinstance(kind, KindInfo) else kind_info(kind)

    def get(self, kind: str, name: str, namespace: str = "default") -> Resource:
        info = self.kind(kind)
        return self.request("GET", f"/v1/{info.plural}/{name}", params={"namespace": namespace})

    def list(self, kind: str, namespace: str | None = None, label_selector: str | None = None) -> list[Resource]:
        """Every object of a kind (all namespaces when ``namespace`` is None), following pages."""
        info = self.kind(kind)
        items: list[Resource] = []
        after = None
        while True:
            body = self.request("GET", f"/v1/{info.plural}", params={
                "namespace": namespace, "labelSelector": label_selector, "after": after}) or {}
            page = body.get("items") or []
            items.extend(page)
            nxt = body.get("continue")
            if not nxt or not page or nxt == after:
                return items
            after = nxt

    def delete(self, kind: str, name: str, namespace: str = "default") -> None:
        info = self.kind(kind)
        self.request("DELETE", f"/v1/{info.plural}/{name}", params={"namespace": namespace})

    def create(self, doc: dict) -> Resource:
        """POST one normalized object (create or update) to its collection; returns it stored."""
        info = self.kind(str(doc.get("kind", "")))
        return self.request("POST", f"/v1/{info.plural}", json_body=doc)

    def replace(self, doc: dict, resource_version: str) -> Resource:
        """PUT one normalized object with ``If-Match: <resource_version>``: the server refuses it
        (``Conflict``, 409) when the object changed since that version was read."""
        info = self.kind(str(doc.get("kind", "")))
        meta = doc.get("metadata") or {}
        return self.request("PUT", f"/v1/{info.plural}/{meta.get('name', '')}",
                            params={"namespace": meta.get("namespace") or "default"}, json_body=doc,
                            headers={"If-Match": f'"{resource_version}"'})

    def memory_entries(self, memory: str, namespace: str = "default", *, query: str | None = None,
                       prefix: str | None = None, limit: int = 100) -> MemoryEntries:
        """``GET /v1/memories/<memory>/entries``: ``{"entries", "count", "ranking"?}`` (search with
        ``query``, else list by ``prefix``; at most ``limit``)."""
        return self.request("GET", f"/v1/memories/{memory}/entries",
                            params={"namespace": namespace, "q": query, "prefix": prefix, "limit": limit}) or {}

    def apply(self, path_or_docs: Any, *, run: bool = False, namespace: str | None = None) -> list[Resource]:
        """Validate everything locally (``ManifestErrors`` lists every bad document and nothing
        is sent), then POST each object, generated ones included. Returns the stored objects.
        See ``plan_apply`` for ``run`` and ``namespace``."""
        plan = plan_apply(path_or_docs, run=run, namespace=namespace)
        return [self.create(item.doc) for item in plan.objects]

    def create_secret(self, name: str, data: dict[str, str], *, namespace: str = "default") -> Resource:
        from orloj_ray.resources import normalize

        doc = normalize({"apiVersion": "orloj.dev/v1", "kind": "Secret",
                         "metadata": {"name": name, "namespace": namespace},
                         "spec": {"stringData": {k: str(v) for k, v in data.items()}}})
        return self.create(doc)

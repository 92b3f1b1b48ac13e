"""``export`` and ``import_objects``: the client side of ``orloj_ray.backup``."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from orloj_ray.client._resources import ResourceAPI
from orloj_ray.errors import OrlojError, Unavailable


class BackupAPI(ResourceAPI):
    def export(self, namespace: str | None = None) -> list[dict]:
        """Every object of every kind (all namespaces when ``namespace`` is None), in dependency
        order, as a backup holds them: Secrets masked, mirrored Workers left out (``orloj_ray.backup``)."""
        from orloj_ray.backup import EXPORT_ORDER, for_export

        docs = (for_export(obj) for kind in EXPORT_ORDER for obj in self.list(kind, namespace))
        return [doc for doc in docs if doc is not None]

    def import_objects(self, docs: Iterable[dict], *,
                       on_result: Callable[[str, dict, str], None] | None = None):
        """Restore an export (``orloj_ray.backup`` states the rules); returns an ``ImportReport``.
        ``on_result(action, doc, detail)`` is called per object: created, updated, unchanged,
        recreate-secret or failed. A refused object does not stop the others."""
        from orloj_ray import backup

        report = backup.ImportReport()
        for doc in backup.ordered(docs):
            info, ref = self.kind(str(doc.get("kind", ""))), backup.ref(doc)
            meta = doc.get("metadata") or {}
            live = self.request("GET", f"/v1/{info.plural}/{meta.get('name')}",
                                params={"namespace": meta.get("namespace") or "default"}, allow_404=True)
            if live is not None and (info.kind in backup.RECORD_KINDS or backup.is_masked_secret(doc)):
                action, detail = "unchanged", "exists; left as it is"
            elif backup.is_masked_secret(doc):
                action, detail = "recreate-secret", "values are masked in the export: re-create it with orloj create secret"
            else:
                try:
                    self.create(backup.for_import(doc))
                    action, detail = ("created", "") if live is None else ("updated", "")
                except OrlojError as exc:
                    if isinstance(exc, Unavailable):
                        raise
                    action, detail = "failed", exc.message
            {"created": report.created, "updated": report.updated, "unchanged": report.unchanged,
             "recreate-secret": report.secrets_to_recreate}.get(action, []).append(ref)
            if action == "failed":
                report.failed.append((ref, detail))
            if on_result:
                on_result(action, doc, detail)
        return report

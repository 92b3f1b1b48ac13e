"""The Store seam: the system of record for every resource, its status and the event stream.

Objects are plain JSON-shaped dicts in the upstream wire shape
(``{"apiVersion", "kind", "metadata", "spec", "status"}``), already normalized by
``orloj_ray.resources``. The store owns ``metadata.resourceVersion`` (a decimal counter per
object, "1" on create, +1 on every write), ``metadata.generation`` (1 on create, +1 when the
spec changes) and ``metadata.createdAt``.

Every successful write appends one change event to the control-plane event stream, which is
also what resource watches are built from (one ordered log, one id sequence).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from collections.abc import Callable, Collection
from typing import Any, Protocol, runtime_checkable


@dataclass
class ListPage:
    items: list[dict]
    continue_: str | None = None
    """Set when the page is full: the last item's name, or ``namespace/name`` when the list
    spans all namespaces (a bare name cannot resume such a list without skipping items)."""


@dataclass
class Event:
    """One control-plane event (api.md section 8)."""

    id: int
    timestamp: str
    source: str
    type: str
    """``resource.created|updated|status|deleted`` for store writes, or e.g. ``task.claimed``."""
    kind: str = ""
    name: str = ""
    namespace: str = ""
    action: str = ""
    data: Any = None
    resource_version: str = ""
    """The object's resourceVersion after the write (for resource watches)."""

    def to_dict(self) -> dict:
        out = {
            "id": self.id,
            "timestamp": self.timestamp,
            "source": self.source,
            "type": self.type,
            "kind": self.kind,
            "name": self.name,
            "namespace": self.namespace,
            "action": self.action,
            "data": self.data,
        }
        return out


@dataclass
class LabelSelector:
    """Equality terms, AND-ed: ``a=b,c=d``."""

    terms: dict[str, str] = field(default_factory=dict)

    def matches(self, labels: dict[str, str] | None) -> bool:
        labels = labels or {}
        return all(labels.get(k) == v for k, v in self.terms.items())


@runtime_checkable
class Store(Protocol):
    """Async store protocol. ``kind`` is the canonical kind name (``"Agent"``).

    Errors: ``orloj_ray.errors.NotFound``, ``Conflict`` (stale resourceVersion, or create of an
    existing object), ``InvalidResource``.
    """

    async def create(self, obj: dict, *, source: str = "apiserver") -> dict:
        """Insert a new object. Conflict if it exists or the body RV is other than ``""``/``"0"``."""

    async def upsert(self, obj: dict, *, source: str = "apiserver") -> tuple[dict, bool]:
        """POST semantics: create, or replace metadata+spec keeping the stored status.

        If the body carries ``metadata.resourceVersion`` it must equal the stored one
        (``"0"`` or empty means "must not exist" on create). Returns (stored, created).
        Appends ``resource.created`` or ``resource.updated`` accordingly.
        """

    async def get(self, kind: str, namespace: str, name: str) -> dict:
        """NotFound: ``<kind lower-case> "name" not found``. Empty namespace means ``default``."""

    async def list(
        self,
        kind: str,
        namespace: str | None = None,
        selector: LabelSelector | None = None,
        limit: int | None = None,
        after: str | None = None,
    ) -> ListPage:
        """Items sorted by (namespace, name); ``namespace=None`` (or ``""``) means all namespaces.

        ``after`` keeps names strictly greater, or, as ``namespace/name`` (a ``continue_`` of an
        all-namespace page), pairs strictly greater. The selector is applied before the page
        is cut (upstream cuts first). ``limit`` is clamped to 1000; ``None`` or <= 0 means 1000.
        """

    async def update(self, obj: dict, expected_rv: str, *, source: str = "apiserver") -> dict:
        """PUT semantics: replace metadata(labels, annotations)+spec, keep status.

        ``expected_rv`` is required (Conflict when empty); ``"*"`` means "whatever is current";
        a ``W/`` prefix and quotes are ignored. A body ``metadata.resourceVersion`` is not
        checked here: the API compares it with ``If-Match`` and passes the result.
        """

    async def update_status(
        self, kind: str, namespace: str, name: str, status: dict, expected_rv: str,
        *, source: str = "apiserver",
    ) -> dict:
        """Replace the whole status, checking ``expected_rv`` as ``update`` does.

        A 0 or missing ``observedGeneration`` is set to ``metadata.generation``.
        """

    async def claim(
        self, kind: str, namespace: str, name: str, decide: Callable[[dict], dict | None],
        *, source: str = "apiserver",
    ) -> dict | None:
        """Hold the object against other claimers, let ``decide`` pick its new status, write it.

        ``decide`` gets the current object and returns the whole new status, or None to leave
        it. Returns the stored object, or None when ``decide`` passed or another claimer holds
        the object right now (PostgreSQL: ``FOR UPDATE SKIP LOCKED``; a claimer never queues).
        NotFound when it does not exist. ``decide`` must be picklable (it may cross to the
        store's actor): a module-level function or a ``functools.partial`` of one.
        """

    async def delete(self, kind: str, namespace: str, name: str, *, source: str = "apiserver") -> dict:
        """Remove and return the object; the event's data is ``{"metadata": {name, namespace, resourceVersion}}``."""

    async def publish(self, event: Event) -> Event:
        """Append a non-resource event (``task.claimed``, ...). ``id``/``timestamp`` are assigned."""

    async def events_after(self, after_id: int, timeout_s: float = 0.0, limit: int = 1000,
                           kinds: Collection[str] | None = None) -> list[Event]:
        """Events with ``id > after_id`` in order; waits up to ``timeout_s`` for the first one.

        ``kinds``: only events of these kinds (``Event.kind``), when given.

        Events older than the retained window are gone: callers resume from the oldest kept.
        """

    async def last_event_id(self) -> int:
        """Id of the newest event, 0 when none."""

    async def append_audit(self, record: dict) -> dict:
        """Append one governance decision to the audit trail and return it with ``id`` set
        (an integer increasing from 1, store-wide). Append-only: a record is never changed or
        deleted. ``record`` is a flat JSON object (``orloj_ray.governance.audit.FIELDS``)."""

    async def list_audit(
        self,
        namespace: str | None = None,
        *,
        task: str | None = None,
        agent: str | None = None,
        decision: str | None = None,
        code: str | None = None,
        subject: str | None = None,
        after: int = 0,
        limit: int | None = None,
    ) -> list[dict]:
        """Audit records with ``id > after``, oldest first. Each given filter must equal the
        record's field exactly; ``namespace`` None or ``""`` means all namespaces. ``limit`` is
        clamped to 1000; ``None`` or <= 0 means 1000."""

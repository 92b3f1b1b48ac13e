"""Small helpers shared by the store implementations, the API and the runtime."""

from __future__ import annotations

import asyncio
import copy
import json
import random
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Callable

from orloj_ray.errors import Conflict, InvalidResource
from orloj_ray.retry import Backoff

if TYPE_CHECKING:
    from orloj_ray.store.base import LabelSelector, Store


def now_rfc3339() -> str:
    """UTC now to the second, e.g. ``2026-03-29T10:00:00Z`` (Go ``time.RFC3339``)."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def rfc3339nano(ts: datetime) -> str:
    """Go's ``RFC3339Nano`` in UTC: trailing fraction zeros trimmed, e.g. ``2026-03-29T10:00:00.12Z``."""
    ts = ts.astimezone(timezone.utc)
    fraction = f"{ts.microsecond:06d}".rstrip("0")
    return ts.strftime("%Y-%m-%dT%H:%M:%S") + (f".{fraction}" if fraction else "") + "Z"


def now_rfc3339_nano() -> str:
    """UTC now as ``rfc3339nano``."""
    return rfc3339nano(utcnow())


def clean_rv(value: Any) -> str:
    """A precondition as sent (``If-Match`` or body RV): strips blanks, a ``W/`` prefix and quotes."""
    text = str(value or "").strip()
    if text.startswith("W/"):
        text = text[2:]
    return text.strip().strip('"').strip()


def quote(text: str) -> str:
    """Go ``%q``-style quoting for error messages: ``agent "x" not found``."""
    return json.dumps(text, ensure_ascii=False)


def same(value: Any) -> Any:
    """The value itself: the copy of a caller that needs none (see MemoryStore ``copy_values``)."""
    return value


def clone(value: Any) -> Any:
    """Deep copy of JSON-shaped data; fast path for dicts, lists and scalars."""
    if isinstance(value, dict):
        return {k: clone(v) for k, v in value.items()}
    if isinstance(value, list):
        return [clone(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return copy.deepcopy(value)


async def mutate_status(
    store: Store,
    kind: str,
    namespace: str,
    name: str,
    fn: Callable[[dict], dict | None],
    *,
    retries: int = 5,
    source: str = "apiserver",
) -> dict:
    """Read-modify-write of one object's status under optimistic concurrency.

    ``fn`` gets a copy of the current status and returns the new whole status, or ``None`` to
    write nothing. On ``Conflict`` the object is re-read and ``fn`` applied again, up to
    ``retries`` more times with a short jittered backoff; the last ``Conflict`` is re-raised.
    Returns the stored object (as read when ``fn`` returned ``None``).
    """
    attempt = 0
    while True:
        obj = await store.get(kind, namespace, name)
        status = fn(obj.get("status") or {})
        if status is None:
            return obj
        try:
            return await store.update_status(
                kind, namespace, name, status, obj["metadata"]["resourceVersion"], source=source
            )
        except Conflict:
            if attempt >= retries:
                raise
        await asyncio.sleep(random.uniform(0, Backoff(0.002, 0.1, attempt).next()))  # jittered: writers spread
        attempt += 1


# -- write rules shared by the store implementations -----------------------------------------

MAX_LIMIT = 1000
"""Largest page a list returns."""


def clamp_limit(limit: int | None) -> int:
    """A requested page size within 1..MAX_LIMIT (none or <= 0: MAX_LIMIT)."""
    return MAX_LIMIT if not limit or limit <= 0 else min(limit, MAX_LIMIT)


def incoming(obj: dict, copy_of: Callable[[Any], Any] = clone) -> tuple[str, tuple[str, str], dict]:
    """Validate the identity of a written object and return (kind, key, private copy).

    ``copy_of``: how the private copy is made (the identity, where the caller's object is already
    one: a call deserialized by the store actor)."""
    if not isinstance(obj, dict):
        raise InvalidResource("resource must be an object")
    kind = obj.get("kind")
    if not isinstance(kind, str) or not kind:
        raise InvalidResource("kind is required", field="kind")
    meta = obj.get("metadata")
    name = meta.get("name") if isinstance(meta, dict) else None
    if not isinstance(name, str) or not name:
        raise InvalidResource("metadata.name is required", field="metadata.name")
    body = copy_of(obj)
    key = object_key(body["metadata"].get("namespace"), name)
    body["metadata"]["namespace"] = key[0]
    return kind, key, body


def object_key(namespace: str | None, name: str) -> tuple[str, str]:
    return (namespace or "default", name)


def required_rv(expected_rv: str) -> str:
    rv = clean_rv(expected_rv)
    if not rv:
        raise Conflict("resourceVersion precondition required for update (set metadata.resourceVersion or If-Match)")
    return rv


def rv_conflict(kind: str, expected: str, current: str) -> Conflict:
    return Conflict(f"{kind} resourceVersion conflict: expected={quote(expected)} current={quote(current)}")


MAX_PAGES = 100_000
"""Bound on one ``list_all``'s pages (a page holds up to the store's page size, 1,000)."""


async def pages(store: "Store", kind: str, namespace: str | None = None, selector: "LabelSelector | None" = None,
                limit: int | None = None):
    """Every page of a list, in order (an async iterator); stops on an empty or repeated cursor."""
    after = None
    for _ in range(MAX_PAGES):
        page = await store.list(kind, namespace, selector, limit, after)
        yield page
        if not page.continue_ or not page.items or page.continue_ == after:
            return
        after = page.continue_


async def list_all(store: "Store", kind: str, namespace: str | None = None,
                   selector: "LabelSelector | None" = None) -> list[dict]:
    """Every object of ``kind`` (in ``namespace``, matching ``selector``), all pages read."""
    return [obj async for page in pages(store, kind, namespace, selector) for obj in page.items]

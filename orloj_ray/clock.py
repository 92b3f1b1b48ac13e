"""Wall-clock timestamps in upstream's format, with no imports beyond the standard library.

Agent actors stamp ``lastTurnAt`` with these; keeping them here (not in ``store.util``) keeps
an idle agent actor from loading the store, pydantic and the resource models.
"""

from __future__ import annotations

from datetime import datetime, timezone


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

"""Small readers of resource documents (plain JSON dicts) shared by the client's parts."""

from __future__ import annotations

import json
from typing import Any


def copy_doc(doc: dict) -> dict:
    return json.loads(json.dumps(doc))


def name_of(doc: dict) -> str:
    return str((doc.get("metadata") or {}).get("name", ""))


def resource_version(obj: dict | None) -> str:
    return str(((obj or {}).get("metadata") or {}).get("resourceVersion", ""))


def phase_of(obj: dict | None) -> str:
    return str(((obj or {}).get("status") or {}).get("phase") or "")


def as_str(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)

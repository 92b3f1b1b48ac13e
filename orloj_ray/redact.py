"""One redactor for every text that leaves a tool call or an error.

``Redactor(values)`` replaces each known secret value (longest first), and the common
credential shapes upstream's ``runtime/redact.go`` masks (the value after ``Bearer``/``Basic``,
``Authorization:``, ``X-Api-Key:``, ``api_key=``/``api-key:``, ``secret=``, ``password=``,
``token=``, and ``sk-...`` keys), with ``[REDACTED]`` as upstream does.
"""

from __future__ import annotations

import re
from typing import Any, Iterable

MASK = "[REDACTED]"
MIN_SECRET_LEN = 4
"""Shorter values are not replaced: masking every "abc" in a text would destroy it."""

_PATTERNS = (
    re.compile(r"(?i)(\b(?:bearer|basic)\s+)[A-Za-z0-9._~+/=\-]{4,}"),
    re.compile(r"(?i)((?:proxy-)?authorization\s*[:=]\s*)(?!(?:bearer|basic)\s)[^\s,;\"'}]+"),
    re.compile(r"(?i)(\bx-api-key\s*[:=]\s*)[^\s,;\"'}]+"),
    re.compile(r"(?i)(\b(?:api[_-]?key|client[_-]?secret|secret|password|passwd|access[_-]?token|token)"
               r"[\"']?\s*[:=]\s*[\"']?)[^\s,;\"'}&]+"),
    re.compile(r"()\bsk-[A-Za-z0-9_\-]{10,}"),
)


class Redactor:
    def __init__(self, values: Iterable[str] = ()):
        self._values = sorted({v for v in values if v and len(v) >= MIN_SECRET_LEN}, key=len, reverse=True)

    def __repr__(self) -> str:  # never show the values
        return f"Redactor({len(self._values)} values)"

    def with_values(self, values: Iterable[str]) -> "Redactor":
        return Redactor([*self._values, *values])

    def text(self, value: str) -> str:
        if not value:
            return value
        for secret in self._values:
            value = value.replace(secret, MASK)
        for pattern in _PATTERNS:
            value = pattern.sub(lambda m: m.group(1) + MASK, value)
        return value

    def deep(self, value: Any) -> Any:
        """Redact every string inside dicts/lists (keys are kept)."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {k: self.deep(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return type(value)(self.deep(v) for v in value)
        return value


def redact(value: str, secrets: Iterable[str] = ()) -> str:
    return Redactor(secrets).text(value)

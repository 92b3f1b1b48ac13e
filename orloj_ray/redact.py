"""One redactor for every text that leaves a tool call or an error, and for every task record.

``Redactor(values)`` replaces each known secret value (longest first), and the common
credential shapes upstream's ``runtime/redact.go`` masks (the value after ``Bearer``/``Basic``,
``Authorization:``, ``X-Api-Key:``, ``api_key=``/``api-key:``, ``secret=``, ``password=``,
``token=``, and ``sk-...`` keys), with ``[REDACTED]`` as upstream does.

``RecordMask(values)`` is what the task recorder applies to everything a task writes (status,
events, audit records, the messages it sends): the secret values resolved for the task and
their base64 forms, and nothing else. The credential patterns are left out there: they would
rewrite ordinary model text ("Basic information", "token=" in a code sample).
"""

from __future__ import annotations

import base64
import json
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
    def __init__(self, values: Iterable[str] = (), *, patterns: bool = True):
        self._values = sorted({v for v in values if v and len(v) >= MIN_SECRET_LEN}, key=len, reverse=True)
        self._patterns = _PATTERNS if patterns else ()

    def __repr__(self) -> str:  # never show the values
        return f"Redactor({len(self._values)} values)"

    def with_values(self, values: Iterable[str]) -> "Redactor":
        return Redactor([*self._values, *values], patterns=bool(self._patterns))

    def text(self, value: str) -> str:
        if not value:
            return value
        for secret in self._values:
            value = value.replace(secret, MASK)
        for pattern in self._patterns:
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


class RecordMask:
    """The secret values of one task, masked in whatever the task records.

    ``record(obj)`` returns ``obj`` itself when none of the values occurs in it (one scan of its
    JSON text, so a write of a task without a leak costs a ``json.dumps``), else a masked copy.
    An empty mask (a task that resolved no secret) costs nothing.
    """

    def __init__(self, values: Iterable[str] = ()):
        forms = set()
        for value in values:
            if value and len(value) >= MIN_SECRET_LEN:
                forms.add(value)
                forms.add(base64.b64encode(value.encode()).decode())
                forms.add(base64.urlsafe_b64encode(value.encode()).decode())
        self._redactor = Redactor(forms, patterns=False)
        self._probes = tuple(forms | {json.dumps(f, ensure_ascii=False)[1:-1] for f in forms})

    def __bool__(self) -> bool:
        return bool(self._probes)

    def __repr__(self) -> str:  # never show the values
        return f"RecordMask({len(self._probes)} forms)"

    def text(self, value: str) -> str:
        return self._redactor.text(value) if self._probes and value else value

    def record(self, obj: Any) -> Any:
        if not self._probes:
            return obj
        text = obj if isinstance(obj, str) else json.dumps(obj, ensure_ascii=False, default=str)
        if not any(probe in text for probe in self._probes):
            return obj
        return self._redactor.deep(obj)

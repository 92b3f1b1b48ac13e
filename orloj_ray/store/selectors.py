"""Parsing of the ``labelSelector`` (alias ``labels``) list parameter."""

from __future__ import annotations

from orloj_ray.errors import InvalidResource
from orloj_ray.store.base import LabelSelector
from orloj_ray.store.util import quote


def parse_label_selector(text: str | None) -> LabelSelector:
    """Parse ``key=value[,key=value...]`` (``key==value`` too); empty text selects everything.

    Terms are AND-ed; blank terms are skipped. Anything else (``a``, ``a!=b``, ``=b``) raises
    ``InvalidResource`` with ``field="labelSelector"``.
    """
    terms: dict[str, str] = {}
    for raw in (text or "").split(","):
        term = raw.strip()
        if not term:
            continue
        key, sep, value = term.partition("=")
        if value.startswith("="):
            value = value[1:]
        key = key.strip()
        if not sep or key.endswith("!"):
            raise _invalid(term, "expected key=value pairs")
        if not key:
            raise _invalid(term, "key is required")
        terms[key] = value.strip()
    return LabelSelector(terms)


def _invalid(term: str, problem: str) -> InvalidResource:
    return InvalidResource(f"invalid label selector {quote(term)}: {problem}", field="labelSelector")

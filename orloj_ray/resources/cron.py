"""Upstream's cron dialect (``cronexpr/cronexpr.go``): exactly 5 numeric fields
(minute hour day-of-month month day-of-week) with ``*``, lists, ranges and ``/step``;
day-of-week 7 means Sunday. No names (``MON``), no ``@daily``, no seconds field.
"""

from __future__ import annotations

_FIELDS = (
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day-of-month", 1, 31),
    ("month", 1, 12),
    ("day-of-week", 0, 6),
)


def validate_cron(spec: str) -> None:
    """Raise ``ValueError`` with upstream's message unless ``spec`` is a valid schedule."""
    parts = spec.split()
    if len(parts) != 5:
        raise ValueError(f'invalid cron schedule "{spec}": expected 5 fields')
    for text, (name, low, high) in zip(parts, _FIELDS, strict=True):
        try:
            for segment in text.split(","):
                _check_segment(segment.strip(), low, high, sunday_alias=name == "day-of-week")
        except ValueError as exc:
            raise ValueError(f"invalid {name} field: {exc}") from None


def _check_segment(segment: str, low: int, high: int, *, sunday_alias: bool) -> None:
    if not segment:
        raise ValueError("invalid list segment")
    base = segment
    if "/" in segment:
        pieces = segment.split("/")
        if len(pieces) != 2:
            raise ValueError(f'invalid step segment "{segment}"')
        base = pieces[0].strip()
        if not base:
            raise ValueError(f'invalid step base in "{segment}"')
        step = pieces[1].strip()
        if not step.isdigit() or int(step) <= 0:
            raise ValueError(f'invalid step value in "{segment}"')
    if base == "*":
        return
    if "-" in base:
        bounds = base.split("-")
        if len(bounds) != 2:
            raise ValueError(f'invalid range "{base}"')
        left, right = (_value(b, low, high, sunday_alias) for b in bounds)
        if right < left:
            raise ValueError(f'invalid range "{base}"')
        return
    _value(base, low, high, sunday_alias)


def _value(text: str, low: int, high: int, sunday_alias: bool) -> int:
    text = text.strip()
    if not text.lstrip("+-").isdigit():
        raise ValueError(f'invalid value "{text}"')
    value = int(text)
    if sunday_alias and value == 7:
        value = 0
    if not low <= value <= high:
        raise ValueError(f"value {value} out of range [{low},{high}]")
    return value

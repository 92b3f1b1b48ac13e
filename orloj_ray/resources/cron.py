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


_DAYS_IN_MONTH = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)  # February: leap years count


def never_fires(spec: str) -> bool:
    """Whether a valid schedule can never match a date: it names days of month and no
    day of week (cron ORs the two when both are restricted), and none of its months has any
    of those days (``30 2 30 2 *``: February 30)."""
    _, _, dom, month, dow = spec.split()
    if dom == "*" or dow != "*":
        return False
    days, months = _values(dom, 1, 31), _values(month, 1, 12)
    return all(day > _DAYS_IN_MONTH[m - 1] for m in months for day in days)


def _values(text: str, low: int, high: int) -> set[int]:
    out: set[int] = set()
    for segment in text.split(","):
        base, _, step = segment.strip().partition("/")
        base = base.strip()
        if base == "*":
            first, last = low, high
        elif "-" in base:
            first, last = (int(b) for b in base.split("-"))
        else:
            first = last = int(base)
            if step:
                last = high
        out.update(range(first, last + 1, int(step) if step else 1))
    return out


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

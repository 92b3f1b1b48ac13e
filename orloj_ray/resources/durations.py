"""Go duration strings (``time.ParseDuration``): ``30s``, ``250ms``, ``1h30m``, ``1.5h``, ``0``.

Units: ``ns``, ``us`` (``µs``), ``ms``, ``s``, ``m``, ``h``; an optional sign; no days.
Error texts are Go's, so messages read like upstream's
(``invalid spec.runtime.timeout "x": time: invalid duration "x"``).
"""

from __future__ import annotations

import re
from datetime import timedelta

from orloj_ray.resources.base import quote, report

_UNIT_NS = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,
    "μs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}
_NUMBER = re.compile(r"(\d*)(?:\.(\d*))?")
_UNIT = re.compile(r"[^\d.]*")
_MAX_NS = 2**63 - 1


def parse_duration(text: str) -> timedelta:
    """Parse a Go duration string; ``ValueError`` with Go's message when it is not one."""
    rest = text
    sign = 1
    if rest[:1] in ("+", "-"):
        sign = -1 if rest[0] == "-" else 1
        rest = rest[1:]
    if rest == "0":
        return timedelta(0)
    if not rest:
        raise ValueError(f"time: invalid duration {quote(text)}")
    total_ns = 0
    while rest:
        number = _NUMBER.match(rest)
        whole, fraction = number.group(1), number.group(2) or ""
        if not whole and not fraction:
            raise ValueError(f"time: invalid duration {quote(text)}")
        rest = rest[number.end():]
        unit = _UNIT.match(rest).group(0)
        if not unit:
            raise ValueError(f"time: missing unit in duration {quote(text)}")
        if unit not in _UNIT_NS:
            raise ValueError(f"time: unknown unit {quote(unit)} in duration {quote(text)}")
        rest = rest[len(unit):]
        scale = _UNIT_NS[unit]
        total_ns += int(whole or 0) * scale + int(fraction or 0) * scale // 10 ** len(fraction)
        if total_ns > _MAX_NS:
            raise ValueError(f"time: invalid duration {quote(text)}")
    return timedelta(microseconds=sign * total_ns / 1000)


def check_duration(value: str, field: str, *, positive: bool = False) -> bool:
    """Report (``base.report``, upstream's wording) unless ``value`` is a Go duration that is
    not negative (and not zero when ``positive``: a timeout of 0 would never let anything
    run); returns whether it is good."""
    try:
        duration = parse_duration(value)
    except ValueError as exc:
        report(field, f"invalid {field} {quote(value)}: {exc}")
        return False
    if duration < timedelta(0) or (positive and duration == timedelta(0)):
        report(field, f"invalid {field} {quote(value)}: expected a duration "
                      f"{'greater than 0' if positive else 'of 0 or more'}")
        return False
    return True

"""A small metrics registry: counters, gauges and histograms with labels, as plain data.

Why not ``prometheus_client``: the numbers are recorded in the supervisors' processes and
shown by the API's replicas, so what matters is a snapshot that crosses a Ray call as JSON,
a merge of several supervisors' snapshots, and the Prometheus text of the merged result.
``Registry.snapshot`` / ``merge`` / ``render`` are exactly that, with no global state and no I/O.

A *sink* (``Registry.add_sink``) sees every change as it happens, ``(family, op, value,
labels)``; ``actors/metrics_export.py`` uses one to forward the changes to ``ray.util.metrics``.

Snapshot format (JSON)::

    {"families": [{"name", "kind": "counter|gauge|histogram", "help", "labels": [...],
                   "buckets": [...] (histograms), "merge": "sum|max" (gauges),
                   "samples": [{"labels": [values...], "value": x}                  # counter, gauge
                               {"labels": [...], "counts": [...], "sum": s, "count": n}]}]}  # histogram

Histogram ``counts`` are per bucket (not cumulative), one more than ``buckets`` (the +Inf one).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

DEFAULT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
"""Prometheus' default buckets (seconds), the ones upstream's histograms use."""

KINDS = ("counter", "gauge", "histogram")
GAUGE_MERGES = ("sum", "max")

Sink = Callable[["Family", str, float, dict[str, str]], None]


@dataclass
class Family:
    """One metric name with a fixed set of label names and a value per label combination."""

    name: str
    kind: str
    help: str
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] = ()
    merge: str = "sum"
    """How gauges of several processes combine: ``sum`` (each holds a part) or ``max`` (each sees all)."""
    _values: dict[tuple[str, ...], float] = field(default_factory=dict, repr=False)
    _hist: dict[tuple[str, ...], list] = field(default_factory=dict, repr=False)  # key -> [counts, sum, count]
    _sinks: list[Sink] = field(default_factory=list, repr=False)

    def _key(self, labels: dict[str, object]) -> tuple[str, ...]:
        unknown = set(labels) - set(self.labels)
        if unknown:
            raise ValueError(f"metric {self.name}: unknown label(s) {', '.join(sorted(unknown))}; "
                             f"its labels are {', '.join(self.labels) or '(none)'}")
        return tuple(str(labels.get(name, "") or "") for name in self.labels)

    def _notify(self, op: str, value: float, key: tuple[str, ...]) -> None:
        for sink in self._sinks:
            sink(self, op, value, dict(zip(self.labels, key)))

    def inc(self, amount: float = 1.0, **labels) -> None:
        if self.kind == "histogram":
            raise TypeError(f"metric {self.name} is a histogram: use observe()")
        if self.kind == "counter" and amount < 0:
            raise ValueError(f"counter {self.name} can only go up (got {amount})")
        key = self._key(labels)
        self._values[key] = self._values.get(key, 0.0) + amount
        self._notify("inc", amount, key)

    def set(self, value: float, **labels) -> None:
        if self.kind != "gauge":
            raise TypeError(f"metric {self.name} is a {self.kind}: only gauges are set")
        key = self._key(labels)
        self._values[key] = float(value)
        self._notify("set", float(value), key)

    def replace(self, values: dict[tuple[str, ...], float]) -> None:
        """A gauge's whole current state: label combinations left out are gone (set to 0 for sinks)."""
        if self.kind != "gauge":
            raise TypeError(f"metric {self.name} is a {self.kind}: only gauges are replaced")
        for key in set(self._values) - set(values):
            self._notify("set", 0.0, key)
        self._values = {tuple(map(str, k)): float(v) for k, v in values.items()}
        for key, value in self._values.items():
            self._notify("set", value, key)

    def observe(self, value: float, **labels) -> None:
        if self.kind != "histogram":
            raise TypeError(f"metric {self.name} is a {self.kind}: use inc() or set()")
        if math.isnan(value):
            return
        key = self._key(labels)
        entry = self._hist.get(key)
        if entry is None:
            entry = self._hist[key] = [[0] * (len(self.buckets) + 1), 0.0, 0]
        entry[0][bisect.bisect_left(self.buckets, value)] += 1
        entry[1] += value
        entry[2] += 1
        self._notify("observe", value, key)

    def value(self, **labels) -> float:
        """The current value (counter, gauge) or observation count (histogram) for ``labels``."""
        key = self._key(labels)
        if self.kind == "histogram":
            entry = self._hist.get(key)
            return float(entry[2]) if entry else 0.0
        return self._values.get(key, 0.0)

    def snapshot(self) -> dict:
        out = {"name": self.name, "kind": self.kind, "help": self.help, "labels": list(self.labels)}
        if self.kind == "histogram":
            out["buckets"] = list(self.buckets)
            out["samples"] = [{"labels": list(k), "counts": list(v[0]), "sum": v[1], "count": v[2]}
                              for k, v in sorted(self._hist.items())]
        else:
            if self.kind == "gauge":
                out["merge"] = self.merge
            out["samples"] = [{"labels": list(k), "value": v} for k, v in sorted(self._values.items())]
        return out


class Registry:
    """Families by name; registering the same name twice returns the first (same kind and labels)."""

    def __init__(self) -> None:
        self._families: dict[str, Family] = {}
        self._sinks: list[Sink] = []

    def _register(self, name: str, kind: str, help: str, labels: Iterable[str], **extra) -> Family:
        labels = tuple(labels)
        existing = self._families.get(name)
        if existing is not None:
            if existing.kind != kind or existing.labels != labels:
                raise ValueError(f"metric {name} is already registered as a {existing.kind} with labels "
                                 f"{existing.labels}")
            return existing
        family = Family(name, kind, help, labels, **extra)
        family._sinks = self._sinks  # shared list: a sink added later sees every family
        self._families[name] = family
        return family

    def counter(self, name: str, help: str, labels: Iterable[str] = ()) -> Family:
        return self._register(name, "counter", help, labels)

    def gauge(self, name: str, help: str, labels: Iterable[str] = (), *, merge: str = "sum") -> Family:
        if merge not in GAUGE_MERGES:
            raise ValueError(f"gauge {name}: merge must be one of {', '.join(GAUGE_MERGES)}")
        return self._register(name, "gauge", help, labels, merge=merge)

    def histogram(self, name: str, help: str, labels: Iterable[str] = (),
                  buckets: Iterable[float] = DEFAULT_BUCKETS) -> Family:
        buckets = tuple(sorted(float(b) for b in buckets))
        if not buckets:
            raise ValueError(f"histogram {name} needs at least one bucket")
        return self._register(name, "histogram", help, labels, buckets=buckets)

    def families(self) -> list[Family]:
        return list(self._families.values())

    def get(self, name: str) -> Family:
        return self._families[name]

    def add_sink(self, sink: Sink) -> None:
        self._sinks.append(sink)

    def snapshot(self) -> dict:
        return {"families": [f.snapshot() for f in self._families.values()]}


def merge(snapshots: Iterable[dict]) -> dict:
    """One snapshot from several processes' snapshots: counters and histograms add up, gauges
    add up or take the largest (their ``merge``). A family seen with different kinds or
    labels keeps the first and ignores the others (a version skew must not break ``/metrics``)."""
    merged: dict[str, dict] = {}
    for snap in snapshots:
        for fam in (snap or {}).get("families") or []:
            name = fam.get("name")
            if not name or fam.get("kind") not in KINDS:
                continue
            into = merged.get(name)
            if into is None:
                merged[name] = into = {**fam, "samples": []}
                into["_by"] = {}
            elif (into["kind"], into["labels"], into.get("buckets")) != (fam["kind"], fam["labels"], fam.get("buckets")):
                continue
            by = into["_by"]
            for sample in fam.get("samples") or []:
                key = tuple(sample.get("labels") or ())
                have = by.get(key)
                if have is None:
                    by[key] = {**sample, "counts": list(sample["counts"])} if fam["kind"] == "histogram" else dict(sample)
                elif fam["kind"] == "histogram":
                    have["counts"] = [a + b for a, b in zip(have["counts"], sample["counts"])]
                    have["sum"] += sample["sum"]
                    have["count"] += sample["count"]
                elif fam["kind"] == "gauge" and fam.get("merge") == "max":
                    have["value"] = max(have["value"], sample["value"])
                else:
                    have["value"] += sample["value"]
    out = []
    for fam in merged.values():
        by = fam.pop("_by")
        fam["samples"] = [by[k] for k in sorted(by)]
        out.append(fam)
    return {"families": out}


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n")


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def _labels(names: Iterable[str], values: Iterable[str], extra: tuple[str, str] | None = None) -> str:
    pairs = [(n, v) for n, v in zip(names, values)]
    if extra is not None:
        pairs.append(extra)
    if not pairs:
        return ""
    return "{" + ",".join(f'{n}="{_escape_label(str(v))}"' for n, v in pairs) + "}"


def render(snapshot: dict) -> str:
    """Prometheus text exposition (format 0.0.4) of a snapshot."""
    lines: list[str] = []
    for fam in snapshot.get("families") or []:
        name, kind, names = fam["name"], fam["kind"], fam.get("labels") or []
        lines.append(f"# HELP {name} {_escape_help(fam.get('help') or name)}")
        lines.append(f"# TYPE {name} {kind}")
        for sample in fam.get("samples") or []:
            values = sample.get("labels") or []
            if kind != "histogram":
                lines.append(f"{name}{_labels(names, values)} {_number(sample['value'])}")
                continue
            running = 0
            for bound, count in zip([*fam["buckets"], math.inf], sample["counts"]):
                running += count
                lines.append(f"{name}_bucket{_labels(names, values, ('le', _number(bound)))} {running}")
            lines.append(f"{name}_sum{_labels(names, values)} {_number(sample['sum'])}")
            lines.append(f"{name}_count{_labels(names, values)} {sample['count']}")
    return "\n".join(lines) + "\n" if lines else ""

"""Building blocks shared by every kind.

* ``Str``, ``Int``, ``Bool``: scalar field types as lenient as upstream's YAML reader (a number
  in a string field is read as its text, ``"10"`` in an integer field as 10) and no more:
  a list where a string goes, or ``"ten"`` where an integer goes, is an error.
* ``Wire``: the base model. Every snake_case field also accepts its camelCase spelling on input
  (upstream's YAML reader accepts ``modelRef``, ``maxTurns``, ...), unknown fields are ignored,
  and ``wire()`` writes the JSON shape Go's ``encoding/json`` gives upstream's structs.
* ``validate_all()``: pydantic errors become reports naming the field path.
* ``collecting()``, ``report()``, ``warn()``: a check reports every problem of a document at
  once. Inside ``collecting()`` a ``report`` is recorded and the check goes on (a bad enum
  takes its default, so later rules still run); outside it raises at once.
* ``unknown_fields()``: input keys no model field reads, with a "did you mean" suggestion.
"""

from __future__ import annotations

import copy
import difflib
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, ClassVar

from pydantic import (
    AliasChoices,
    AliasGenerator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    ValidationError,
    model_validator,
)
from pydantic.alias_generators import to_camel

from orloj_ray.errors import InvalidResource

if TYPE_CHECKING:
    from orloj_ray.resources.envelope import Metadata

_INTEGER_TEXT = re.compile(r"\s*[+-]?\d+\s*")


def _as_text(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, dict) and len(value) == 1 and next(iter(value.values())) is None:
        # `- AUTH_PATH:` is a one-key map to YAML, the string "AUTH_PATH:" to upstream's line reader
        return f"{next(iter(value))}:"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return value


def _as_integer(value: Any) -> Any:
    if isinstance(value, str) and _INTEGER_TEXT.fullmatch(value):
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _as_boolean(value: Any) -> Any:
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    return value


Str = Annotated[str, Strict(), BeforeValidator(_as_text)]
Int = Annotated[int, Strict(), BeforeValidator(_as_integer)]
Bool = Annotated[bool, Strict(), BeforeValidator(_as_boolean)]

MAX_ATTEMPTS = 100
"""Most attempts any retry setting may ask for (task, message, tool, MCP reconnect)."""
MAX_TOKENS = 1_000_000_000
"""Largest token budget or rate a policy may set."""
MAX_REPLICAS = 100
"""Most actors one agent may ask for (each is a process of about 100 MiB)."""
MAX_COUNT = 10_000
"""Bound of the other counts (steps, turns, in-flight messages, concurrent tasks, history)."""


def bounded(default: int, low: int, high: int) -> Any:
    """The default of an ``Int`` field that must lie in ``low..high``; a value outside is
    refused naming the bound (``invalid spec.replicas 1000000: expected <= 100``)."""
    return Field(default, ge=low, le=high)


_CAMEL_SPELLINGS = {"token_url": "tokenURL"}


def camel(name: str) -> str:
    """The camelCase spelling of a snake_case field name (``token_url`` -> ``tokenURL``)."""
    return _CAMEL_SPELLINGS.get(name) or to_camel(name)


def _accepted_names(name: str) -> AliasChoices:
    return AliasChoices(*dict.fromkeys((name, camel(name), to_camel(name))))


def is_empty(value: Any) -> bool:
    """Go's omitempty test: "", 0, false, empty lists and maps (a struct is never empty)."""
    if isinstance(value, (str, list, dict)):
        return not value
    return value is None or value is False or (type(value) is int and value == 0)


def _plain(value: Any) -> Any:
    if isinstance(value, Wire):
        return value.wire()
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


class Wire(BaseModel):
    """Base of every model: lenient input names, Go-shaped output."""

    model_config = ConfigDict(
        extra="ignore",
        protected_namespaces=(),
        alias_generator=AliasGenerator(validation_alias=_accepted_names),
    )

    KEEP: ClassVar[frozenset[str]] = frozenset()
    """Fields written even when empty (Go fields without ``omitempty``)."""
    CAMEL: ClassVar[frozenset[str]] = frozenset()
    """Fields whose JSON name is camelCase (``secretRef``, ``headerName``, ...)."""

    @model_validator(mode="before")
    @classmethod
    def _drop_nulls(cls, data: Any) -> Any:
        # YAML `key:` with no value means "not set", as for upstream's reader.
        if data is None:
            return {}
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if v is not None}
        return data

    def wire(self) -> dict[str, Any]:
        """The JSON object upstream would write: empty fields left out, nested objects kept."""
        out: dict[str, Any] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if value is None or (name not in self.KEEP and is_empty(value)):
                continue
            out[camel(name) if name in self.CAMEL else name] = _plain(value)
        return out


class Spec(Wire):
    """Base of the ``spec`` model of a kind."""

    def normalize(self, meta: Metadata, status: dict[str, Any], now: datetime) -> None:
        """Apply upstream's defaults and checks in place; may fill server-computed status
        fields (``meta`` is already normalized). No rules by default."""


_EXPECTED = {
    "string_type": "a string",
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "bool_type": "a boolean (true or false)",
    "bool_parsing": "a boolean (true or false)",
    "dict_type": "a map",
    "model_type": "a map",
    "model_attributes_type": "a map",
    "list_type": "a list",
    "string_or_map_type": "a string or a map",
}


def field_path(loc: Iterable[str | int], prefix: str = "") -> str:
    """``("tools", 1, "name")`` -> ``spec.tools[1].name`` (union tags, written ``~x``, skipped)."""
    path = prefix
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif not part.startswith("~"):
            path = f"{path}.{part}" if path else part
    return path


def describe(value: Any) -> str:
    """How a wrong value is shown in an error message."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**18:
        return f"a number of {len(str(abs(value)))} digits"
    if isinstance(value, str) and len(value) > 80:
        return repr(value[:60]) + f"... ({len(value)} characters)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a map"
    if isinstance(value, (list, tuple)):
        return "a list"
    if value is None:
        return "null"
    return repr(value)


def _problem_message(err: dict, path: str) -> str:
    kind = err["type"]
    if kind == "missing":
        return f"{path} is required"
    if kind == "extra_forbidden":
        return f"{path}: unknown field"
    if kind in _EXPECTED:
        return f"{path}: expected {_EXPECTED[kind]}, got {describe(err['input'])}"
    if kind in ("greater_than_equal", "less_than_equal"):
        bound = (err.get("ctx") or {}).get("ge" if kind == "greater_than_equal" else "le")
        sign = ">=" if kind == "greater_than_equal" else "<="
        return f"invalid {path} {describe(err['input'])}: expected {sign} {bound}"
    return f"{path}: {err['msg']}"


_MAX_PASSES = 50


def validate_all(model: type[Wire], data: Any, prefix: str = "") -> Any:
    """``model.model_validate(data)``, reporting (see ``report``) every type problem.

    Each bad value is reported, then left out of a copy of ``data`` and validation runs again,
    so the instance returned (None only when nothing can be read) carries every good value and
    the rules after validation still run. Returns the paths reported, beside the instance."""
    bad: list[str] = []
    for _ in range(_MAX_PASSES):
        try:
            return model.model_validate(data), bad
        except ValidationError as exc:
            if data is not None and not bad:
                data = copy.deepcopy(data)
            progressed = False
            for err in exc.errors():
                path = field_path(err["loc"], prefix)
                report(path, _problem_message(err, path))
                bad.append(path)
                progressed = _drop(data, err["loc"]) or progressed
            if not progressed:
                return None, bad
    return None, bad


def _drop(data: Any, loc: Iterable[str | int]) -> bool:
    """Remove the value at ``loc`` (or the nearest map entry holding it) from ``data``."""
    parts = [p for p in loc if not (isinstance(p, str) and (p.startswith("~") or p == "[key]"))]
    holder, key = None, None
    node = data
    for part in parts:
        if isinstance(node, dict) and part in node:
            holder, key, node = node, part, node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        else:
            break
    if holder is None:
        return False
    del holder[key]
    return True


@dataclass
class Findings:
    """What a check found: problems that refuse the document, and warnings that do not."""

    errors: list[dict[str, str]] = dataclass_field(default_factory=list)
    warnings: list[dict[str, str]] = dataclass_field(default_factory=list)


_FINDINGS: ContextVar[Findings | None] = ContextVar("orloj_resource_findings", default=None)


@contextmanager
def collecting() -> Iterator[Findings]:
    """Collect ``report``s and ``warn``s of the checks run inside, instead of raising."""
    findings = Findings()
    token = _FINDINGS.set(findings)
    try:
        yield findings
    finally:
        _FINDINGS.reset(token)


def report(field: str, message: str) -> None:
    """A problem of the document: recorded inside ``collecting()``, else raised at once."""
    findings = _FINDINGS.get()
    if findings is None:
        raise invalid(field, message)
    findings.errors.append({"field": field, "message": message})


def warn(field: str, message: str) -> None:
    """Something the user should know that does not refuse the document (``collecting()``
    only; dropped elsewhere)."""
    findings = _FINDINGS.get()
    if findings is not None:
        findings.warnings.append({"field": field, "message": message})


def input_names(model: type[Wire]) -> dict[str, str]:
    """Every key ``model`` reads (snake_case and camelCase spellings) -> its field name."""
    names: dict[str, str] = {}
    for name in model.model_fields:
        for spelling in _accepted_names(name).choices:
            names[spelling] = name
    return names


def unknown_fields(obj: Any, data: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """``(field path, suggestion)`` for each key of ``data`` that no field of the validated
    ``obj`` reads, walking nested models, lists and maps of models alongside the input; the
    suggestion is the closest field name ("" when none is close)."""
    if isinstance(obj, Wire) and isinstance(data, dict):
        model = type(obj)
        if model.model_config.get("extra") == "forbid":
            return  # refused by validation already
        names = input_names(model)
        for key, value in data.items():
            key_path = f"{path}.{key}" if path else str(key)
            name = names.get(key) if isinstance(key, str) else None
            if name is None:
                yield key_path, _closest(str(key), model)
            else:
                yield from unknown_fields(getattr(obj, name), value, key_path)
    elif isinstance(obj, list) and isinstance(data, list):
        for i, (item, value) in enumerate(zip(obj, data)):
            yield from unknown_fields(item, value, f"{path}[{i}]")
    elif isinstance(obj, dict) and isinstance(data, dict):
        for key, value in data.items():
            if key in obj:
                yield from unknown_fields(obj[key], value, f"{path}.{key}")


def _closest(key: str, model: type[Wire]) -> str:
    wire_names = [camel(n) if n in model.CAMEL else n for n in model.model_fields]
    close = difflib.get_close_matches(key, wire_names, n=1, cutoff=0.6)
    return close[0] if close else ""


def invalid(field: str, message: str) -> InvalidResource:
    return InvalidResource(message, field=field)


def trimmed(values: Iterable[str]) -> list[str]:
    """Trim each value and drop blanks."""
    return [v.strip() for v in values if v.strip()]


def unique(values: Iterable[str], *, fold_case: bool = True) -> list[str]:
    """Trim, drop blanks and duplicates (case-insensitively by default), keeping the first."""
    seen: set[str] = set()
    out = []
    for value in trimmed(values):
        key = value.lower() if fold_case else value
        if key not in seen:
            seen.add(key)
            out.append(value)
    return out


def choice(value: str, field: str, allowed: tuple[str, ...], default: str, message: str) -> str:
    """Lower-case and trim an enum value, default it when blank, and check it is allowed.
    ``message`` is upstream's error text with ``{value}`` where the quoted value goes.
    A value not allowed is reported (``report``) and the default returned."""
    normalized = value.strip().lower() or default
    if normalized not in allowed:
        report(field, message.format(value=quote(value)))
        return default
    return normalized


def quote(value: str) -> str:
    """Go's ``%q`` for the strings we show in messages."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'

"""Building blocks shared by every kind.

* ``Str``, ``Int``, ``Bool``: scalar field types as lenient as upstream's YAML reader (a number
  in a string field is read as its text, ``"10"`` in an integer field as 10) and no more:
  a list where a string goes, or ``"ten"`` where an integer goes, is an error.
* ``Wire``: the base model. Every snake_case field also accepts its camelCase spelling on input
  (upstream's YAML reader accepts ``modelRef``, ``maxTurns``, ...), unknown fields are ignored,
  and ``wire()`` writes the JSON shape Go's ``encoding/json`` gives upstream's structs.
* ``validate()``: pydantic errors become ``InvalidResource`` naming the field path.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, ClassVar

from pydantic import (
    AliasChoices,
    AliasGenerator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
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
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a map"
    if isinstance(value, (list, tuple)):
        return "a list"
    if value is None:
        return "null"
    return repr(value)


def validate(model: type[Wire], data: Any, prefix: str = "") -> Any:
    """``model.model_validate(data)``, raising ``InvalidResource`` for the first problem."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        path = field_path(err["loc"], prefix)
        kind = err["type"]
        if kind == "missing":
            message = f"{path} is required"
        elif kind == "extra_forbidden":
            message = f"{path}: unknown field"
        elif kind in _EXPECTED:
            message = f"{path}: expected {_EXPECTED[kind]}, got {describe(err['input'])}"
        else:
            message = f"{path}: {err['msg']}"
        raise InvalidResource(message, field=path) from None


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
    ``message`` is upstream's error text with ``{value}`` where the quoted value goes."""
    normalized = value.strip().lower() or default
    if normalized not in allowed:
        raise invalid(field, message.format(value=quote(value)))
    return normalized


def quote(value: str) -> str:
    """Go's ``%q`` for the strings we show in messages."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'

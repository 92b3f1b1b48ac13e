"""JSON Schemas (OpenAPI 3.1 dialect) of the 15 kinds, in the shape the API writes them.

Built from the models themselves, so a field added to a model is in the schema: property
names are the wire names (``secretRef``, ``tokenURL``, ...), ranges come from the fields'
bounds (``bounded``), maps of models and the string-or-object unions (``tools``, grants) are
described as such. ``status`` stays an open object (controllers own it). The schemas describe
what the server returns and what a client should send; the server also reads the camelCase
spellings and numbers written as text (docs/compatibility.md section 4).
"""

from __future__ import annotations

import types
import typing
from typing import Any, Union

from annotated_types import Ge, Le
from pydantic.fields import FieldInfo

from orloj_ray.resources.base import Wire, camel
from orloj_ray.resources.envelope import MAX_NAME_LENGTH, MAX_NAMESPACE_LENGTH, Metadata
from orloj_ray.resources.kinds import API_VERSION, KINDS
from orloj_ray.resources.normalize import RESOURCE_MODELS

REF = "#/components/schemas/"

_STATUS = {
    "type": "object",
    "description": "Written by controllers; the fields below are common to every kind.",
    "properties": {"phase": {"type": "string"}, "lastError": {"type": "string"},
                   "observedGeneration": {"type": "integer", "format": "int64"}},
    "additionalProperties": True,
}


def component_schemas() -> dict[str, dict]:
    """``components.schemas``: every kind (``Agent``), its list (``AgentList``), the models
    they are made of (``AgentSpec``, ``AgentTool``, ...), ``ObjectMeta`` and ``ListMeta``."""
    out: dict[str, dict] = {}
    for info in KINDS:
        model = RESOURCE_MODELS[info.kind]
        spec_model = model.model_fields["spec"].annotation
        _model_schema(spec_model, out)
        out[info.kind] = {
            "type": "object",
            "required": ["apiVersion", "kind", "metadata", "spec"],
            "properties": {
                "apiVersion": {"type": "string", "enum": [API_VERSION]},
                "kind": {"type": "string", "enum": [info.kind]},
                "metadata": {"$ref": REF + "ObjectMeta"},
                "spec": {"$ref": REF + spec_model.__name__},
                "status": {"$ref": REF + "Status"},
            },
        }
        out[f"{info.kind}List"] = {
            "type": "object",
            "required": ["items"],
            "properties": {"items": {"type": "array", "items": {"$ref": REF + info.kind}},
                           "continue": {"type": "string", "description": "Cursor of the next page (pass as after)."}},
        }
    meta = _model_schema(Metadata, out)
    out["ObjectMeta"] = out.pop(meta)
    props = out["ObjectMeta"]["properties"]
    props["name"].update(maxLength=MAX_NAME_LENGTH, pattern=r"^[A-Za-z0-9]([-A-Za-z0-9_]*[A-Za-z0-9])?"
                                                            r"(\.[A-Za-z0-9]([-A-Za-z0-9_]*[A-Za-z0-9])?)*$")
    props["namespace"].update(maxLength=MAX_NAMESPACE_LENGTH, pattern=r"^[A-Za-z0-9]([-A-Za-z0-9_]*[A-Za-z0-9])?$",
                              default="default")
    out["ObjectMeta"]["required"] = ["name"]
    out["Status"] = _STATUS
    return out


def _model_schema(model: type[Wire], out: dict[str, dict]) -> str:
    name = model.__name__
    if name in out:
        return name
    out[name] = {}  # placeholder: models may refer to each other
    props: dict[str, Any] = {}
    for field, info in model.model_fields.items():
        wire = camel(field) if field in model.CAMEL else field
        props[wire] = _annotation_schema(info.annotation, info, out)
        if info.description:
            props[wire]["description"] = info.description
    out[name] = {"type": "object", "properties": props}
    if model.model_config.get("extra") == "forbid":
        out[name]["additionalProperties"] = False
    return name


def _annotation_schema(annotation: Any, info: FieldInfo | None, out: dict[str, dict]) -> dict:
    metadata = list(info.metadata) if info is not None else []
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        base, *extra = typing.get_args(annotation)
        return _annotation_schema(base, _with_metadata(extra + metadata), out)
    if origin in (Union, types.UnionType):
        options = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(options) == 1:
            return _annotation_schema(options[0], info, out)
        return {"oneOf": [_annotation_schema(a, None, out) for a in options]}
    if origin is list:
        (item,) = typing.get_args(annotation)
        return {"type": "array", "items": _annotation_schema(item, None, out)}
    if origin is dict:
        _, value = typing.get_args(annotation)
        if value is Any:
            return {"type": "object", "additionalProperties": True}
        return {"type": "object", "additionalProperties": _annotation_schema(value, None, out)}
    if isinstance(annotation, type) and issubclass(annotation, Wire):
        return {"$ref": REF + _model_schema(annotation, out)}
    if annotation is bool:
        return {"type": "boolean"}
    if annotation is int:
        schema: dict[str, Any] = {"type": "integer"}
        for item in metadata:
            if isinstance(item, Ge):
                schema["minimum"] = item.ge
            elif isinstance(item, Le):
                schema["maximum"] = item.le
        return schema
    if annotation is str:
        return {"type": "string"}
    return {}


def _with_metadata(metadata: list) -> FieldInfo:
    info = FieldInfo()
    info.metadata = metadata
    return info

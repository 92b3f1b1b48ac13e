"""Request decoding, precondition parsing and secret redaction for the REST layer."""

from __future__ import annotations

import copy
import datetime as dt
import json
from typing import Any

from starlette.requests import Request

from orloj_ray.engine.resolve import default_endpoint
from orloj_ray.errors import Conflict, InvalidResource
from orloj_ray.resources import DocumentError, parse_document, upstream_view

REDACTED = "***"

PRECONDITION_REQUIRED = "resourceVersion precondition required for update (set metadata.resourceVersion or If-Match)"


async def read_document(request: Request, *, json_only: bool = False) -> dict:
    """Decode a manifest body. JSON is tried first; then (unless ``json_only``) YAML.

    The format is sniffed from the content, never from ``Content-Type``: upstream's load
    tester posts raw YAML labelled ``application/json``. Both are read as the CLI reads files
    (``orloj_ray.resources.parse_document``: YAML 1.2 core scalars, bounded depth and alias
    expansion, no NaN or thousand-digit numbers), so a body can only be refused, never make
    the server run out of time, memory or stack.
    """
    raw = await request.body()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidResource(f"invalid request body: not UTF-8 ({exc})") from exc
    if not text.strip():
        raise InvalidResource("request body is empty: expected a JSON or YAML object")
    if json_only:
        try:
            json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidResource(f"invalid JSON: {exc}") from None
        except (ValueError, RecursionError):
            pass  # JSON syntax; parse_document says what is wrong with it
    try:
        doc = parse_document(text)
    except DocumentError as exc:
        message = str(exc)
        if message.startswith("invalid YAML"):
            message = f"invalid manifest: not JSON, and not YAML ({_one_line(message)})"
        raise InvalidResource(message) from None
    if not isinstance(doc, dict):
        raise InvalidResource(f"invalid manifest: expected an object, got {_json_type(doc)}")
    return doc


async def read_optional_json(request: Request) -> dict:
    """An optional JSON object body; anything unreadable counts as ``{}`` (upstream ignores it)."""
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError):
        return {}
    return doc if isinstance(doc, dict) else {}


def _one_line(exc: Exception | str) -> str:
    return " ".join(str(exc).split())


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    return {list: "array", str: "string", bool: "boolean", int: "number", float: "number"}.get(type(value), "value")


def add_warnings(response: Any, warnings: list[dict]) -> Any:
    """One ``Warning: 299 - "<text>"`` header per warning, as the Kubernetes API server
    sends them (RFC 7234 warn-code 299, "miscellaneous persistent warning"); anything but
    printable ASCII is escaped (``\\u20ac``), so no field name can break the header."""
    for warning in warnings:
        text = "".join(_header_char(c) for c in warning["message"])
        response.headers.append("Warning", f'299 - "{text}"')
    return response


def _header_char(c: str) -> str:
    if c in '"\\':
        return "\\" + c
    if " " <= c <= "~":
        return c
    return f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}" if ord(c) < 0x10000 else f"\\U{ord(c):08x}"


def metadata_of(doc: dict) -> dict:
    meta = doc.get("metadata")
    if meta is None:
        meta = doc["metadata"] = {}
    if not isinstance(meta, dict):
        raise InvalidResource("metadata must be an object", field="metadata")
    return meta


def body_resource_version(doc: dict) -> str:
    meta = doc.get("metadata")
    if not isinstance(meta, dict):
        return ""
    rv = meta.get("resourceVersion")
    return "" if rv is None else str(rv).strip()


def if_match(request: Request) -> str:
    """The ``If-Match`` header without ``W/`` and quotes ("" when absent)."""
    value = request.headers.get("if-match", "").strip()
    if value.startswith("W/"):
        value = value[2:]
    return value.strip().strip('"').strip()


def expected_version(request: Request, body_rv: str) -> str:
    """Upstream's precondition rule for PUT and PUT /status: If-Match or body RV, consistent."""
    header = if_match(request)
    if not header and not body_rv:
        raise Conflict(PRECONDITION_REQUIRED, field="metadata.resourceVersion")
    if header and body_rv and header != body_rv and header != "*":
        raise Conflict(
            f'resourceVersion precondition mismatch: If-Match="{header}" metadata.resourceVersion="{body_rv}"',
            field="metadata.resourceVersion",
        )
    return body_rv or header


def redact(obj: Any) -> Any:
    """A copy of ``obj`` safe to show: Secret ``spec.data`` values masked, ``stringData`` dropped.

    Objects that are not Secrets are returned unchanged (not copied).
    """
    if not isinstance(obj, dict) or str(obj.get("kind", "")).lower() != "secret":
        return obj
    return redact_secret(obj)


class Presenter:
    """What a response shows of stored objects: Secrets redacted (``redact``), Agents in the
    announcement's form also in upstream's shape (``resources.upstream_view``, ``model_ref``
    being the namespace's default ModelEndpoint, looked up once per namespace)."""

    def __init__(self, store: Any) -> None:
        self._store = store
        self._defaults: dict[str, str] = {}

    async def __call__(self, obj: dict) -> dict:
        if str(obj.get("kind", "")).lower() != "agent":
            return redact(obj)
        spec = obj.get("spec") or {}
        endpoint = ""
        if spec.get("model") and not spec.get("model_ref"):
            namespace = (obj.get("metadata") or {}).get("namespace") or "default"
            if namespace not in self._defaults:
                found = await default_endpoint(self._store, namespace)
                self._defaults[namespace] = found["metadata"]["name"] if found else ""
            endpoint = self._defaults[namespace]
        return upstream_view(obj, endpoint)


def redact_secret(obj: dict) -> dict:
    out = copy.deepcopy(obj)
    spec = out.get("spec")
    if isinstance(spec, dict):
        data = spec.get("data")
        if isinstance(data, dict):
            spec["data"] = {k: REDACTED for k in data}
        for key in ("stringData", "string_data"):
            spec.pop(key, None)
    return out


def redact_event_data(kind: str, data: Any) -> Any:
    if str(kind).lower() != "secret" or not isinstance(data, dict):
        return data
    return redact_secret(data)


def now_rfc3339(*, nano: bool = False) -> str:
    """UTC now as RFC3339 (seconds), or with the fraction as Go's ``RFC3339Nano`` trims it."""
    now = dt.datetime.now(dt.timezone.utc)
    fraction = f"{now.microsecond:06d}".rstrip("0") if nano else ""
    return now.strftime("%Y-%m-%dT%H:%M:%S") + (f".{fraction}" if fraction else "") + "Z"

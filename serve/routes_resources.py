"""Generic CRUD over the 15 collections of ``orloj_ray.resources.kinds`` (api.md sections 3-4, 6).

One set of handlers, bound per collection by ``register``; what differs between kinds comes
from ``KindInfo`` (status route or not) and one small table below (JSON-only POST).
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import Response

from orloj_ray import lifecycle
from orloj_ray.errors import Conflict, InvalidResource
from orloj_ray.resources import normalize
from orloj_ray.resources.kinds import KINDS, KindInfo
from orloj_ray.store import parse_label_selector
from serve.codec import (
    Presenter,
    add_warnings,
    body_resource_version,
    expected_version,
    metadata_of,
    read_document,
)
from serve.errors import JSONResponse

MAX_LIST_LIMIT = 1000
"""Upstream clamps ``limit`` to 1..1000 and returns at most 1000 items by default."""

JSON_ONLY_POST = frozenset({"ToolApproval"})
"""Kinds whose POST body must be JSON (upstream: ``400 invalid JSON: ...``)."""


def query_namespace(request: Request) -> str | None:
    """``?namespace=`` trimmed; ``None`` when absent or blank."""
    value = (request.query_params.get("namespace") or "").strip()
    return value or None


def item_namespace(request: Request) -> str:
    """The key namespace on item routes: ``?namespace=``, default ``default``."""
    return query_namespace(request) or "default"


def strict_fields(request: Request) -> bool:
    """Whether unknown fields are refused (``create_app(strict_fields=True)``,
    ``ORLOJ_STRICT_FIELDS``) instead of answered with a ``Warning`` header."""
    return bool(getattr(request.app.state, "strict_fields", False))


def parse_limit(raw: str | None) -> int:
    try:
        n = int(str(raw).strip())
    except (TypeError, ValueError):
        return MAX_LIST_LIMIT
    if n <= 0:
        return MAX_LIST_LIMIT
    return min(n, MAX_LIST_LIMIT)


def parse_selector(request: Request):
    raw = request.query_params.get("labelSelector")
    if raw is None:
        raw = request.query_params.get("labels")
    if raw is None or not raw.strip():
        return None
    try:
        return parse_label_selector(raw)
    except (InvalidResource, ValueError) as exc:
        raise InvalidResource(f'invalid label selector "{raw}": expected key=value pairs',
                              field="labelSelector") from exc


def check_kind(doc: dict, info: KindInfo) -> None:
    """Empty ``kind`` means this collection's kind; another kind is a 400."""
    kind = doc.get("kind")
    if kind is None or (isinstance(kind, str) and not kind.strip()):
        doc["kind"] = info.kind
    elif not isinstance(kind, str) or kind.strip().lower() != info.kind.lower():
        raise InvalidResource(f'unsupported kind "{kind}" for {info.kind}', field="kind")


def normalize_for(doc: dict, info: KindInfo, request_ns: str | None, *, warnings: list[dict] | None = None,
                  strict: bool = False) -> dict:
    """Kind check, request-namespace check and ``normalize``, keeping the body's resourceVersion.
    ``warnings`` receives what validation warns about; ``strict``: unknown fields are errors."""
    check_kind(doc, info)
    meta = metadata_of(doc)
    body_rv = body_resource_version(doc)
    if request_ns and not str(meta.get("namespace") or "").strip():
        meta["namespace"] = request_ns
    obj = normalize(doc, kind=info.kind, warnings=warnings, strict=strict)
    # The store keys objects by kind: always hand it the canonical spelling.
    obj["kind"] = info.kind
    obj_meta = obj.setdefault("metadata", {})
    ns = obj_meta.get("namespace") or "default"
    if request_ns and ns != request_ns:
        raise InvalidResource(f'metadata.namespace "{ns}" does not match request namespace "{request_ns}"',
                              field="metadata.namespace")
    if body_rv and not obj_meta.get("resourceVersion"):
        obj_meta["resourceVersion"] = body_rv
    return obj


def status_envelope(obj: dict) -> dict:
    return {"metadata": obj.get("metadata", {}), "status": obj.get("status") or {}}


def register(app: FastAPI, store) -> None:
    for info in KINDS:
        _register_kind(app, store, info)


def _register_kind(app: FastAPI, store, info: KindInfo) -> None:
    base = f"/v1/{info.plural}"
    kind = info.kind

    async def list_items(request: Request) -> Response:
        q = request.query_params
        limit = parse_limit(q.get("limit"))
        after = (q.get("after") or "").strip() or None
        selector = parse_selector(request)
        ns = query_namespace(request)
        offset = _task_offset(info, request) if after is None else 0
        page = await store.list(kind, namespace=ns, selector=selector, limit=offset + limit, after=after)
        items = page.items[offset:]
        cont = page.continue_
        if offset:
            cont = None
            if items and len(items) == limit:
                last = items[-1]["metadata"]
                cont = last["name"] if ns else f"{last.get('namespace', 'default')}/{last['name']}"
        present = Presenter(store)
        body: dict = {"items": [await present(o) for o in items]}
        if cont:
            body["continue"] = cont
        return JSONResponse(body)

    async def create_item(request: Request) -> Response:
        doc = await read_document(request, json_only=kind in JSON_ONLY_POST)
        warnings: list[dict] = []
        obj = normalize_for(doc, info, query_namespace(request), warnings=warnings, strict=strict_fields(request))
        stored, _created = await store.upsert(obj)
        return add_warnings(JSONResponse(await Presenter(store)(stored), status_code=201), warnings)

    async def get_item(request: Request, name: str) -> Response:
        obj = await store.get(kind, item_namespace(request), name)
        return JSONResponse(await Presenter(store)(obj))

    async def replace_item(request: Request, name: str) -> Response:
        doc = await read_document(request)
        expected = expected_version(request, body_resource_version(doc))
        metadata_of(doc)["name"] = name
        warnings: list[dict] = []
        obj = normalize_for(doc, info, query_namespace(request), warnings=warnings, strict=strict_fields(request))
        stored = await store.update(obj, expected)
        return add_warnings(JSONResponse(await Presenter(store)(stored)), warnings)

    async def delete_item(request: Request, name: str) -> Response:
        await store.delete(kind, item_namespace(request), name)
        if kind == "McpServer":
            return JSONResponse({"deleted": name})
        return Response(status_code=204)

    async def get_status(request: Request, name: str) -> Response:
        obj = await store.get(kind, item_namespace(request), name)
        return JSONResponse(status_envelope(obj))

    async def put_status(request: Request, name: str) -> Response:
        doc = await read_document(request, json_only=True)
        expected = expected_version(request, body_resource_version(doc))
        status = doc.get("status")
        if status is None:
            status = {}
        if not isinstance(status, dict):
            raise InvalidResource("status must be an object", field="status")
        if kind == "Task":  # a phase must be a phase, and change only as the engine would change it
            check_task_status(await store.get(kind, item_namespace(request), name), status)
        # The store sets a 0/missing observedGeneration to metadata.generation.
        stored = await store.update_status(kind, item_namespace(request), name, status, expected)
        return JSONResponse(status_envelope(stored))

    tag = [info.plural]
    app.add_api_route(base, list_items, methods=["GET"], name=f"list_{info.plural}", tags=tag)
    app.add_api_route(base, create_item, methods=["POST"], name=f"create_{info.plural}", tags=tag)
    # /v1/<c>/watch (serve.sse) is registered before this, so it wins over {name}.
    item = f"{base}/{{name}}"
    app.add_api_route(item, get_item, methods=["GET"], name=f"get_{info.plural}", tags=tag)
    app.add_api_route(item, replace_item, methods=["PUT"], name=f"replace_{info.plural}", tags=tag)
    app.add_api_route(item, delete_item, methods=["DELETE"], name=f"delete_{info.plural}", tags=tag)
    if info.status_route:
        app.add_api_route(f"{item}/status", get_status, methods=["GET"], name=f"status_{info.plural}", tags=tag)
        app.add_api_route(f"{item}/status", put_status, methods=["PUT"], name=f"put_status_{info.plural}",
                          tags=tag)


def check_task_status(stored: dict, status: dict) -> None:
    """400 for a phase that is not a task phase, 409 for a transition the engine would not make."""
    try:
        lifecycle.check_status_write(stored, status)
    except ValueError as exc:
        raise InvalidResource(str(exc), field="status.phase") from None
    except lifecycle.TransitionRefused as exc:
        raise Conflict(str(exc), field="status.phase", code="invalid_transition") from None


def _task_offset(info: KindInfo, request: Request) -> int:
    """Deprecated offset paging, ``GET /v1/tasks`` only, when ``after`` is absent."""
    if info.kind != "Task":
        return 0
    try:
        return max(int(request.query_params.get("offset", "0")), 0)
    except ValueError:
        return 0

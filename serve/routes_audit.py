"""``GET /v1/audit``: the governance audit trail, oldest first.

Query filters (exact match): ``namespace`` (absent: all), ``task``, ``agent``, ``decision``,
``code``, ``subject`` (tool or model name); ``after`` (a record id: only newer ones) and
``limit`` (default and maximum 1000). The answer is ``{"items": [...], "continue": <last id>}``
with ``continue`` set when the page is full; pass it back as ``after`` for the next page.
"""

from __future__ import annotations

from fastapi import FastAPI, Request

from orloj_ray.errors import InvalidResource
from serve.errors import JSONResponse
from serve.routes_resources import parse_limit, query_namespace

FILTERS = ("task", "agent", "decision", "code", "subject")


def register(app: FastAPI, store) -> None:
    async def audit(request: Request) -> JSONResponse:
        params = request.query_params
        raw_after = (params.get("after") or "0").strip() or "0"
        if not raw_after.isdigit():
            raise InvalidResource(f"invalid after {raw_after!r}: expected an audit record id (a whole number)",
                                  field="after")
        limit = parse_limit(params.get("limit"))
        filters = {k: (params.get(k) or "").strip() or None for k in FILTERS}
        items = await store.list_audit(query_namespace(request), after=int(raw_after), limit=limit, **filters)
        body = {"items": items}
        if len(items) == limit and items:
            body["continue"] = str(items[-1]["id"])
        return JSONResponse(body)

    app.add_api_route("/v1/audit", audit, methods=["GET"], name="audit_list", tags=["audit"])

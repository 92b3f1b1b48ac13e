"""``POST /v1/webhook-deliveries/{endpoint_id}``: signed TaskWebhook deliveries (api.md section 11).

HTTP only: the checks, dedupe and task creation live in ``orloj_ray.webhooks``. The body is
read here with a 1 MiB cap, counted as it streams, so an oversized or lying request is cut
off before it is buffered. Answers ``202`` with upstream's body, or a JSON error.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import Response

from orloj_ray.errors import TooLarge
from orloj_ray.webhooks import MAX_PAYLOAD_BYTES, Deliveries
from serve.errors import JSONResponse

PATH = "/v1/webhook-deliveries/{endpoint_id}"


def register(app: FastAPI, store, *, max_payload_bytes: int = MAX_PAYLOAD_BYTES) -> Deliveries:
    deliveries = Deliveries(store)

    async def deliver(request: Request, endpoint_id: str) -> Response:
        async def read_body() -> bytes:
            declared = request.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > max_payload_bytes:
                raise TooLarge(f"webhook payload too large: limit is {max_payload_bytes} bytes")
            chunks, size = [], 0
            async for chunk in request.stream():
                size += len(chunk)
                if size > max_payload_bytes:
                    raise TooLarge(f"webhook payload too large: limit is {max_payload_bytes} bytes")
                chunks.append(chunk)
            return b"".join(chunks)

        headers = {k.lower(): v for k, v in request.headers.items()}
        result = await deliveries.handle(endpoint_id, headers, read_body)
        return JSONResponse(result.body(), status_code=202)

    app.add_api_route(PATH, deliver, methods=["POST"], name="webhook_delivery")
    return deliveries

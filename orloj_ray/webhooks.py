"""TaskWebhook deliveries: signature check, dedupe, and the run task made from the template.

The checks run in upstream's order (api.md section 11), and a rejected delivery writes
nothing but the webhook's status counters:

    endpoint id known              404 webhook.not_found        (no counters)
    not suspended                  409 webhook.suspended
    body <= 1 MiB                  413 too_large
    secret resolvable              400 webhook.secret_unresolved
    signature (and timestamp) ok   401 webhook.signature_invalid
    event id header present        400 webhook.missing_event_id
    template task + run task       400 webhook.task_creation_failed

Signatures: HMAC-SHA256 with the Secret's first data value (keys sorted, base64-decoded),
over the raw body (``github``) or ``<timestamp>.<body>`` (``generic``, timestamp within
``max_skew_seconds`` of now), hex after a case-insensitive prefix, compared in constant time.

Dedupe lives in the Store, so every API replica shares it: one object of the internal kind
``WebhookDedupe`` per (endpoint, event id), created with ``Store.create`` (which refuses a
second create, so the insert is atomic), holding the run task and an expiry. Two replicas
racing on one event both arrive at the same run task name; the second ``create`` of the
dedupe record loses and answers "duplicate" with the winner's task. Records past their
expiry are replaced on the next delivery of that event and pruned once a minute.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from orloj_ray.errors import Conflict, InvalidResource, NotFound, OrlojError
from orloj_ray.resources import normalize
from orloj_ray.secrets import FIRST_KEY, resolve_secret_bytes
from orloj_ray.store.base import Event
from orloj_ray.store.util import clone, list_all, pages, rfc3339nano, utcnow
from orloj_ray.tenancy import not_shared, shared_with

log = logging.getLogger("orloj_ray.webhooks")

MAX_PAYLOAD_BYTES = 1 << 20
"""Upstream's ``maxWebhookPayloadBytes``: 1 MiB."""

DEDUPE_KIND = "WebhookDedupe"
"""Internal kind of the dedupe records: stored like a resource, never served by the API."""

DEDUPE_NAMESPACE = "orloj-system"
PRUNE_EVERY_S = 60.0
SOURCE = "webhook-delivery"

WEBHOOK_LABEL = "orloj.dev/task-webhook"
WEBHOOK_NAMESPACE_LABEL = "orloj.dev/task-webhook-namespace"
EVENT_ID_LABEL = "orloj.dev/webhook-event-id"

Clock = Callable[[], datetime]


class WebhookError(OrlojError):
    """A rejected delivery; ``reason`` goes to the status and the delivery event, never a secret."""

    status = 400
    code = "webhook.invalid"

    def __init__(self, message: str, *, reason: str, detail: str = "", status: int | None = None,
                 code: str | None = None):
        super().__init__(message, code=code)
        self.reason = reason
        self.detail = detail or message
        if status is not None:
            self.status = status


@dataclass
class DeliveryResult:
    event_id: str
    task: str
    duplicate: bool

    def body(self) -> dict:
        return {"accepted": True, "duplicate": self.duplicate, "event_id": self.event_id, "task": self.task,
                "message": "duplicate delivery" if self.duplicate else "delivery accepted"}


def short_hex(value: str) -> str:
    """Hex of the first 8 bytes of SHA-256(value): the event-id hash in names and labels."""
    return hashlib.sha256(value.strip().encode()).hexdigest()[:16]


def run_task_name(webhook_name: str, event_id: str) -> str:
    base = webhook_name.strip() or "webhook-task"
    return f"{base[:42]}-{short_hex(event_id)}"


def split_ref(default_namespace: str, ref: str) -> tuple[str, str]:
    ref = ref.strip()
    if "/" in ref:
        ns, _, name = ref.partition("/")
        ns, name = ns.strip(), name.strip()
        if not ns or not name:
            raise ValueError(f'invalid reference "{ref}": expected name or namespace/name')
        return ns, name
    if not ref:
        raise ValueError("reference is required")
    return (default_namespace or "default"), ref


# ------------------------------------------------------------------------------- signatures


def parse_timestamp(value: str) -> datetime:
    """Integer seconds, integer milliseconds (> 10^12), or RFC3339(Nano)."""
    value = value.strip()
    if not value:
        raise ValueError("empty timestamp")
    if value.lstrip("-").isdigit():
        if len(value) > 20:  # past year 9999 in any unit: fromtimestamp would overflow
            raise ValueError("timestamp out of range")
        n = int(value)
        try:
            return datetime.fromtimestamp(n / 1000 if n > 1_000_000_000_000 else n, timezone.utc)
        except (OverflowError, OSError, ValueError):
            raise ValueError("timestamp out of range") from None
    try:
        ts = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError("unsupported timestamp format") from None
    if ts.tzinfo is None:
        raise ValueError("timestamp needs a time zone")
    return ts.astimezone(timezone.utc)


def verify_signature(spec: Mapping, headers: Mapping[str, str], body: bytes, secret: bytes, now: datetime) -> None:
    """Raise ``ValueError`` (a reason safe to show) unless the delivery is signed by ``secret``.

    ``headers`` must be keyed by lower-case names.
    """
    auth = spec.get("auth") or {}
    header = str(auth.get("signature_header") or "").strip()
    if not header:
        raise ValueError("signature header is empty")
    received = headers.get(header.lower(), "").strip()
    if not received:
        raise ValueError(f"missing signature header {header}")
    prefix = str(auth.get("signature_prefix") or "").strip()
    if prefix:
        if received[:len(prefix)].lower() != prefix.lower():
            raise ValueError("invalid signature prefix")
        received = received[len(prefix):].strip()
    if not received:
        raise ValueError("signature is empty")
    if str(auth.get("profile") or "generic").strip().lower() == "github":
        signed = body
    else:
        ts_header = str(auth.get("timestamp_header") or "").strip()
        stamp = headers.get(ts_header.lower(), "").strip() if ts_header else ""
        if not stamp:
            raise ValueError(f"missing timestamp header {ts_header}")
        try:
            when = parse_timestamp(stamp)
        except ValueError as exc:
            raise ValueError(f"invalid timestamp: {exc}") from None
        skew = int(auth.get("max_skew_seconds") or 0)
        skew = skew if skew > 0 else 300
        if abs((now - when).total_seconds()) > skew:
            raise ValueError("timestamp outside allowed skew")
        signed = stamp.encode() + b"." + body
    expected = hmac.new(secret, signed, hashlib.sha256).digest()
    try:
        provided = bytes.fromhex(received)
    except ValueError:
        raise ValueError("signature must be hex") from None
    if not hmac.compare_digest(expected, provided):
        raise ValueError("signature mismatch")


async def resolve_secret(store, hook: dict) -> bytes:
    """The HMAC key: the referenced Secret's first value (keys sorted), through the one resolver."""
    meta, ref = hook["metadata"], str(((hook.get("spec") or {}).get("auth") or {}).get("secret_ref") or "")
    try:
        return await resolve_secret_bytes(store, meta.get("namespace") or "default", ref, default_key=FIRST_KEY)
    except LookupError as exc:
        raise ValueError(str(exc)) from None


# ------------------------------------------------------------------------------------- dedupe


def _dedupe_name(endpoint_id: str, event_id: str) -> str:
    return f"{endpoint_id}-{hashlib.sha256(event_id.strip().encode()).hexdigest()[:32]}"


class DedupeBook:
    """The (endpoint, event id) -> run task records, kept in the Store (see module docstring)."""

    def __init__(self, store):
        self.store = store

    async def lookup(self, endpoint_id: str, event_id: str, now: datetime) -> str | None:
        """The task of a live record, else None (an expired record is removed)."""
        name = _dedupe_name(endpoint_id, event_id)
        try:
            rec = await self.store.get(DEDUPE_KIND, DEDUPE_NAMESPACE, name)
        except NotFound:
            return None
        if _expired(rec, now):
            try:
                await self.store.delete(DEDUPE_KIND, DEDUPE_NAMESPACE, name, source=SOURCE)
            except NotFound:
                pass
            return None
        return str(rec["spec"].get("task") or "")

    async def record(self, endpoint_id: str, event_id: str, task: str, expires: datetime) -> str | None:
        """Insert the record; returns None when inserted, else the winner's task."""
        body = {"apiVersion": "orloj.dev/v1", "kind": DEDUPE_KIND,
                "metadata": {"name": _dedupe_name(endpoint_id, event_id), "namespace": DEDUPE_NAMESPACE},
                "spec": {"endpointID": endpoint_id, "eventID": event_id, "task": task,
                         "expiresAt": rfc3339nano(expires)}}
        try:
            await self.store.create(body, source=SOURCE)
            return None
        except Conflict:
            rec = await self.store.get(DEDUPE_KIND, DEDUPE_NAMESPACE, body["metadata"]["name"])
            return str(rec["spec"].get("task") or task)

    async def prune(self, now: datetime) -> int:
        removed = 0
        for rec in await list_all(self.store, DEDUPE_KIND, DEDUPE_NAMESPACE):
            if _expired(rec, now):
                try:
                    await self.store.delete(DEDUPE_KIND, DEDUPE_NAMESPACE, rec["metadata"]["name"], source=SOURCE)
                    removed += 1
                except NotFound:
                    pass
        return removed


def _expired(rec: dict, now: datetime) -> bool:
    try:
        return parse_timestamp(str(rec["spec"]["expiresAt"])) <= now
    except (KeyError, ValueError):
        return True


# ---------------------------------------------------------------------------------- run task


def build_run_task(template: dict, hook: dict, event_id: str, body: bytes, now: datetime) -> dict:
    """The run task: template spec with ``mode: run`` and the payload in ``input`` (upstream)."""
    spec = clone(template.get("spec") or {})
    spec["mode"] = "run"
    hook_spec = hook.get("spec") or {}
    inputs = dict(spec.get("input") or {})
    key = str((hook_spec.get("payload") or {}).get("input_key") or "webhook_payload").strip()
    inputs[key] = body.decode("utf-8", errors="replace")
    inputs["webhook_event_id"] = event_id.strip()
    inputs["webhook_received_at"] = rfc3339nano(now)
    inputs["webhook_source"] = str((hook_spec.get("auth") or {}).get("profile") or "generic").strip()
    spec["input"] = inputs
    hook_meta = hook["metadata"]
    labels = dict((template.get("metadata") or {}).get("labels") or {})
    labels[WEBHOOK_LABEL] = hook_meta["name"]
    labels[WEBHOOK_NAMESPACE_LABEL] = hook_meta.get("namespace") or "default"
    labels[EVENT_ID_LABEL] = short_hex(event_id)
    return {"apiVersion": "orloj.dev/v1", "kind": "Task",
            "metadata": {"name": run_task_name(hook_meta["name"], event_id),
                         "namespace": template["metadata"].get("namespace") or "default", "labels": labels},
            "spec": spec, "status": {}}


async def create_run_task(store, hook: dict, event_id: str, body: bytes, now: datetime) -> str:
    """Create (or find, when this event already made it) the run task; returns ``ns/name``."""
    meta = hook["metadata"]
    ref = str((hook.get("spec") or {}).get("task_ref") or "")
    ns, name = split_ref(meta.get("namespace") or "default", ref)
    try:
        template = await store.get("Task", ns, name)
    except NotFound:
        raise ValueError(f'task template "{ref}" not found') from None
    if not shared_with(template, meta.get("namespace") or "default"):
        raise ValueError(not_shared("task template", template, meta.get("namespace") or "default"))
    if str((template.get("spec") or {}).get("mode") or "").strip().lower() != "template":
        raise ValueError(f'task template "{ref}" must set spec.mode=template')
    task = normalize(build_run_task(template, hook, event_id, body, now), kind="Task")
    key = f'{task["metadata"]["namespace"]}/{task["metadata"]["name"]}'
    try:
        await store.create(task, source=SOURCE)
    except Conflict:
        existing = await store.get("Task", task["metadata"]["namespace"], task["metadata"]["name"])
        labels = existing["metadata"].get("labels") or {}
        if (labels.get(WEBHOOK_LABEL) != meta["name"]
                or labels.get(WEBHOOK_NAMESPACE_LABEL) != (meta.get("namespace") or "default")):
            raise ValueError(f'webhook run task name conflict for "{key}"') from None
    return key


# --------------------------------------------------------------------------------- the flow


class Deliveries:
    """Handles ``POST /v1/webhook-deliveries/{endpoint_id}`` without HTTP: the route passes
    lower-cased headers and a body reader that raises ``TooLarge`` past ``MAX_PAYLOAD_BYTES``."""

    def __init__(self, store, *, clock: Clock = utcnow):
        self.store = store
        self.clock = clock
        self.dedupe = DedupeBook(store)
        self._next_prune: datetime | None = None

    async def find(self, endpoint_id: str) -> dict:
        endpoint_id = endpoint_id.strip()
        async for page in pages(self.store, "TaskWebhook"):
            for hook in page.items:
                if str((hook.get("status") or {}).get("endpointID") or "").strip() == endpoint_id:
                    return hook
        raise WebhookError("webhook endpoint not found", reason="not_found", status=404, code="webhook.not_found")

    async def handle(self, endpoint_id: str, headers: Mapping[str, str],
                     read_body: Callable[[], Awaitable[bytes]]) -> DeliveryResult:
        if not endpoint_id.strip():
            raise InvalidResource("endpoint id is required")
        hook = await self.find(endpoint_id)
        now = self.clock()
        try:
            result = await self._deliver(hook, endpoint_id.strip(), headers, read_body, now)
        except WebhookError as exc:
            await self._record(hook, "", "", exc.reason, rejected=True, error=exc.detail)
            raise
        except OrlojError as exc:  # e.g. TooLarge from the body reader
            await self._record(hook, "", "", exc.code, rejected=True, error=exc.message)
            raise
        await self._record(hook, result.event_id, result.task, "duplicate" if result.duplicate else "accepted",
                           duplicate=result.duplicate)
        await self._maybe_prune(now)
        return result

    async def _deliver(self, hook: dict, endpoint_id: str, headers: Mapping[str, str],
                       read_body: Callable[[], Awaitable[bytes]], now: datetime) -> DeliveryResult:
        spec = hook.get("spec") or {}
        if spec.get("suspend"):
            raise WebhookError("webhook is suspended", reason="suspended", status=409, code="webhook.suspended")
        body = await read_body()
        try:
            secret = await resolve_secret(self.store, hook)
        except ValueError as exc:
            raise WebhookError("webhook secret resolution failed", reason="secret_error", detail=str(exc),
                               code="webhook.secret_unresolved") from None
        try:
            verify_signature(spec, headers, body, secret, now)
        except ValueError as exc:
            raise WebhookError(f"signature verification failed: {exc}", reason="signature_invalid",
                               detail=str(exc), status=401, code="webhook.signature_invalid") from None
        id_header = str((spec.get("idempotency") or {}).get("event_id_header") or "").strip()
        event_id = headers.get(id_header.lower(), "").strip() if id_header else ""
        if not event_id:
            raise WebhookError(f"missing event id: header {id_header} is required", reason="missing_event_id",
                               detail="missing event id header", code="webhook.missing_event_id")
        known = await self.dedupe.lookup(endpoint_id, event_id, now)
        if known is not None:
            return DeliveryResult(event_id, known, duplicate=True)
        try:
            task = await create_run_task(self.store, hook, event_id, body, now)
        except (ValueError, InvalidResource) as exc:
            raise WebhookError(f"webhook task creation failed: {exc}", reason="task_create_error",
                               detail=str(exc), code="webhook.task_creation_failed") from None
        window = int((spec.get("idempotency") or {}).get("dedupe_window_seconds") or 0) or 86400
        winner = await self.dedupe.record(endpoint_id, event_id, task, now + timedelta(seconds=window))
        if winner is not None:
            return DeliveryResult(event_id, winner, duplicate=True)
        await self._publish(hook, "taskwebhook.triggered", "webhook delivery created run task",
                            {"event_id": event_id, "task": task})
        return DeliveryResult(event_id, task, duplicate=False)

    async def _record(self, hook: dict, event_id: str, task: str, reason: str, *, rejected: bool = False,
                      duplicate: bool = False, error: str = "") -> None:
        """Status counters and a ``taskwebhook.delivery.<accepted|duplicate|rejected>`` event."""
        meta = hook["metadata"]
        ns, name = meta.get("namespace") or "default", meta["name"]
        for _ in range(5):
            try:
                current = await self.store.get("TaskWebhook", ns, name)
            except NotFound:
                return
            status = dict(current.get("status") or {})
            status["lastDeliveryTime"] = rfc3339nano(self.clock())
            status["lastEventID"] = event_id
            if task:
                status["lastTriggeredTask"] = task
            counter = "rejectedCount" if rejected else "duplicateCount" if duplicate else "acceptedCount"
            status[counter] = int(status.get(counter) or 0) + 1
            status["lastError"] = error
            status["phase"] = "Error" if error else "Ready"
            try:
                await self.store.update_status("TaskWebhook", ns, name, status,
                                               current["metadata"]["resourceVersion"], source=SOURCE)
                break
            except Conflict:
                continue
        else:
            log.warning("task webhook %s/%s: status update kept conflicting; counters not recorded", ns, name)
        kind = "rejected" if rejected else "duplicate" if duplicate else "accepted"
        data = {"event_id": event_id, "task": task, "reason": reason}
        await self._publish(hook, f"taskwebhook.delivery.{kind}", error or reason, data)

    async def _publish(self, hook: dict, type_: str, message: str, data: dict) -> None:
        meta = hook["metadata"]
        try:
            await self.store.publish(Event(id=0, timestamp="", source=SOURCE, type=type_, kind="TaskWebhook",
                                           name=meta["name"], namespace=meta.get("namespace") or "default",
                                           action=type_, data={**data, "message": message}))
        except Exception:
            log.warning("publishing %s failed", type_, exc_info=True)

    async def _maybe_prune(self, now: datetime) -> None:
        if self._next_prune is not None and now < self._next_prune:
            return
        self._next_prune = now + timedelta(seconds=PRUNE_EVERY_S)
        try:
            await self.dedupe.prune(now)
        except Exception:
            log.warning("pruning expired webhook dedupe records failed", exc_info=True)

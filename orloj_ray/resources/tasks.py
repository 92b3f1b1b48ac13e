"""Work and where it runs: Task, TaskSchedule, TaskWebhook and Worker."""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field

from orloj_ray.resources.base import (
    MAX_ATTEMPTS,
    MAX_COUNT,
    Bool,
    Int,
    Spec,
    Str,
    Wire,
    bounded,
    choice,
    quote,
    report,
    warn,
)
from orloj_ray.resources.cron import never_fires, validate_cron
from orloj_ray.resources.durations import check_duration
from orloj_ray.resources.envelope import Metadata, Resource

JITTER_MODES = ("none", "full", "equal")
PRIORITIES = ("low", "normal", "high", "critical")
MAX_TIME_ZONE_LENGTH = 64


class TaskRetry(Wire):
    max_attempts: Int = bounded(0, 0, MAX_ATTEMPTS)
    backoff: Str = ""


class TaskMessageRetry(Wire):
    max_attempts: Int = bounded(0, 0, MAX_ATTEMPTS)
    backoff: Str = ""
    max_backoff: Str = ""
    jitter: Str = ""
    non_retryable: list[Str] = []
    """Substrings: an error containing one is dead-lettered without retry."""


class TaskRequirements(Wire):
    region: Str = ""
    gpu: Bool = False
    model: Str = ""


class TaskSpec(Spec):
    system: Str = ""
    """AgentSystem name; a missing one fails the task when it runs, not at apply."""
    mode: Str = ""
    input: dict[Str, Str] = {}
    priority: Str = ""
    max_turns: Int = bounded(0, 0, MAX_COUNT)
    retry: TaskRetry = Field(default_factory=TaskRetry)
    message_retry: TaskMessageRetry = Field(default_factory=TaskMessageRetry)
    requirements: TaskRequirements = Field(default_factory=TaskRequirements)

    def normalize(self, meta: Metadata, status: dict[str, Any], now: datetime) -> None:
        self.mode = choice(self.mode, "spec.mode", ("run", "template"), "run",
                           "invalid spec.mode {value}: expected run or template")
        # upstream: free-form; orloj-ray: one of PRIORITIES (docs/compatibility.md)
        self.priority = choice(self.priority, "spec.priority", PRIORITIES, "normal",
                               "invalid spec.priority {value}: expected low, normal, high, or critical")
        retry, message = self.retry, self.message_retry
        if retry.max_attempts <= 0:
            retry.max_attempts = 1
        retry.backoff = retry.backoff.strip() or "0s"
        inherited = retry.backoff if check_duration(retry.backoff, "spec.retry.backoff") else "0s"
        if message.max_attempts <= 0:
            message.max_attempts = retry.max_attempts
        message.backoff = message.backoff.strip() or inherited
        check_duration(message.backoff, "spec.message_retry.backoff")
        message.max_backoff = message.max_backoff.strip() or "24h"
        check_duration(message.max_backoff, "spec.message_retry.max_backoff")
        message.jitter = choice(message.jitter, "spec.message_retry.jitter", JITTER_MODES, "full",
                                "invalid spec.message_retry.jitter {value}: expected none, full, or equal")


class Task(Resource):
    spec: TaskSpec = Field(default_factory=TaskSpec)


def _check_task_ref(task_ref: str) -> str:
    task_ref = task_ref.strip()
    if not task_ref:
        report("spec.task_ref", "spec.task_ref is required")
    elif "/" in task_ref:
        namespace, _, name = task_ref.partition("/")
        if not namespace.strip() or not name.strip():
            report("spec.task_ref", f"invalid spec.task_ref {quote(task_ref)}: expected name or namespace/name")
    return task_ref


class TaskScheduleSpec(Spec):
    task_ref: Str = ""
    """A Task with ``mode: template``: ``name`` or ``namespace/name``."""
    schedule: Str = ""
    time_zone: Str = ""
    suspend: Bool = False
    starting_deadline_seconds: Int = bounded(0, 0, 31 * 86400)
    concurrency_policy: Str = ""
    successful_history_limit: Int = bounded(0, 0, MAX_COUNT)
    failed_history_limit: Int = bounded(0, 0, MAX_COUNT)

    def normalize(self, meta: Metadata, status: dict[str, Any], now: datetime) -> None:
        self.task_ref = _check_task_ref(self.task_ref)
        self.schedule = self.schedule.strip()
        if not self.schedule:
            report("spec.schedule", "spec.schedule is required")
        else:
            try:
                validate_cron(self.schedule)
            except ValueError as exc:
                report("spec.schedule", f"invalid spec.schedule {quote(self.schedule)}: {exc}")
            else:
                if never_fires(self.schedule):
                    warn("spec.schedule", f"spec.schedule {quote(self.schedule)} never fires: no month has "
                                          "the days of month it names")
        self.time_zone = self.time_zone.strip() or "UTC"
        if self.time_zone != "Local":
            shown = self.time_zone if len(self.time_zone) <= MAX_TIME_ZONE_LENGTH else self.time_zone[:40] + "..."
            try:
                if len(self.time_zone) > MAX_TIME_ZONE_LENGTH:
                    raise ValueError("too long")
                ZoneInfo(self.time_zone)
            except (ZoneInfoNotFoundError, ValueError, OSError):
                report("spec.time_zone", f"invalid spec.time_zone {quote(shown)}: unknown time zone {shown}")
        if self.starting_deadline_seconds <= 0:
            self.starting_deadline_seconds = 300
        # upstream accepts only forbid; allow and replace are orloj-ray additions (docs/compatibility.md)
        self.concurrency_policy = choice(self.concurrency_policy, "spec.concurrency_policy",
                                         ("forbid", "allow", "replace"), "forbid",
                                         "invalid spec.concurrency_policy {value}: expected forbid, allow, or replace")
        if self.successful_history_limit <= 0:
            self.successful_history_limit = 10
        if self.failed_history_limit <= 0:
            self.failed_history_limit = 3


class TaskSchedule(Resource):
    spec: TaskScheduleSpec = Field(default_factory=TaskScheduleSpec)


class WebhookAuth(Wire):
    profile: Str = ""
    secret_ref: Str = ""
    signature_header: Str = ""
    signature_prefix: Str = ""
    timestamp_header: Str = ""
    max_skew_seconds: Int = bounded(0, 0, 7 * 86400)


class WebhookIdempotency(Wire):
    event_id_header: Str = ""
    dedupe_window_seconds: Int = bounded(0, 0, 31 * 86400)


class WebhookPayload(Wire):
    mode: Str = ""
    input_key: Str = ""


# (signature_header, timestamp_header, event_id_header, dedupe_window_seconds) per auth profile
_WEBHOOK_DEFAULTS = {
    "generic": ("X-Signature", "X-Timestamp", "X-Event-Id", 86400),
    "github": ("X-Hub-Signature-256", "", "X-GitHub-Delivery", 259200),
}


def _or_default(value: str, default: str) -> str:
    """``value`` as given unless blank (upstream keeps these headers untrimmed)."""
    return value if value.strip() else default


def webhook_endpoint_id(namespace: str, name: str) -> str:
    """Hex of the first 12 bytes of SHA-256 of ``<namespace>/<name>`` (upstream's id)."""
    return hashlib.sha256(f"{namespace.strip()}/{name.strip()}".encode()).hexdigest()[:24]


class TaskWebhookSpec(Spec):
    task_ref: Str = ""
    suspend: Bool = False
    auth: WebhookAuth = Field(default_factory=WebhookAuth)
    idempotency: WebhookIdempotency = Field(default_factory=WebhookIdempotency)
    payload: WebhookPayload = Field(default_factory=WebhookPayload)

    def normalize(self, meta: Metadata, status: dict[str, Any], now: datetime) -> None:
        self.task_ref = _check_task_ref(self.task_ref)
        auth, idem, payload = self.auth, self.idempotency, self.payload
        auth.profile = choice(auth.profile, "spec.auth.profile", ("generic", "github"), "generic",
                              "invalid spec.auth.profile {value}: expected generic or github")
        auth.secret_ref = auth.secret_ref.strip()
        if not auth.secret_ref:
            report("spec.auth.secret_ref", "spec.auth.secret_ref is required")
        signature_header, timestamp_header, event_id_header, dedupe_window = _WEBHOOK_DEFAULTS[auth.profile]
        auth.signature_header = _or_default(auth.signature_header, signature_header)
        auth.signature_prefix = _or_default(auth.signature_prefix, "sha256=")
        auth.timestamp_header = auth.timestamp_header.strip() or timestamp_header
        auth.max_skew_seconds = auth.max_skew_seconds or 300
        idem.event_id_header = _or_default(idem.event_id_header, event_id_header)
        idem.dedupe_window_seconds = idem.dedupe_window_seconds or dedupe_window
        payload.mode = choice(payload.mode, "spec.payload.mode", ("raw",), "raw",
                              "invalid spec.payload.mode {value}: expected raw")
        payload.input_key = payload.input_key.strip() or "webhook_payload"
        if not str(status.get("endpointID", "")).strip():
            status["endpointID"] = webhook_endpoint_id(meta.namespace, meta.name)
        if not str(status.get("endpointPath", "")).strip():
            status["endpointPath"] = "/v1/webhook-deliveries/" + status["endpointID"]


class TaskWebhook(Resource):
    spec: TaskWebhookSpec = Field(default_factory=TaskWebhookSpec)


class WorkerCapabilities(Wire):
    gpu: Bool = False
    supported_models: list[Str] = []


class WorkerSpec(Spec):
    region: Str = ""
    capabilities: WorkerCapabilities = Field(default_factory=WorkerCapabilities)
    max_concurrent_tasks: Int = bounded(0, 0, MAX_COUNT)

    def normalize(self, meta: Metadata, status: dict[str, Any], now: datetime) -> None:
        if self.max_concurrent_tasks <= 0:
            self.max_concurrent_tasks = 1


class Worker(Resource):
    spec: WorkerSpec = Field(default_factory=WorkerSpec)

"""The message envelope carried by the DurableLog (upstream ``runtime/agent_message_bus.go``).

The JSON shape is upstream's (execution.md section 6.3) plus ``hop`` and ``attempts``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

from orloj_ray.store.util import now_rfc3339_nano

MessageType = Literal["task_start", "task_handoff"]
TYPES = ("task_start", "task_handoff")
_ID_UNSAFE = str.maketrans({" ": "_", "/": "_", ":": "_"})


def _id_token(name: str) -> str:
    return name.strip().lower().translate(_ID_UNSAFE)


def message_id(namespace: str, task: str, attempt: int, hop: int, from_agent: str, to_agent: str) -> str:
    """Upstream's deterministic id: ``<ns>/<task>/a<attempt:3>/h<hop:3>/<from>/<to>``.

    ``from``/``to`` are lower-cased with space, ``/`` and ``:`` mapped to ``_``, so the same
    turn of the same attempt always gets the same id (and the same dedupe key).
    """
    return f"{namespace}/{task}/a{attempt:03d}/h{hop:03d}/{_id_token(from_agent)}/{_id_token(to_agent)}"


@dataclass
class Envelope:
    """One agent-to-agent message. Only ``message_id`` and ``to_agent`` are required."""

    message_id: str
    to_agent: str
    from_agent: str = "system"
    type: MessageType = "task_handoff"
    idempotency_key: str = ""
    """Dedupe key of the log (JetStream ``Nats-Msg-Id``); defaults to ``message_id``."""
    namespace: str = "default"
    task: str = ""
    task_id: str = ""
    """``<namespace>/<task>``; derived when empty."""
    attempt: int = 1
    system: str = ""
    branch_id: str = ""
    parent_branch_id: str = ""
    payload: Any = ""
    """Any JSON value (upstream: the text handed to the next agent)."""
    timestamp: str = ""
    """RFC3339Nano, UTC; set to now when empty."""
    trace_id: str = ""
    """``<ns>/<task>/a<attempt:3>`` when empty."""
    parent_id: str = ""
    """``message_id`` of the message whose turn produced this one."""
    hop: int = 1
    shard: int | None = None
    """The supervisor shard of the task (``--supervisors N``): picks the subject; None: upstream's."""
    attempts: int = 0
    """Deliveries so far, this one included: the log sets it on every fetched envelope."""

    def __post_init__(self) -> None:
        if not self.message_id:
            raise ValueError("envelope: message_id is required")
        if not self.to_agent:
            raise ValueError("envelope: to_agent is required")
        if self.type not in TYPES:
            raise ValueError(f"envelope: type must be one of {TYPES}, not {self.type!r}")
        self.idempotency_key = self.idempotency_key or self.message_id
        if not self.task_id and self.task:
            self.task_id = f"{self.namespace}/{self.task}"
        if not self.trace_id and self.task:
            self.trace_id = f"{self.namespace}/{self.task}/a{self.attempt:03d}"
        self.timestamp = self.timestamp or now_rfc3339_nano()

    @property
    def content(self) -> str:
        """The payload as the text an agent reads (JSON for a non-string payload)."""
        return self.payload if isinstance(self.payload, str) else json.dumps(self.payload, ensure_ascii=False)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Envelope:
        """Unknown keys are ignored (newer writers); ValueError when required ones are missing."""
        if not isinstance(data, dict):
            raise ValueError("envelope: expected a JSON object")
        known = {f.name for f in fields(cls)}
        try:
            return cls(**{k: v for k, v in data.items() if k in known})
        except TypeError as exc:
            raise ValueError(f"envelope: {exc}") from exc

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict(), separators=(",", ":"), ensure_ascii=False).encode()

    @classmethod
    def from_json(cls, raw: bytes | str) -> Envelope:
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise ValueError(f"envelope: not JSON: {exc}") from exc
        return cls.from_dict(data)

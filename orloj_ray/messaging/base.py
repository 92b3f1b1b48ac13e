"""The DurableLog seam: the system of record for in-flight agent messages, and the mailbox.

Guarantees (every implementation):

* ``append`` returns only once the message is durable (JetStream: once the stream acked it;
  on disk only if the server runs with ``sync_interval: always`` or 3 replicas). Appends are
  deduplicated by ``idempotency_key`` within a window (default 2 minutes).
* Delivery is at-least-once, per durable consumer: each consumer receives every message that
  matches its subject filter, independently of other consumers, and keeps receiving it until
  it acks (or terms) it. Ack only after the Store has recorded the turn; a crash before the
  ack means redelivery, which the message's idempotency key makes harmless.
* A delivery not acked within ``ack_wait_s`` (and not extended by ``in_progress``) is
  redelivered to the same consumer. First deliveries follow append order per subject;
  redeliveries may overtake newer messages.

Subjects follow upstream: one inbox per agent, ``orloj.agentmsg.<ns>.<agent>.inbox``; a message
of a task in supervisor shard ``k`` (``--supervisors N``) goes to ``orloj.agentmsg.s<k>.<ns>.<agent>.inbox``,
so each shard's owner consumes only its own tasks' messages (filter ``shard_filter``).
Errors: ``orloj_ray.errors.Unavailable`` when the backend cannot be reached (retryable);
``ValueError`` for bad arguments (consumer names, subject filters).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from orloj_ray.messaging.envelope import Envelope

DEFAULT_PREFIX = "orloj.agentmsg"
_SUBJECT_UNSAFE = str.maketrans({c: "_" for c in " .>*/:"})
_CONSUMER_NAME = re.compile(r"^[A-Za-z0-9_-]{1,128}$")


def subject_token(name: str) -> str:
    """One subject token: lower-cased, `` . > * / :`` mapped to ``_`` (upstream's sanitizer)."""
    return (name.strip().lower() or "_").translate(_SUBJECT_UNSAFE)


def subject_for(namespace: str, agent: str, prefix: str = DEFAULT_PREFIX, shard: int | None = None) -> str:
    """The inbox subject of one agent: ``<prefix>.<ns>.<agent>.inbox``, or with a supervisor
    ``shard``, ``<prefix>.s<shard>.<ns>.<agent>.inbox``."""
    head = prefix if shard is None else f"{prefix}.s{int(shard)}"
    return f"{head}.{subject_token(namespace or 'default')}.{subject_token(agent)}.inbox"


def shard_filter(shard: int, prefix: str = DEFAULT_PREFIX) -> str:
    """The filter of every message of supervisor shard ``shard``: ``<prefix>.s<shard>.>``."""
    return f"{prefix}.s{int(shard)}.>"


def subject_matches(subject_filter: str | None, subject: str) -> bool:
    """None matches everything; ``a.b.>`` every subject under ``a.b``; else equality."""
    if subject_filter is None:
        return True
    if subject_filter.endswith(".>"):
        return subject.startswith(subject_filter[:-1])
    return subject == subject_filter


def check_consumer_name(name: str) -> str:
    """Durable consumer names: letters, digits, ``_`` and ``-`` (JetStream's safe set)."""
    if not _CONSUMER_NAME.match(name or ""):
        raise ValueError(f"consumer name {name!r}: use 1-128 of [A-Za-z0-9_-]")
    return name


def check_subject_filter(prefix: str, subject_filter: str | None) -> str | None:
    """A filter is None (every message), one full subject under ``prefix`` (no wildcards), or
    a shard's ``<prefix>.s<k>.>``."""
    if subject_filter is None:
        return None
    head = subject_filter[:-2] if subject_filter.endswith(".>") else subject_filter
    if not head.startswith(prefix + ".") or any(c in head for c in " *>"):
        raise ValueError(f"subject filter {subject_filter!r}: use subject_for(namespace, agent, {prefix!r}) "
                         "or shard_filter(k)")
    return subject_filter


@dataclass(frozen=True)
class Delivery:
    """One delivery of one message to one consumer."""

    envelope: Envelope
    """The appended envelope, with ``attempts`` set to ``num_delivered``."""
    delivery_id: str
    """Opaque, plain string: a delivery fetched in one process may be acked from another
    process holding a log on the same backend (not for ``MemoryLog``, which is per process)."""
    num_delivered: int
    """1 on the first delivery, +1 per redelivery."""


@runtime_checkable
class DurableLog(Protocol):
    """An append-only log of Envelopes with durable, independently acking pull consumers.

    A message goes to subject ``subject_for(env.namespace, env.to_agent, log.prefix)``.
    A consumer is identified by name; it is created on first use with the subject filter
    given then and, like a JetStream durable, outlives the caller (it is deleted only with the
    log's data). Pass the same filter for the same consumer every time.

    A new consumer starts at the oldest message the log still holds. JetStream holds every
    message for ``max_age``; ``MemoryLog`` drops a message once all consumers existing then
    have acked it. So create consumers (``pending_count`` does) before appending to them.
    """

    prefix: str
    """Subject prefix, ``orloj.agentmsg`` unless configured (tests isolate with their own)."""
    ack_wait_s: float
    """A delivery neither acked, nak-ed, termed nor marked in progress for this long is
    redelivered to its consumer."""

    async def append(self, env: Envelope) -> bool:
        """Store ``env`` durably. False when ``env.idempotency_key`` was already appended
        within the duplicate window (the message is not stored twice; not an error)."""

    async def fetch(
        self, consumer: str, subject_filter: str | None = None, batch: int = 10, timeout_s: float = 2.0,
    ) -> list[Delivery]:
        """Up to ``batch`` deliveries for ``consumer``: due redeliveries first, then messages
        it has not received yet, in append order. Waits up to ``timeout_s`` for the first one;
        returns ``[]`` when none came. ``subject_filter``: None (all inboxes) or one inbox."""

    async def ack(self, delivery: Delivery) -> None:
        """Done: never deliver this message to this consumer again. Acking a message that is
        already acked or termed is a no-op."""

    async def nak(self, delivery: Delivery, delay_s: float = 0) -> None:
        """Not done: redeliver to this consumer after ``delay_s`` (0: at once)."""

    async def in_progress(self, delivery: Delivery) -> None:
        """Still working: restart this delivery's ``ack_wait_s`` clock (call it more often
        than ``ack_wait_s`` during a long turn)."""

    async def term(self, delivery: Delivery) -> None:
        """Give up: never deliver this message to this consumer again (an undecodable or
        dead-lettered message)."""

    async def unacked(self, consumer: str, limit: int = 1000) -> list[Envelope]:
        """Messages the consumer has not acked or termed yet, delivered or not, in append
        order (for recovery and tests). JetStream keeps acks as a floor plus a set it does not
        expose, so its list may include messages acked out of order: treat it as a superset."""

    async def pending_count(self, consumer: str, subject_filter: str | None = None) -> int:
        """Mailbox depth: messages not acked or termed by ``consumer`` (undelivered,
        in flight, or waiting for redelivery). Creates the consumer with ``subject_filter``
        when it does not exist yet."""

    async def close(self) -> None:
        """Release connections and wake waiting fetches. The log's data is kept."""

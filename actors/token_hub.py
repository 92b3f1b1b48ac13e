"""TokenHub: the named actor holding the live model output of running tasks, and its clients.

* ``TokenHub`` hosts one ``orloj_ray.observability.tokens.TokenBuffer`` (bounded, see there).
  The API creates it when it starts (``start_token_hub``); detached, restarted by Ray (empty:
  it is a cache of what is being said, the trace is the record).
* ``RemoteTokenStreams``: what ``GET /v1/tasks/{name}/stream`` reads (``read``, ``finish``).
* ``TokenTap``: what an AgentActor asks before each turn, "does anyone watch this task?",
  answered from memory: one long poll per actor on the hub's watched set
  (``watched_changes``) keeps it current, so a turn of an unwatched task costs no call and
  makes a plain model call. The first turn of a fresh actor waits for the first answer
  (milliseconds; at most ``FIRST_ANSWER_S``).
* ``TurnTokens``: the sink of one watched turn. Deltas are appended in memory and sent in
  batches from a background task (one call in flight, ``flush_s`` apart: about 20 calls a
  second per streaming turn however fast the model talks); ``aclose`` sends the rest and the
  ``turn_end`` before the turn's result goes back, so the API has every token of a turn
  before the task can record it. A hub that does not answer costs the turn nothing: the
  batch is dropped and the rest of the turn is not streamed.

Why an actor and not the message log or the Store: tokens are many, small and worthless once
the turn is recorded; they must not cost a durable write, and nobody may pay for them
unless someone watches. One hub holds every task's buffer; with no watcher it receives no
call at all, so it is on no task's path.
"""

from __future__ import annotations

import asyncio
import logging

import ray
from ray.exceptions import RayActorError

from actors import RAY_NAMESPACE
from orloj_ray.observability.tokens import TOKEN, TURN_END, TokenBuffer, token_key

log = logging.getLogger("orloj_ray.tokens")

TOKEN_HUB = "orloj:tokens"
FIRST_ANSWER_S = 1.0
"""Longest wait of a fresh agent actor's first turn for the watched set."""
WATCH_POLL_S = 30.0
"""Long-poll timeout of an agent actor on the watched set."""
PUBLISH_TIMEOUT_S = 2.0
"""Longest wait for one batch to reach the hub."""
_LIVE: set[asyncio.Task] = set()  # background tasks of this process, kept from garbage collection


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=0, max_concurrency=10_000)
class TokenHub:
    def __init__(self):
        self._buffer = TokenBuffer()

    def __repr__(self) -> str:
        return "TokenHub(orloj:tokens)"

    async def publish(self, key: str, events: list[dict]) -> None:
        self._buffer.publish(key, events)

    async def read(self, key: str, after: int, timeout_s: float) -> dict:
        return await self._buffer.read(key, after, min(max(timeout_s, 0.0), 30.0))

    async def finish(self, key: str) -> None:
        await self._buffer.finish(key)

    async def watched(self, version: int, timeout_s: float) -> tuple[int, list[str]]:
        return await self._buffer.watched_changes(version, min(max(timeout_s, 0.0), WATCH_POLL_S))

    async def stats(self) -> dict:
        return self._buffer.stats()


def start_token_hub() -> ray.actor.ActorHandle:
    """Create (or find) the hub: detached, zero CPUs, in the ``orloj`` namespace."""
    return TokenHub.options(name=TOKEN_HUB, namespace=RAY_NAMESPACE, get_if_exists=True,
                            lifetime="detached").remote()


class RemoteTokenStreams:
    """The API's side: the ``TokenBuffer`` reads over the hub (created on first use)."""

    def __init__(self, handle: ray.actor.ActorHandle | None = None):
        self._handle = handle

    @property
    def handle(self) -> ray.actor.ActorHandle:
        if self._handle is None:
            self._handle = start_token_hub()
        return self._handle

    async def read(self, key: str, after: int = 0, timeout_s: float = 0.0) -> dict:
        try:
            return await self.handle.read.remote(key, after, timeout_s)
        except RayActorError:
            self._handle = None  # restarting or gone: the next read finds it again
            await asyncio.sleep(min(timeout_s, 1.0))
            return {"events": [], "cursor": after, "ended": False}

    async def finish(self, key: str) -> None:
        try:
            await self.handle.finish.remote(key)
        except RayActorError:
            self._handle = None


class TokenTap:
    """An agent actor's view of which tasks are watched (see the module docstring)."""

    def __init__(self, flush_s: float = 0.05):
        self.flush_s = flush_s
        self._hub: ray.actor.ActorHandle | None = None
        self._watched: frozenset[str] = frozenset()
        self._answered = asyncio.Event()
        self._follower: asyncio.Task | None = None

    async def publisher(self, request) -> "TurnTokens | None":
        """The sink for this turn (a ``TurnRequest``) when someone watches its task, else None."""
        if self._follower is None:
            self._follower = asyncio.get_running_loop().create_task(self._follow())
        if not self._answered.is_set():
            try:
                await asyncio.wait_for(self._answered.wait(), FIRST_ANSWER_S)
            except asyncio.TimeoutError:
                pass
        key = token_key(request.namespace, request.task)
        if key not in self._watched or self._hub is None:
            return None
        return TurnTokens(self._hub, key, request.agent_name, request.message_id, self.flush_s)

    async def _follow(self) -> None:
        version, pause = -1, 1.0
        while True:
            try:
                if self._hub is None:
                    self._hub = ray.get_actor(TOKEN_HUB, namespace=RAY_NAMESPACE)
                version, keys = await self._hub.watched.remote(version, WATCH_POLL_S)
                self._watched, pause = frozenset(keys), 1.0
                self._answered.set()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - no hub (no API yet) or a restarting one: nobody watches
                self._hub, self._watched, version = None, frozenset(), -1
                self._answered.set()
                await asyncio.sleep(pause)
                pause = min(pause * 2, 30.0)


class TurnTokens:
    """The ``run_turn`` sink of one watched turn: ``sink(step, delta, restart=False)``."""

    def __init__(self, hub: ray.actor.ActorHandle, key: str, agent: str, message_id: str, flush_s: float):
        self._hub, self._key, self._flush_s = hub, key, flush_s
        self._who = {"agent": agent, "message_id": message_id}
        self._pending: list[dict] = []
        self._wake = asyncio.Event()
        self._closed = self._broken = False
        self._step = 0
        self._sender = asyncio.get_running_loop().create_task(self._send())
        _LIVE.add(self._sender)
        self._sender.add_done_callback(_LIVE.discard)

    def __call__(self, step: int, delta: str, restart: bool = False) -> None:
        if self._closed or self._broken:
            return
        self._step = step
        last = self._pending[-1]["data"] if self._pending and self._pending[-1]["event"] == TOKEN else None
        if not restart and last is not None and last["step"] == step and not last.get("restart"):
            last["delta"] += delta  # one event per batch and step, however many deltas
        else:
            data = {**self._who, "step": step, "delta": "" if restart else delta}
            if restart:
                data["restart"] = True
            self._pending.append({"event": TOKEN, "data": data})
        self._wake.set()

    async def aclose(self) -> None:
        """Send what is left and the ``turn_end``; waits at most ``PUBLISH_TIMEOUT_S`` per batch left."""
        if self._closed:
            return
        self._closed = True
        if not self._broken:
            self._pending.append({"event": TURN_END, "data": {**self._who, "step": self._step}})
        self._wake.set()
        try:
            await asyncio.wait_for(asyncio.shield(self._sender), 2 * PUBLISH_TIMEOUT_S)
        except Exception:  # noqa: BLE001 - the turn's result matters, its tokens do not
            pass

    async def _send(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._pending = self._pending, []
            if batch and not self._broken:
                try:
                    await asyncio.wait_for(self._hub.publish.remote(self._key, batch), PUBLISH_TIMEOUT_S)
                except Exception as exc:  # noqa: BLE001
                    self._broken = True
                    log.info("token hub did not take a batch for %s (%s); the rest of this turn is not streamed",
                             self._key, type(exc).__name__)
            if self._closed and not self._pending:
                return
            if not self._closed:
                await asyncio.sleep(self._flush_s)

"""One named actor holding the token buckets of ``maxTokensPerMinute``, and its client.

Every AgentActor replica on every node reserves tokens here, so an agent's rate limit is one
budget across the cluster. The actor is detached and restarted by Ray; a restart refills the
buckets (at most one extra window of tokens), which is the price of keeping it off the Store.
"""

from __future__ import annotations

import ray
from ray.exceptions import RayActorError

from actors import RAY_NAMESPACE
from orloj_ray.errors import Unavailable
from orloj_ray.governance.ratelimit import WINDOW_S, TokenBucket

RATE_LIMITER_ACTOR = "orloj:rate-limiter"


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=0, max_concurrency=1000)
class RateLimiterActor:
    def __init__(self, window_s: float = WINDOW_S):
        self._bucket = TokenBucket(window_s=window_s)

    async def reserve(self, key: str, tokens: int, per_window: int, max_wait_s: float) -> float | None:
        return self._bucket.reserve_now(key, tokens, per_window, max_wait_s)

    async def settle(self, key: str, delta: int, per_window: int) -> None:
        self._bucket.settle_now(key, delta, per_window)


def rate_limiter_actor(window_s: float = WINDOW_S) -> ray.actor.ActorHandle:
    """The cluster's limiter, created on first use (``window_s`` applies only then)."""
    return RateLimiterActor.options(name=RATE_LIMITER_ACTOR, namespace=RAY_NAMESPACE, get_if_exists=True,
                                    lifetime="detached").remote(window_s)


class RayRateLimiter:
    """``RateLimiter`` over the named actor. Errors become ``Unavailable``: the turn then fails
    closed (the model call is not made) and the message is retried."""

    def __init__(self, handle: ray.actor.ActorHandle | None = None):
        self._handle = handle

    @property
    def handle(self) -> ray.actor.ActorHandle:
        if self._handle is None:
            self._handle = rate_limiter_actor()
        return self._handle

    async def reserve(self, key: str, tokens: int, per_window: int, max_wait_s: float) -> float | None:
        try:
            return await self.handle.reserve.remote(key, tokens, per_window, max_wait_s)
        except RayActorError as exc:
            self._handle = None
            raise Unavailable(f"rate limiter unavailable: {type(exc).__name__}") from None

    async def settle(self, key: str, delta: int, per_window: int) -> None:
        try:
            await self.handle.settle.remote(key, delta, per_window)
        except RayActorError as exc:
            self._handle = None
            raise Unavailable(f"rate limiter unavailable: {type(exc).__name__}") from None

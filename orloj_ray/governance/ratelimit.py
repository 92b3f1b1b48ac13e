"""Token rate limits (``maxTokensPerMinute``): one budget per agent, shared by every caller.

``RateLimiter`` is the seam. ``TokenBucket`` is the in-process implementation (sequential
mode, tests); ``actors/rate_limiter.py`` hosts one TokenBucket in a named Ray actor so every
replica of every agent on every node draws from the same bucket.

A bucket holds up to one window's worth of tokens (``per_window``) and refills continuously.
``reserve`` takes the estimated tokens of a model call now and says how long the caller must
wait before making it; the bucket may go into debt, so callers queue fairly behind each other.
A reservation whose wait would exceed ``max_wait_s`` takes nothing and returns None. After the
call, ``settle`` books the difference between the estimate and what the call really used.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Protocol

WINDOW_S = 60.0
"""The window of ``maxTokensPerMinute``. Tests may build a TokenBucket with a shorter one."""


class RateLimiter(Protocol):
    async def reserve(self, key: str, tokens: int, per_window: int, max_wait_s: float) -> float | None:
        """Take ``tokens`` from ``key``'s bucket; seconds to wait first, or None (nothing taken)."""

    async def settle(self, key: str, delta: int, per_window: int) -> None:
        """Book ``delta`` more tokens (negative: give back) after the call."""


@dataclass
class _Bucket:
    level: float
    stamp: float


class TokenBucket:
    """In-process RateLimiter. Methods never await while changing state, so they are atomic
    on one event loop."""

    def __init__(self, *, window_s: float = WINDOW_S, clock: Callable[[], float] = time.monotonic):
        if window_s <= 0:
            raise ValueError(f"window_s must be > 0, got {window_s}")
        self.window_s = window_s
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}

    def _refill(self, key: str, per_window: int) -> _Bucket:
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(float(per_window), now)
        bucket.level = min(float(per_window), bucket.level + (now - bucket.stamp) * per_window / self.window_s)
        bucket.stamp = now
        return bucket

    def reserve_now(self, key: str, tokens: int, per_window: int, max_wait_s: float) -> float | None:
        if per_window <= 0:
            return 0.0
        bucket = self._refill(key, per_window)
        wait = max(0.0, (tokens - bucket.level) * self.window_s / per_window)
        if wait > max_wait_s:
            return None
        bucket.level -= tokens
        return wait

    def settle_now(self, key: str, delta: int, per_window: int) -> None:
        if per_window > 0 and delta:
            self._refill(key, per_window).level -= delta

    def level(self, key: str, per_window: int) -> float:
        return self._refill(key, per_window).level

    async def reserve(self, key: str, tokens: int, per_window: int, max_wait_s: float) -> float | None:
        return self.reserve_now(key, tokens, per_window, max_wait_s)

    async def settle(self, key: str, delta: int, per_window: int) -> None:
        self.settle_now(key, delta, per_window)


_default: TokenBucket | None = None


def default_limiter() -> TokenBucket:
    """This process's bucket: enough when every turn of an agent runs in this process."""
    global _default
    if _default is None:
        _default = TokenBucket()
    return _default

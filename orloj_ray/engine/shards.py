"""Which tasks a supervisor claims when there are several (``orloj up --supervisors N``).

A task belongs to shard ``crc32("<namespace>/<name>") % N``; supervisor ``i`` owns shard ``i``
and, while a supervisor is gone, the next live one after it in ring order owns its shard too
(and takes its tasks over at once instead of waiting out their leases). Claims stay safe
whoever tries them: the store decides on the locked row. The owner of shard 0 is the leader:
it alone runs the cluster-wide loops (reconcilers, schedules, retention, MCP sync).

Messages of a shard's tasks travel on that shard's subjects of the message log, so each
supervisor's mailbox receives only what it may process (``orloj_ray.messaging.shard_filter``).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field


def shard_of(namespace: str, name: str, count: int) -> int:
    return zlib.crc32(f"{namespace}/{name}".encode()) % max(1, count)


def owned_shards(index: int, count: int, alive: frozenset[int]) -> frozenset[int]:
    """Shard ``index`` plus every dead shard whose next live successor (ring order) is ``index``."""
    owned = {index}
    for shard in range(count):
        if shard in alive or shard == index:
            continue
        for step in range(1, count):
            successor = (shard + step) % count
            if successor in alive or successor == index:
                if successor == index:
                    owned.add(shard)
                break
    return frozenset(owned)


@dataclass
class Shards:
    """This supervisor's view: its index, the count, and which others are alive (the
    supervisor actor refreshes ``alive`` from Ray's named actors)."""

    index: int = 0
    count: int = 1
    names: tuple[str, ...] = ()
    """Supervisor identities by index (lease owners are ``<identity>#<incarnation>``)."""
    alive: frozenset[int] = field(default_factory=frozenset)
    """Indices known alive; empty means all (nothing known to be dead)."""

    def _alive(self) -> frozenset[int]:
        return self.alive or frozenset(range(self.count))

    @property
    def owned(self) -> frozenset[int]:
        return owned_shards(self.index, self.count, self._alive() | {self.index})

    def shard_of(self, namespace: str, name: str) -> int:
        return shard_of(namespace, name, self.count)

    def owns(self, namespace: str, name: str) -> bool:
        return self.count <= 1 or self.shard_of(namespace, name) in self.owned

    @property
    def leader(self) -> bool:
        return 0 in self.owned

    @property
    def dead(self) -> frozenset[str]:
        """Identities of supervisors known to be gone: their leases need not run out."""
        alive = self._alive()
        return frozenset(n for i, n in enumerate(self.names) if i not in alive and i != self.index)

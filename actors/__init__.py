"""Ray actors of orloj-ray: the StoreHost, the Supervisors, the AgentPool and the AgentActors.

Every actor lives in the Ray namespace ``orloj`` under a name that says what it is, so they
are easy to find in the Ray dashboard.
"""

RAY_NAMESPACE = "orloj"
STORE_ACTOR = "orloj:store"
SUPERVISOR_PREFIX = "orloj:supervisor"
AGENT_PREFIX = "orloj:agent"
POOL_ACTOR = "orloj:agent-pool"


def supervisor_name(index: int) -> str:
    """``orloj:supervisor:<i>``: supervisor ``i`` of ``--supervisors N``."""
    return f"{SUPERVISOR_PREFIX}:{index}"


def agent_actor_name(namespace: str, agent: str) -> str:
    return f"{AGENT_PREFIX}:{namespace}:{agent}"

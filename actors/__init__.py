"""Ray actors of orloj-ray: the StoreHost, the Supervisor and the AgentActors.

Every actor lives in the Ray namespace ``orloj`` under a name that says what it is, so they
are easy to find in the Ray dashboard.
"""

RAY_NAMESPACE = "orloj"
STORE_ACTOR = "orloj:store"
SUPERVISOR_ACTOR = "orloj:supervisor"
AGENT_PREFIX = "orloj:agent"


def agent_actor_name(namespace: str, agent: str) -> str:
    return f"{AGENT_PREFIX}:{namespace}:{agent}"

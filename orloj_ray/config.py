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
    "mcp_commands": "ORLOJ_MCP_COMMANDS",
    "task_retention": "ORLOJ_TASK_RETENTION",
    "auth_mode": "ORLOJ_AUTH_MODE",
    "api_tokens": "ORLOJ_API_TOKENS",
    "agent_idle_ttl": "ORLOJ_AGENT_IDLE_TTL",
    "max_agent_actors": "ORLOJ_MAX_AGENT_ACTORS",
    "supervisors": "ORLOJ_SUPERVISORS",
    "strict_fields": "ORLOJ_STRICT_FIELDS",
    "secret_key": "ORLOJ_SECRET_KEY",
    "secret_key_file": "ORLOJ_SECRET_KEY_FILE",
}
_INT_FIELDS = ("max_agent_actors", "supervisors")
_SECRET_FIELDS = ("api_tokens", "secret_key")


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
    mcp_commands: tuple[str, ...] = ()
    """The programs a stdio McpServer may launch (``npx``, ``uvx``, or absolute paths); empty
    (the default): none, so no stdio MCP server starts (``orloj_ray.mcp.policy``)."""
    task_retention: str = "168h"
    """How long a finished task keeps its trace, history and messages (a Go duration; ``0`` keeps
    them forever). Default 7 days. See ``orloj_ray.engine.retention``."""
    auth_mode: str = ""
    """``off`` or ``token``; empty: ``off`` when the API binds loopback, else ``token``."""
    api_tokens: str = field(default="", repr=False)
    """``token:role,token:role`` for ``auth_mode: token`` (roles: reader, writer, controller, admin)."""
    agent_idle_ttl: str = "10m"
    """An agent actor idle this long is reclaimed (the agent scales to zero; its next turn starts
    one again); ``0`` = never. A duration. ``orloj_ray.engine.fleet``."""
    max_agent_actors: int = 0
    """Live agent actors per Ray node; 0 = derived from the node's memory (``fleet.default_cap``)."""
    supervisors: int = 1
    """Supervisor actors (``orloj:supervisor:<i>``), each claiming a share of the tasks."""
    strict_fields: bool = False
    """Refuse manifests with unknown fields (400) instead of accepting them with a warning."""
    secret_key: str = field(default="", repr=False)
    """Keys that encrypt Secrets at rest, comma-separated, each 32 bytes as base64 or hex; the
    first encrypts, every one decrypts. Empty: ``secret_key_file``, else the default of
    ``orloj_ray.store.encryption`` (a key file under ``$ORLOJ_HOME`` for PostgreSQL)."""
    secret_key_file: str = ""
    """A file holding those keys, one a line (``ORLOJ_SECRET_KEY_FILE``)."""

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
        try:
            parse_idle_ttl(self.agent_idle_ttl)
        except ValueError as exc:
            raise ConfigError(f"{exc} (--agent-idle-ttl, or ORLOJ_AGENT_IDLE_TTL; e.g. 10m, 0 = never)") from None
        if not isinstance(self.max_agent_actors, int) or not 0 <= self.max_agent_actors <= 100_000:
            raise ConfigError(f"max agent actors must be a whole number >= 0 (0 = derived from node memory), "
                              f"got {self.max_agent_actors!r} (--max-agent-actors, or ORLOJ_MAX_AGENT_ACTORS)")
        if not isinstance(self.supervisors, int) or not 1 <= self.supervisors <= 64:
            raise ConfigError(f"supervisors must be a whole number from 1 to 64, got {self.supervisors!r} "
                              "(--supervisors, or ORLOJ_SUPERVISORS)")
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
        for key in _INT_FIELDS:
            if isinstance(values.get(key), str):
                try:
                    values[key] = int(values[key].strip())
                except ValueError:
                    flag = "--" + key.replace("_", "-")
                    raise ConfigError(f"{key.replace('_', ' ')} must be a whole number, got {values[key]!r} "
                                      f"({flag}, or {_ENV[key]})") from None
        if isinstance(values.get("strict_fields"), str):
            flag = values["strict_fields"].strip().lower()
            if flag not in ("true", "false", "1", "0", "yes", "no", ""):
                raise ConfigError(f'invalid strict fields "{values["strict_fields"]}": expected true or false '
                                  "(ORLOJ_STRICT_FIELDS)")
            values["strict_fields"] = flag in ("true", "1", "yes")
        for key in ("tool_allowed_networks", "tool_exec_paths", "mcp_commands"):
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
            elif value is True:
                value = "true"
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
        data["mcp_commands"] = list(self.mcp_commands)
        return data


def parse_idle_ttl(value: str | float | None) -> float:
    """``10m``, ``90s``, ``0`` (never) or a number of seconds -> seconds (``--agent-idle-ttl``)."""
    if value is None or value == "":
        return 600.0
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        from orloj_ray.resources.durations import parse_duration

        text = str(value).strip()
        seconds = float(text) if text.replace(".", "", 1).isdigit() else parse_duration(text).total_seconds()
    if not 0 <= seconds < float("inf"):
        raise ValueError(f"agent idle TTL must be a duration >= 0, got {value!r}")
    return seconds


def ray_auth_warning(host: str, environ: dict[str, str] | None = None) -> str:
    """The warning for an API bound beyond loopback while Ray's own token auth is off, else ``""``.

    Ray's ports (GCS, dashboard and job API, client server, workers) run whatever code they are
    sent: orloj-ray's API tokens protect the API, not those. ``RAY_AUTH_MODE=token`` makes Ray
    ask for its token too (``cluster/k8s/rayservice.yaml``, ``cluster/ray-cluster.yaml``)."""
    env = os.environ if environ is None else environ
    host = (host or "").strip().strip("[]")
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if loopback or (env.get("RAY_AUTH_MODE") or "").strip().lower() == "token":
        return ""
    return (f"the API binds {host or 'an unknown address'}, but Ray's token authentication is off "
            f"(RAY_AUTH_MODE={env.get('RAY_AUTH_MODE') or 'unset'}): whoever reaches this cluster's Ray ports "
            "(GCS, dashboard/job API 8265, client 10001, workers) can run any code on it, API tokens or not. "
            "Keep those ports on a private network, and set RAY_AUTH_MODE=token on every Ray node "
            "(see the README, Security model).")


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

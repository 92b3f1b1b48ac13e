"""A Ray Serve application builder: the control plane as a Serve app, for KubeRay's RayService.

``serveConfigV2`` (or ``serve run`` / ``serve deploy``) names it as the import path::

    applications:
      - name: orloj
        route_prefix: /
        import_path: cluster.serve_app:build
        args: {host: 0.0.0.0}

``build`` starts (or finds, after a redeploy) the StoreHost (in-memory store only), the agent
pool and the supervisors (``ORLOJ_SUPERVISORS``) as named,
detached actors and returns the REST API deployment bound to them. Server settings come from the
``ORLOJ_*`` environment of the Ray pods (``ServerConfig.from_env``), overridden by any ``args``
named like a ``ServerConfig`` field. ``host`` is where Serve's HTTP proxy binds (``http_options``
in the Serve config): beyond loopback, token auth is required (``ORLOJ_API_TOKENS``), as with
``orloj up --host``.
"""

from __future__ import annotations

import dataclasses
import logging

import ray

from actors.agent_pool import start_agent_pool
from actors.store_host import start_store_host
from actors.supervisor import start_supervisors
from orloj_ray.config import ServerConfig
from serve.auth import resolve_auth_mode
from serve.deployment import OrlojApi

log = logging.getLogger("orloj_ray.cluster")
_FIELDS = {f.name for f in dataclasses.fields(ServerConfig)}


def build(args: dict | None = None):
    """The bound API application (``serve.run(build({...}))`` works too)."""
    args = dict(args or {})
    host = str(args.pop("host", "0.0.0.0"))
    unknown = sorted(set(args) - _FIELDS - {"dashboard_url"})
    if unknown:
        raise ValueError(f"cluster.serve_app: unknown args {', '.join(unknown)}; expected host, dashboard_url "
                         f"or a ServerConfig field ({', '.join(sorted(_FIELDS))})")
    dashboard_url = str(args.pop("dashboard_url", ""))
    config = resolve_auth_mode(ServerConfig.from_env(**args), host)
    if config.store == "memory":
        start_store_host(config)
    start_agent_pool(config)
    start_supervisors(config)
    cluster = {"ray_address": ray.get_runtime_context().gcs_address, "dashboard_url": dashboard_url,
               "store": config.store, "log": config.log, "mode": config.mode, "config": config.describe()}
    log.info("orloj-ray control plane built for Serve: %s", config.describe())
    return OrlojApi.bind(cluster, config)

"""The Ray Serve deployment of the REST API: the FastAPI app of ``serve.app`` over RemoteStore.

Replicas never run agent work; they read and write the Store and stream its events. The
concurrent-request limit is raised so long-lived watch streams cannot starve other requests.
"""

from __future__ import annotations

import asyncio
import os

import ray
from ray import serve

from actors.memory_host import RemoteMemoryService
from actors.metrics_export import supervisor_snapshots
from actors.store_host import process_store
from actors.token_hub import RemoteTokenStreams, start_token_hub
from orloj_ray.config import ServerConfig
from serve.app import create_app
from serve.auth import Authenticator, resolve_auth_mode

APP_NAME = "orloj"
MAX_ONGOING_REQUESTS = 1000


def _nodes() -> list[dict]:
    out = []
    for node in ray.nodes():
        out.append({
            "node_id": node.get("NodeID", ""),
            "address": node.get("NodeManagerAddress", ""),
            "alive": bool(node.get("Alive")),
            "resources": {k: v for k, v in (node.get("Resources") or {}).items() if not k.startswith("node:")},
            "labels": {k: v for k, v in (node.get("Labels") or {}).items() if not k.startswith("ray.io/")},
        })
    return out


async def _fleet() -> dict:
    """The agent pool's view: the idle TTL and, per node, the actor cap and live actors."""
    from actors import POOL_ACTOR, RAY_NAMESPACE

    try:
        info = await asyncio.wait_for(ray.get_actor(POOL_ACTOR, namespace=RAY_NAMESPACE).info.remote(), 5.0)
    except Exception as exc:  # noqa: BLE001 - the pool may be restarting; say so rather than fail
        return {"error": f"agent pool unavailable: {type(exc).__name__}"}
    info.pop("actors", None)
    return info


@serve.deployment(max_ongoing_requests=MAX_ONGOING_REQUESTS, ray_actor_options={"num_cpus": 0})
@serve.ingress()
class OrlojApi:
    def __init__(self, cluster: dict, config: ServerConfig):
        self._cluster = cluster
        self._config = config

    async def runtime_info(self) -> dict:
        nodes = await asyncio.to_thread(_nodes)
        return {
            "agents": await _fleet(),
            "supervisors": self._config.supervisors,
            "ray": {"address": self._cluster.get("ray_address", ""),
                    "dashboard_url": self._cluster.get("dashboard_url", ""), "nodes": nodes},
            "store": self._cluster.get("store", "memory"),
            "log": self._cluster.get("log", "memory"),
            "mode": self._cluster.get("mode", "message-driven"),
            # how HTTP reaches this replica: Ray's HAProxy ingress or Serve's Python proxy (cluster/ray_env.py)
            "ingress": "haproxy" if os.environ.get("RAY_SERVE_ENABLE_HA_PROXY") == "1" else "proxy",
            "config": self._config.describe(),
        }

    def __serve_build_asgi_app__(self):
        app = create_app(process_store(self._config), runtime_info=self.runtime_info,
                         auth=Authenticator.from_config(self._config), metrics_source=supervisor_snapshots,
                         strict_fields=self._config.strict_fields,
                         token_streams=RemoteTokenStreams(start_token_hub()))  # created now: turns find it
        app.state.memory = RemoteMemoryService()  # the memory host agent actors write to
        return app


def deploy_api(cluster: dict, config: ServerConfig, *, host: str, port: int) -> None:
    """Start Serve's HTTP proxy on host:port and (re)deploy the API app at ``/``.

    The auth mode is decided here, where the bind host is known (``serve.auth``): a token mode
    without tokens fails now, in the caller, with the fix in the message.
    """
    config = resolve_auth_mode(config, host)
    serve.start(http_options={"host": host, "port": port}, detached=True)
    serve.run(OrlojApi.bind(cluster, config), name=APP_NAME, route_prefix="/", blocking=False)

"""Deploy and remove the orloj-ray control plane on a Ray cluster this process is attached to.

``deploy`` starts the StoreHost (the in-memory store), the agent pool, the supervisors and the
Serve API and records who did (the API URL, the process, the Ray job) in Ray's internal KV;
``undeploy`` removes exactly those and the agent actors (every actor in the Ray namespace
``orloj``), so joining a shared cluster leaves everything else alone.
``running_control_plane`` tells a second starter that one already runs, and where: it must
not deploy beside it (it would share the store, then remove it on the way out).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time

import httpx
import ray
from ray import serve

from actors import AGENT_PREFIX, POOL_ACTOR, RAY_NAMESPACE, STORE_ACTOR, SUPERVISOR_PREFIX, supervisor_name
from actors.agent_pool import start_agent_pool
from actors.store_host import start_store_host
from actors.supervisor import start_supervisors, supervisor_handles
from orloj_ray.config import ServerConfig
from serve.deployment import APP_NAME, deploy_api

log = logging.getLogger("orloj_ray.cluster")
OWNER_KEY = "orloj:control-plane"
"""Ray internal-KV key (namespace ``orloj``) of the record ``deploy`` writes."""


def _started_by() -> str:
    try:
        job = json.loads(os.environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR") or "{}").get("metadata") or {}
    except ValueError:
        job = {}
    who = f"pid {os.getpid()} on {socket.gethostname()}"
    return f"ray job {job['job_submission_id']} ({who})" if job.get("job_submission_id") else who


def _record(api_url: str) -> None:
    from ray.experimental.internal_kv import _internal_kv_put

    record = {"api_url": api_url, "started_by": _started_by(), "started_at": time.time()}
    _internal_kv_put(OWNER_KEY, json.dumps(record), namespace=RAY_NAMESPACE)


def running_control_plane() -> dict | None:
    """The control plane already on this cluster, or None: ``{"api_url", "started_by"}`` as
    ``deploy`` recorded it (empty strings for one deployed otherwise, e.g. a RayService),
    present only while its store or supervisor actor is alive."""
    from ray.experimental.internal_kv import _internal_kv_del, _internal_kv_get

    alive = []
    for name in (STORE_ACTOR, supervisor_name(0), POOL_ACTOR):
        try:
            ray.get_actor(name, namespace=RAY_NAMESPACE)
            alive.append(name)
        except ValueError:
            pass
    raw = _internal_kv_get(OWNER_KEY, namespace=RAY_NAMESPACE)
    if not alive:
        if raw:  # its owner died without undeploying: nothing runs, the record is stale
            _internal_kv_del(OWNER_KEY, namespace=RAY_NAMESPACE)
        return None
    try:
        record = json.loads(raw) if raw else {}
    except ValueError:
        record = {}
    return {"api_url": str(record.get("api_url") or ""), "started_by": str(record.get("started_by") or ""),
            "actors": alive}


def deploy(*, host: str = "127.0.0.1", port: int = 8080, cluster: dict | None = None,
           config: ServerConfig | None = None, healthz_timeout_s: float = 60.0) -> str:
    """Deploy everything and wait until ``/healthz`` answers; returns the API URL.

    ``config``: the server settings (default: ``ServerConfig.from_env`` with ``cluster["mode"]``);
    ``cluster``: facts about the Ray cluster for ``GET /v1/runtime``.
    """
    cluster = dict(cluster or {})
    if config is None:
        config = ServerConfig.from_env(mode=cluster.get("mode"))
    cluster.update(store=config.store, log=config.log, mode=config.mode, config=config.describe())
    if config.store == "memory":  # with PostgreSQL every process has its own connection pool
        start_store_host(config)
    start_agent_pool(config)
    start_supervisors(config)
    deploy_api(cluster, config, host=host, port=port)
    url = f"http://{host}:{port}"
    deadline = time.monotonic() + healthz_timeout_s
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=2.0).status_code == 200:
                _record(url)
                return url
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"the orloj API did not answer on {url}/healthz within {healthz_timeout_s:.0f}s")
        time.sleep(0.2)


def _orloj_actor_names() -> list[str]:
    return [a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if a["namespace"] == RAY_NAMESPACE]


def undeploy(*, drain_timeout_s: float = 30.0) -> None:
    """Remove the API app and every orloj actor (supervisors first, store last).

    The supervisors drain first: running turns finish and are recorded, no new turn starts,
    and leases are released, so a control plane started later resumes every task at once.
    """
    supervisors = supervisor_handles()
    try:
        results = ray.get([s.stop.remote(drain_timeout_s) for s in supervisors], timeout=drain_timeout_s + 20)
        log.info("supervisors drained %s running task(s)", sum(r.get("drained_tasks", 0) for r in results))
    except Exception:
        log.warning("a supervisor did not drain cleanly; its leases will expire instead", exc_info=True)
    try:
        serve.delete(APP_NAME)
    except Exception:
        log.warning("could not delete the Serve app %s", APP_NAME, exc_info=True)
    names = _orloj_actor_names()
    ordered = (sorted(n for n in names if n.startswith(SUPERVISOR_PREFIX)) + [POOL_ACTOR]
               + sorted(n for n in names if n.startswith(AGENT_PREFIX + ":"))
               + sorted(n for n in names if n not in (STORE_ACTOR, POOL_ACTOR) and not n.startswith(
                   (SUPERVISOR_PREFIX, AGENT_PREFIX + ":"))) + [STORE_ACTOR])
    for name in ordered:
        try:
            ray.kill(ray.get_actor(name, namespace=RAY_NAMESPACE), no_restart=True)
        except ValueError:
            continue
    from ray.experimental.internal_kv import _internal_kv_del

    _internal_kv_del(OWNER_KEY, namespace=RAY_NAMESPACE)

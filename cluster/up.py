"""``python -m cluster.up``: the process behind ``orloj up``.

Starts a local Ray head (or joins ``--address``), deploys the control plane, writes a state
file for ``orloj down`` and ``orloj status``, and runs until SIGTERM/SIGINT. On the way out
it removes only what it started: its own Ray head, or, on a joined cluster, its actors and
Serve app. It never runs ``ray stop``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path

from cluster.ray_env import apply_local_env
from orloj_ray.config import ConfigError, ServerConfig, ray_auth_warning
from serve.auth import resolve_auth_mode


def _existing_local_cluster() -> str | None:
    import ray._private.services as services

    try:
        addresses = services.find_gcs_addresses()
    except Exception:
        return None
    return next(iter(addresses), None)


def _parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m cluster.up", description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--address", default=None,
                   help="join this Ray cluster instead of starting one ('auto' finds it); 'local' starts a new "
                        "one even beside another Ray cluster on this machine")
    p.add_argument("--state-file", default=None)
    p.add_argument("--dashboard-port", type=int, default=8265)
    p.add_argument("--no-dashboard", action="store_true")
    p.add_argument("--mode", default=None, help="message-driven (default) or sequential; env ORLOJ_MODE")
    p.add_argument("--store", default=None, help="memory (default) or postgres; env ORLOJ_STORE")
    p.add_argument("--database-url", default=None, help="PostgreSQL URL; env ORLOJ_DATABASE_URL")
    p.add_argument("--log", dest="log_backend", default=None, help="memory (default) or jetstream; env ORLOJ_LOG")
    p.add_argument("--nats-url", default=None, help="NATS servers, comma-separated; env ORLOJ_NATS_URL")
    p.add_argument("--nats-monitor-url", default=None, help="NATS /varz endpoint; env ORLOJ_NATS_MONITOR_URL")
    p.add_argument("--task-retention", default=None, help="keep finished tasks' history this long; env ORLOJ_TASK_RETENTION")
    p.add_argument("--tool-allowed-networks", default=None, help="CIDRs; env ORLOJ_TOOL_ALLOWED_NETWORKS")
    p.add_argument("--mcp-commands", default=None, help="programs stdio McpServers may launch; env ORLOJ_MCP_COMMANDS")
    p.add_argument("--auth-mode", default=None, help="off or token; env ORLOJ_AUTH_MODE")
    p.add_argument("--supervisors", default=None, help="supervisor actors sharing the tasks; env ORLOJ_SUPERVISORS")
    p.add_argument("--agent-idle-ttl", default=None,
                   help="reclaim an agent actor idle this long (0 = never, default 10m); env ORLOJ_AGENT_IDLE_TTL")
    p.add_argument("--max-agent-actors", default=None,
                   help="live agent actors per node (default from node memory); env ORLOJ_MAX_AGENT_ACTORS")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log = logging.getLogger("orloj_ray.up")
    try:
        apply_local_env()
    except ValueError as exc:  # ORLOJ_INGRESS
        log.error("%s", exc)
        return 2
    try:
        config = ServerConfig.from_env(mode=args.mode, store=args.store, database_url=args.database_url,
                                       log=args.log_backend, nats_url=args.nats_url,
                                       nats_monitor_url=args.nats_monitor_url, task_retention=args.task_retention,
                                       tool_allowed_networks=args.tool_allowed_networks,
                                       mcp_commands=args.mcp_commands, auth_mode=args.auth_mode,
                                       supervisors=args.supervisors, agent_idle_ttl=args.agent_idle_ttl,
                                       max_agent_actors=args.max_agent_actors)
        config = resolve_auth_mode(config, args.host)  # refuse an open API beyond loopback before starting anything
    except ConfigError as exc:
        log.error("%s", exc)
        return 2
    if warning := ray_auth_warning(args.host):
        log.warning("%s", warning)
    nats = None
    if config.log == "jetstream" and not config.nats_url:
        from cluster.nats_server import NatsServer

        home = Path(os.environ.get("ORLOJ_HOME") or Path.home() / ".orloj").expanduser()
        try:
            nats = NatsServer(home / "jetstream").start()
        except RuntimeError as exc:
            log.error("cannot start a local nats-server for --log jetstream: %s", exc)
            return 1
        config = config.with_(nats_url=nats.url, nats_monitor_url=nats.monitor_url)
        log.info("started nats-server %s (JetStream store %s, fsync on every write)", nats.url, nats.store_dir)
    try:
        return _serve(args, config, log)
    finally:
        if nats is not None:
            nats.stop()


def _serve(args: argparse.Namespace, config: ServerConfig, log: logging.Logger) -> int:
    import ray

    from cluster.local import deploy, undeploy

    started_ray = args.address in (None, "local")
    if started_ray:
        existing = _existing_local_cluster() if args.address is None else None
        if existing:
            log.error("a Ray cluster is already running on this machine (GCS %s). Join it with "
                      "'orloj up --address auto', or stop it first.", existing)
            return 1
        info = ray.init(
            address="local", namespace="orloj", include_dashboard=not args.no_dashboard, dashboard_host="127.0.0.1",
            dashboard_port=args.dashboard_port, logging_level="warning", log_to_driver=False,
            _node_ip_address="127.0.0.1",
        )
    else:
        info = ray.init(address=args.address, namespace="orloj", logging_level="warning", log_to_driver=False)
    dashboard = info.dashboard_url or ""
    cluster = {
        "ray_address": info.address_info.get("gcs_address", ""),
        "dashboard_url": f"http://{dashboard}" if dashboard and not dashboard.startswith("http") else dashboard,
        "store": config.store, "log": config.log, "mode": config.mode,
    }
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    state_file = Path(args.state_file) if args.state_file else None
    try:
        try:
            url = deploy(host=args.host, port=args.port, cluster=cluster, config=config)
        except ConfigError as exc:  # e.g. the store holds secrets under a key that was not given
            log.error("%s", exc)
            return 2
        state = {"pid": os.getpid(), "api_url": url, "ray_address": cluster["ray_address"],
                 "dashboard_url": cluster["dashboard_url"], "started_ray": started_ray,
                 "store": cluster["store"], "log": cluster["log"], "nats_url": config.nats_url,
                 "log_file": os.environ.get("ORLOJ_UP_LOG", "")}
        if state_file:
            state_file.parent.mkdir(parents=True, exist_ok=True)
            state_file.write_text(json.dumps(state, indent=2))
        log.info("orloj-ray is up: API %s, Ray %s, dashboard %s", url, cluster["ray_address"],
                 cluster["dashboard_url"] or "(off)")
        print(json.dumps(state), flush=True)
        while not stop.wait(1.0):
            pass
        log.info("shutting down")
    finally:
        try:
            undeploy()
        finally:
            if started_ray:
                ray.shutdown()
            if state_file and state_file.exists():
                state_file.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())

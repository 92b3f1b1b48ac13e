"""``python -m cluster.up``: the process behind ``orloj up``.

Starts a local Ray head (or joins ``--address``), deploys the control plane, writes a state
file for ``orloj down`` and ``orloj status``, and runs until SIGTERM/SIGINT. On the way out
it removes only what it started: its own Ray head, or, on a joined cluster, its actors and
Serve app. It never runs ``ray stop``.
"""

from __future__ import annotations

if __name__ == "__main__":  # a Ray job's `python` may not be the one orloj-ray is installed in: say so first
    from orloj_ray.jobs.interpreter import CLIENT_MODULES, require_orloj_python

    require_orloj_python("cluster.up", ("ray", *CLIENT_MODULES))

import argparse
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path

from cluster.ray_env import apply_local_env
from orloj_ray.config import ConfigError, ServerConfig, default_api_port, ray_auth_warning
from serve.auth import resolve_auth_mode


def _existing_local_cluster(temp_dir: str | None) -> str | None:
    """The GCS address of a live cluster recorded in ``<temp dir>/ray_current_cluster`` (by
    `ray start`, or another `orloj up`), which a plain ``ray.init()`` would join; else None.
    Other Ray clusters on the machine (another user's, a test's) do not count: ours gets ports
    of its own."""
    import ray._private.services as services
    from ray._private.utils import read_ray_address

    try:
        address = read_ray_address(temp_dir)
        live = services.find_gcs_addresses() if address else ()
    except Exception:
        return None
    return address if address and address in live else None


def _record_address(gcs_address: str, temp_dir: str | None) -> None:
    """Write ``<temp dir>/ray_current_cluster``, as ``ray start`` does and ``ray.init`` does not.

    A Ray job's driver finds its cluster through that file (``RAY_ADDRESS=auto``): without it,
    with several Ray clusters on the machine, Ray connects the job to any one of them (measured:
    a `ray job submit` to this cluster reached another user's)."""
    from ray._private.utils import write_ray_address

    write_ray_address(gcs_address, temp_dir)


def _forget_address(gcs_address: str, temp_dir: str | None) -> None:
    from ray._private.utils import get_ray_address_file, read_ray_address

    if read_ray_address(temp_dir) == gcs_address:
        Path(get_ray_address_file(temp_dir)).unlink(missing_ok=True)


AGENT_PORT = 52365
"""Ray's default dashboard-agent port, which ``ray.init`` cannot change."""


def _agent_port_for_a_busy_machine(log: logging.Logger) -> None:
    """Give the head this process starts a free dashboard-agent port when another Ray cluster
    on the machine holds 52365: the job API (``ray job submit``) needs that agent, and with
    the port taken it answers "No available agent to submit job". ``ray start`` has
    ``--dashboard-agent-listen-port``; ``ray.init`` has no such argument, so the default its
    ``RayParams`` would take is replaced for this process only (Ray 2.60)."""
    from ray._private import parameter

    from cluster.ray_env import port_or_free

    port = port_or_free(AGENT_PORT)
    if port == AGENT_PORT:
        return
    original = parameter.RayParams.__init__

    def init(self, *args, **kwargs):
        kwargs.setdefault("dashboard_agent_listen_port", port)
        original(self, *args, **kwargs)

    parameter.RayParams.__init__ = init
    log.info("port %d is taken (another Ray on this machine): the dashboard agent listens on %d", AGENT_PORT, port)


def _parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m cluster.up", description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=default_api_port(),
                   help="API port (default: the port of $ORLOJ_SERVER when it names this machine, else 8080)")
    p.add_argument("--address", default=None,
                   help="join this Ray cluster instead of starting one ('auto' finds it); 'local' starts a new "
                        "one even beside another Ray cluster on this machine")
    p.add_argument("--state-file", default=None)
    p.add_argument("--dashboard-port", type=int, default=int(os.environ.get("ORLOJ_DASHBOARD_PORT") or 8265),
                   help="Ray dashboard port of a cluster started here; env ORLOJ_DASHBOARD_PORT")
    p.add_argument("--ray-temp-dir", default=os.environ.get("ORLOJ_RAY_TEMP_DIR") or None,
                   help="Ray's temp dir for a cluster started here (default Ray's, /tmp/ray); env ORLOJ_RAY_TEMP_DIR")
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
        existing = _existing_local_cluster(args.ray_temp_dir) if args.address is None else None
        if existing:
            log.error("a Ray cluster is already running in %s (GCS %s, from `ray start` or another `orloj up`). "
                      "Join it with 'orloj up --address auto', or stop it first.",
                      args.ray_temp_dir or "/tmp/ray", existing)
            return 1
        if not args.no_dashboard:
            _agent_port_for_a_busy_machine(log)
        info = ray.init(
            address="local", namespace="orloj", include_dashboard=not args.no_dashboard, dashboard_host="127.0.0.1",
            dashboard_port=args.dashboard_port, logging_level="warning", log_to_driver=False,
            _node_ip_address="127.0.0.1", _temp_dir=args.ray_temp_dir,
        )
    else:
        info = ray.init(address=args.address, namespace="orloj", logging_level="warning", log_to_driver=False)
        from cluster.local import running_control_plane

        other = running_control_plane()
        if other:  # deploying beside it would share its store, and remove it on the way out
            where = f"its API is {other['api_url']}" if other["api_url"] else "its API is the Serve app 'orloj'"
            by = f", started by {other['started_by']}" if other["started_by"] else ""
            log.error("an orloj-ray control plane already runs on this Ray cluster (GCS %s; %s%s; actors %s). Use "
                      "it: ORLOJ_SERVER=%s orloj status. This one starts nothing and stops nothing; stop that one "
                      "first to replace it.", info.address_info.get("gcs_address", "?"), where, by,
                      ", ".join(other["actors"]), other["api_url"] or "http://<head>:8000")
            ray.shutdown()
            return 1
    if started_ray:
        _record_address(info.address_info["gcs_address"], args.ray_temp_dir)
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
                 "store": cluster["store"], "log": cluster["log"], "mode": cluster["mode"], "nats_url": config.nats_url,
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
                _forget_address(cluster["ray_address"], args.ray_temp_dir)
            if state_file and state_file.exists():
                state_file.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())

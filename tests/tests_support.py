"""Helpers shared by the end-to-end tests."""

from __future__ import annotations

import glob
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import yaml

TERMINAL = ("Succeeded", "Failed", "DeadLetter")


def run_orloj(env: dict, *args: str, cwd=None, timeout: float = 180) -> subprocess.CompletedProcess:
    """The ``orloj`` CLI of this venv as a user runs it, output captured."""
    return subprocess.run([str(Path(sys.executable).parent / "orloj"), *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)


def apply_all(http: httpx.Client, ns: str, docs: list[dict]) -> None:
    """POST each doc into ``ns``; every one must answer 201."""
    from orloj_ray.resources.kinds import kind_info

    for doc in docs:
        doc["metadata"]["namespace"] = ns
        resp = http.post(f"/v1/{kind_info(doc['kind']).plural}", json={"apiVersion": "orloj.dev/v1", **doc})
        assert resp.status_code == 201, resp.text


def wait_until(check, *, timeout: float, interval: float = 0.2, what: str = "condition", describe=None):
    """``check()``'s first truthy answer, polled every ``interval`` for at most ``timeout`` seconds;
    on a timeout the error says ``what`` and, given ``describe()``, what was seen."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            seen = f"; {describe()}" if describe is not None else ""
            raise AssertionError(f"{what} did not hold within {timeout:g}s (last: {value!r}{seen})")
        time.sleep(interval)


def kill_ray_cluster(started_by: int) -> int:
    """SIGKILL every process of the Ray cluster the process ``started_by`` started (its session
    is ``session_<time>_<pid>``) and their children, and nothing else: ``ray stop --force``
    would kill every Ray on the machine. Returns how many were killed."""
    import os
    import re
    import signal

    session = re.compile(rf"session_[0-9_-]+_{started_by}\b")
    procs: dict[int, tuple[int, str]] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().decode(errors="replace").replace("\0", " ")
            ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        procs[int(proc.name)] = (ppid, cmdline)
    doomed = {pid for pid, (_, cmd) in procs.items() if session.search(cmd)}
    for _ in range(10):  # and their descendants (workers, agents)
        grown = doomed | {pid for pid, (ppid, _) in procs.items() if ppid in doomed}
        if grown == doomed:
            break
        doomed = grown
    for pid in doomed:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return len(doomed)


def free_port() -> int:
    """A loopback port free right now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_phase(http: httpx.Client, plural: str, name: str, namespace: str, *, timeout: float = 60.0,
                   phases=TERMINAL) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        obj = http.get(f"/v1/{plural}/{name}", params={"namespace": namespace}).json()
        if (obj.get("status") or {}).get("phase") in phases or time.monotonic() > deadline:
            return obj
        time.sleep(0.2)


BLUEPRINTS = Path(__file__).resolve().parent / "conformance" / "upstream-examples" / "blueprints"
MOCK_ENDPOINT = {"apiVersion": "orloj.dev/v1", "kind": "ModelEndpoint",
                 "metadata": {"name": "openai-default", "namespace": "default"},
                 "spec": {"provider": "mock", "default_model": "gpt-4o"}, "status": {}}


async def load(store, blueprint: str) -> None:
    for path in sorted(glob.glob(str(BLUEPRINTS / blueprint / "**" / "*.yaml"), recursive=True)):
        doc = yaml.safe_load(Path(path).read_text())
        doc["metadata"].setdefault("namespace", "default")
        doc.setdefault("status", {"phase": "Pending"})
        await store.create(doc)
    await store.create(MOCK_ENDPOINT)


def agent_ends(task: dict) -> list[dict]:
    return [r for r in task["status"]["trace"] if r["type"] == "agent_end"]


def processes_naming(text: str) -> list[int]:
    """Pids of this machine's processes whose command line contains ``text`` (a test's own Ray
    temp dir, say), this process excepted: what a test may stop, and must see gone (Linux /proc)."""
    import os

    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if text.encode() in cmdline:
            found.append(int(entry.name))
    return found


README = Path(__file__).resolve().parent.parent / "README.md"


def readme_blocks(heading: str, lang: str | None = None) -> list[str]:
    """The fenced code blocks under ``heading`` (a README line such as ``## Quick start``), up to
    the next heading of the same or a higher level, optionally only those tagged ``lang``: what
    the README-driven tests run, so the README cannot drift from what works."""
    lines = README.read_text().splitlines()
    level = len(heading) - len(heading.lstrip("#"))
    try:
        start = lines.index(heading)
    except ValueError:
        raise AssertionError(f"README.md has no heading {heading!r}") from None
    blocks, current, tag = [], None, ""
    for line in lines[start + 1:]:
        if current is None and line.startswith("#") and len(line) - len(line.lstrip("#")) <= level:
            break
        if line.startswith("```"):
            if current is None:
                current, tag = [], line[3:].strip()
            else:
                if lang is None or tag == lang:
                    blocks.append("\n".join(current) + "\n")
                current = None
            continue
        if current is not None:
            current.append(line)
    assert blocks, f"README.md section {heading!r} has no {lang or ''} code block"
    return blocks

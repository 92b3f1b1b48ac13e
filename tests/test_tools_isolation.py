"""Isolation backends on this machine: sandboxed subprocesses (clean env, timeout, memory
limit, private temp dir), wasm guests under wasmtime, and the container backend's honest
``isolation_unavailable`` when no engine answers."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time

import pytest

from orloj_ray.config import ServerConfig
from orloj_ray.tools import (ContainerRunner, EgressGuard, ExecPaths, SandboxRunner, ToolCallContext, ToolError,
                             default_tool_runner, isolation_mode)
from orloj_ray.tools.isolation import container_engine

SYSTEM_PYTHON = shutil.which("python3", path="/usr/bin:/bin") or sys.executable
"""Programs run by a system interpreter: inside bubblewrap the sandbox sees the system directories only."""

CTX = ToolCallContext("default", "task-1", "agent-1", "default/task-1/agent-1/0/s001/t")


@pytest.fixture
def tools_dir(tmp_path):
    d = tmp_path / "tools"
    d.mkdir()
    return d


def program(directory, name: str, body: str) -> str:
    path = directory / name
    path.write_text(f"#!{SYSTEM_PYTHON}\n" + textwrap.dedent(body))
    path.chmod(0o755)
    return str(path)


def tool(name: str, endpoint: str, **spec) -> dict:
    return {"metadata": {"name": name, "namespace": "default"},
            "spec": {"type": "http", "endpoint": endpoint, "runtime": {"isolation_mode": "sandboxed", "timeout": "10s"},
                     **spec}}


@pytest.fixture
def dispatcher(tools_dir):
    return default_tool_runner(ServerConfig(tool_exec_paths=(str(tools_dir),)))


async def test_sandboxed_env_is_clean(tools_dir, dispatcher, monkeypatch):
    monkeypatch.setenv("ORLOJ_SECRET_CANARY", "canary-value-123")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-canary-should-not-leak")
    prog = program(tools_dir, "env.py", """
        import json, os, sys
        req = json.load(sys.stdin)
        print(json.dumps({"status": "ok", "output": {"env": dict(os.environ), "request": req}}))
    """)
    out = json.loads(await dispatcher.call(tool("env", f"exec:{prog}"), '{"q": 1}', CTX))
    env = out["env"]
    assert "ORLOJ_SECRET_CANARY" not in env and "OPENAI_API_KEY" not in env
    assert "canary" not in json.dumps(env)
    assert set(env) <= {"PATH", "HOME", "TMPDIR", "LANG", "LC_CTYPE", "PWD"}
    req = out["request"]
    assert req["contract_version"] == "v1" and req["request_id"] == CTX.idempotency_key
    assert req["tool"] == "env" and req["input"] == {"q": 1} and req["runtime"]["mode"] == "sandboxed"


async def test_sandboxed_timeout_kills_the_process_group(tools_dir, dispatcher):
    seconds = f"{30 + os.getpid() % 1000 / 1000:.3f}"  # a sleep this test can recognise in /proc

    def sleepers() -> list[str]:
        found = []
        for entry in os.listdir("/proc"):
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    if f.read().split(b"\0")[:2] == [b"sleep", seconds.encode()]:
                        with open(f"/proc/{entry}/stat") as stat:
                            if stat.read().rsplit(")", 1)[1].split()[0] != "Z":
                                found.append(entry)
            except OSError:
                continue
        return found

    prog = program(tools_dir, "sleepy.py", f"""
        import subprocess, time
        child = subprocess.Popen(["sleep", "{seconds}"])
        time.sleep(30)
    """)
    t = tool("sleepy", f"exec:{prog}")
    t["spec"]["runtime"]["timeout"] = "1s"
    started = time.monotonic()
    with pytest.raises(ToolError) as err:
        await dispatcher.call(t, "{}", CTX)
    assert err.value.code == "timeout" and "timed out after 1s" in err.value.message
    assert time.monotonic() - started < 8
    for _ in range(50):  # the grandchild was killed with its group (or its sandbox's namespace)
        if not sleepers():
            break
        time.sleep(0.1)
    else:
        pytest.fail("the tool's child process outlived the timeout")


async def test_sandboxed_memory_limit(tools_dir, dispatcher):
    prog = program(tools_dir, "hog.py", """
        block = bytearray(1024 * 1024 * 1024)
        print("allocated", len(block))
    """)
    with pytest.raises(ToolError) as err:
        await dispatcher.call(tool("hog", f"exec:{prog}"), "{}", CTX)
    assert err.value.code == "resource_limit" and "memory limit" in err.value.message


async def test_sandboxed_temp_dir_is_private_and_removed(tools_dir, dispatcher):
    prog = program(tools_dir, "tmp.py", """
        import json, os, stat
        cwd = os.getcwd()
        open("scratch.txt", "w").write("x")
        print(json.dumps({"cwd": cwd, "home": os.environ["HOME"], "tmp": os.environ["TMPDIR"],
                          "mode": stat.S_IMODE(os.stat(cwd).st_mode), "files": os.listdir(cwd)}))
    """)
    first = json.loads(await dispatcher.call(tool("tmp", f"exec:{prog}"), "{}", CTX))
    second = json.loads(await dispatcher.call(tool("tmp", f"exec:{prog}"), "{}", CTX))
    assert first["cwd"] == first["home"] == first["tmp"] and first["mode"] == 0o700
    assert first["files"] == ["scratch.txt"] and second["files"] == ["scratch.txt"]
    assert first["cwd"] != second["cwd"]
    assert not os.path.exists(first["cwd"]) and not os.path.exists(second["cwd"])


async def test_sandboxed_failures_are_coded_and_the_runner_goes_on(tools_dir, dispatcher):
    crash = program(tools_dir, "crash.py", "import sys; sys.stderr.write('boom'); sys.exit(3)\n")
    envelope = program(tools_dir, "env_err.py", """
        import json
        print(json.dumps({"contract_version": "v1", "status": "error",
                          "error": {"code": "invalid_input", "message": "q missing"}}))
    """)
    ok = program(tools_dir, "ok.py", "print('fine')\n")
    with pytest.raises(ToolError) as err:
        await dispatcher.call(tool("crash", f"exec:{crash}"), "{}", CTX)
    assert err.value.code == "execution_failed" and "status 3" in err.value.message and "boom" in err.value.message
    with pytest.raises(ToolError) as env_err:
        await dispatcher.call(tool("e", f"exec:{envelope}"), "{}", CTX)
    assert env_err.value.code == "invalid_input" and "q missing" in env_err.value.message
    assert await dispatcher.call(tool("ok", f"exec:{ok}"), "{}", CTX) == "fine"


async def test_programs_only_from_operator_allowed_directories(tools_dir, tmp_path):
    prog = program(tmp_path, "outside.py", "print('should not run')\n")
    dispatcher = default_tool_runner(ServerConfig(tool_exec_paths=(str(tools_dir),)))
    with pytest.raises(ToolError) as err:
        await dispatcher.call(tool("o", f"exec:{prog}"), "{}", CTX)
    assert err.value.code == "runtime_policy_invalid" and "ORLOJ_TOOL_EXEC_PATHS" in err.value.message
    link = tools_dir / "link.py"
    link.symlink_to(prog)  # a link out of the directory does not count as inside
    with pytest.raises(ToolError):
        await dispatcher.call(tool("o", f"exec:{link}"), "{}", CTX)
    with pytest.raises(ToolError) as none:  # no directories configured: nothing runs
        await default_tool_runner().call(tool("o", f"exec:{prog}"), "{}", CTX)
    assert none.value.code == "runtime_policy_invalid"


async def test_high_risk_tool_defaults_to_sandboxed(tools_dir, dispatcher, monkeypatch):
    monkeypatch.setenv("ORLOJ_SECRET_CANARY", "canary-value-123")
    prog = program(tools_dir, "envcount.py", "import os; print('canary' if 'ORLOJ_SECRET_CANARY' in os.environ else 'clean')\n")
    risky = {"metadata": {"name": "r"}, "spec": {"type": "http", "endpoint": f"exec:{prog}", "risk_level": "high"}}
    assert isolation_mode(risky) == "sandboxed"
    assert isolation_mode({"spec": {"risk_level": "critical"}}) == "sandboxed"
    assert isolation_mode({"spec": {"risk_level": "low"}}) == "none"
    assert await dispatcher.call(risky, "{}", CTX) == "clean"
    # explicitly isolation none: a local program is not an HTTP endpoint
    plain = {"metadata": {"name": "p"}, "spec": {"type": "http", "endpoint": f"exec:{prog}",
                                                 "runtime": {"isolation_mode": "none"}}}
    with pytest.raises(ToolError) as err:
        await dispatcher.call(plain, "{}", CTX)
    assert err.value.code == "runtime_policy_invalid"


def test_bwrap_is_used_only_when_usable():
    runner = SandboxRunner(http=None, exec_paths=ExecPaths())
    if shutil.which("bwrap") is None:
        assert runner.bwrap == ""
    else:
        probe = subprocess.run(["bwrap", "--ro-bind", "/", "/", "--unshare-net", "true"], capture_output=True)
        assert bool(runner.bwrap) == (probe.returncode == 0)


# --- wasm -------------------------------------------------------------------------------------

UPSTREAM_ECHO = '{"contract_version":"v1","status":"ok","output":"reference wasm module"}\n'


def echo_guest_wat() -> str:
    """Upstream's reference guest (examples/tools/wasm-reference): exported ``run`` prints a
    fixed v1 response."""
    escaped = UPSTREAM_ECHO.replace('"', '\\"').replace("\n", "\\n")
    return f"""(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 64) "{escaped}")
  (func (export "run")
    (i32.store (i32.const 0) (i32.const 64))
    (i32.store (i32.const 4) (i32.const {len(UPSTREAM_ECHO)}))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))
"""


def request_echo_wat() -> str:
    """Our guest: reads the v1 request from stdin and answers ``{"status":"ok","output":<request>}``
    (one iovec per ``fd_write``: WASI may write only the first of several)."""
    prefix = '{"contract_version":"v1","status":"ok","output":'
    escaped = prefix.replace('"', '\\"')
    return f"""(module
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (data (i32.const 16) "{escaped}")
  (data (i32.const 112) "}}")
  (func (export "run") (local $off i32) (local $n i32)
    (local.set $off (i32.const 1024))
    (block $done
      (loop $more
        (i32.store (i32.const 0) (local.get $off))
        (i32.store (i32.const 4) (i32.const 4096))
        (br_if $done (i32.ne (call $fd_read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)) (i32.const 0)))
        (local.set $n (i32.load (i32.const 8)))
        (br_if $done (i32.eqz (local.get $n)))
        (local.set $off (i32.add (local.get $off) (local.get $n)))
        (br_if $done (i32.gt_u (local.get $off) (i32.const 126000)))
        (br $more)))
    (i32.store (i32.const 200) (i32.const 16)) (i32.store (i32.const 204) (i32.const {len(prefix)}))
    (i32.store (i32.const 208) (i32.const 1024)) (i32.store (i32.const 212) (i32.sub (local.get $off) (i32.const 1024)))
    (i32.store (i32.const 216) (i32.const 112)) (i32.store (i32.const 220) (i32.const 1))
    (drop (call $fd_write (i32.const 1) (i32.const 200) (i32.const 1) (i32.const 8)))
    (drop (call $fd_write (i32.const 1) (i32.const 208) (i32.const 1) (i32.const 8)))
    (drop (call $fd_write (i32.const 1) (i32.const 216) (i32.const 1) (i32.const 8)))))
"""


SPIN_WAT = '(module (memory (export "memory") 1) (func (export "run") (loop $l (br $l))))'


def wasm_tool(name: str, module: str, **runtime) -> dict:
    return {"metadata": {"name": name}, "spec": {"type": "wasm", "endpoint": f"file://{module}", "risk_level": "high",
                                                "runtime": {"isolation_mode": "wasm", "timeout": "5s", **runtime}}}


async def test_wasm_upstream_echo_guest(tools_dir, dispatcher):
    path = tools_dir / "echo_guest.wat"
    path.write_text(echo_guest_wat())
    assert await dispatcher.call(wasm_tool("wasm_echo", str(path)), '{"x": 1}', CTX) == "reference wasm module"


async def test_wasm_own_guest_reads_the_v1_request(tools_dir, dispatcher):
    import wasmtime

    path = tools_dir / "request_echo.wasm"  # compiled here with wat2wasm: no binaries in the repo
    path.write_bytes(wasmtime.wat2wasm(request_echo_wat()))
    out = json.loads(await dispatcher.call(wasm_tool("mirror", str(path)), '{"city": "Oslo"}', CTX))
    assert out["contract_version"] == "v1" and out["tool"] == "mirror" and out["namespace"] == "default"
    assert out["input"] == {"city": "Oslo"} and out["risk_level"] == "high"
    assert out["runtime"]["entrypoint"] == "run" and out["runtime"]["enable_wasi"] is True


async def test_wasm_guest_is_stopped_at_its_timeout(tools_dir, dispatcher):
    path = tools_dir / "spin.wat"
    path.write_text(SPIN_WAT)
    started = time.monotonic()
    with pytest.raises(ToolError) as err:
        await dispatcher.call(wasm_tool("spin", str(path), timeout="300ms"), "{}", CTX)
    assert err.value.code in ("timeout", "resource_limit")
    assert time.monotonic() - started < 5


async def test_wasm_module_must_be_allowed_and_speak_the_contract(tools_dir, tmp_path, dispatcher):
    outside = tmp_path / "echo.wat"
    outside.write_text(echo_guest_wat())
    with pytest.raises(ToolError) as err:
        await dispatcher.call(wasm_tool("w", str(outside)), "{}", CTX)
    assert err.value.code == "runtime_policy_invalid"
    silent = tools_dir / "silent.wat"
    silent.write_text('(module (memory (export "memory") 1) (func (export "run")))')
    with pytest.raises(ToolError) as contract:
        await dispatcher.call(wasm_tool("s", str(silent)), "{}", CTX)
    assert "not a v1 contract envelope" in contract.value.message


# --- container --------------------------------------------------------------------------------

async def test_container_backend_reports_what_this_machine_has():
    """Whichever case applies here: no usable engine -> ``isolation_unavailable`` naming why;
    a usable one -> the probe agrees with ``<cli> info``."""
    cli, why = container_engine()
    engines = [shutil.which(c) for c in ("docker", "podman") if shutil.which(c)]
    usable = any(subprocess.run([e, "info"], capture_output=True, timeout=30).returncode == 0 for e in engines)
    assert bool(cli) == usable
    t = {"metadata": {"name": "boxed"}, "spec": {"type": "http", "endpoint": "http://127.0.0.1:9/x",
                                                 "runtime": {"isolation_mode": "container"}}}
    dispatcher = default_tool_runner(ServerConfig(tool_allowed_networks=("127.0.0.0/8",)))
    if not usable:
        with pytest.raises(ToolError) as err:
            await dispatcher.call(t, "{}", CTX)
        assert err.value.code == "isolation_unavailable" and err.value.reason == "tool_isolation_unavailable"
        assert "no container engine is usable" in err.value.message and why in err.value.message
    # never a silent fallback, whatever the machine has
    forced = ContainerRunner(EgressGuard(), engine=("", "docker: Cannot connect to the Docker daemon"))
    with pytest.raises(ToolError) as forced_err:
        await forced.call(t, "{}", CTX)
    assert forced_err.value.code == "isolation_unavailable" and "Docker daemon" in forced_err.value.message

"""Isolation backends for tools whose code runs on this server (execution.md 11.1).

* ``sandboxed``: the tool's program (endpoint ``exec:/abs/program args...``) runs as a
  subprocess with ``setrlimit`` limits (CPU, address space, open files, processes, file
  size, no core), a wall-clock timeout that kills its whole process group, a clean
  environment (none of the server's variables or secrets), and a private 0700 temp dir as
  cwd/HOME/TMPDIR that is removed afterwards; inside bubblewrap (``bwrap``: no network, the
  system directories read-only, nothing else of the server's files, a private /tmp, writes
  only in its directory) when bwrap is installed and usable. Without bwrap the program can
  read what the server's user can read and reach the network: install bubblewrap (a warning
  says so once). A remote ``http`` tool has no code here to isolate: it goes through the
  egress-guarded HTTP runner.
* ``wasm``: a WASI module (``file:/abs/module.wasm`` or ``.wat``, or the server's default
  module) run by wasmtime in-process with a memory cap, fuel, and an epoch deadline; stdin
  is the v1 request ``{"contract_version":"v1","namespace","tool","input",...}``, stdout
  must be the v1 response ``{"contract_version":"v1","status":"ok|error|denied",...}``.
* ``container``: ``docker``/``podman`` when the CLI is present and its engine answers,
  else ``isolation_unavailable``; never a silent fallback.

Programs and modules are loaded only from directories the operator allowed
(``ServerConfig.tool_exec_paths``, env ``ORLOJ_TOOL_EXEC_PATHS``): a manifest cannot name
an arbitrary file of the server.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import resource
import shlex
import shutil
import signal
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from orloj_ray.redact import Redactor
from orloj_ray.tools.auth import ResolvedAuth, auth_of
from orloj_ray.tools.base import ToolCallContext, ToolError, ToolRunner, seconds, tool_name
from orloj_ray.tools.egress import EgressGuard
from orloj_ray.tools.http import parse_response

log = logging.getLogger("orloj_ray.tools.isolation")

MAX_OUTPUT = 1024 * 1024
EXEC_FIX = "an operator allows a directory with ORLOJ_TOOL_EXEC_PATHS (comma-separated absolute paths)"


@dataclass(frozen=True)
class SandboxLimits:
    memory_bytes: int = 256 * 1024 * 1024
    """Address-space cap (RLIMIT_AS). Default 256 MiB."""
    cpu_seconds: int = 0
    """RLIMIT_CPU; 0 = the tool's timeout rounded up, plus one second."""
    open_files: int = 64
    processes: int = 32
    """Processes beyond those the server's user already runs (RLIMIT_NPROC counts per user)."""
    file_bytes: int = 16 * 1024 * 1024


def tool_timeout(tool: dict) -> float:
    return seconds(str(((tool.get("spec") or {}).get("runtime") or {}).get("timeout") or ""), 30.0)


def request_document(tool: dict, tool_input: str, ctx: ToolCallContext, *, mode: str, extra: dict | None = None) -> dict:
    """The v1 request a local program or wasm guest reads on stdin (upstream's wasm shape)."""
    spec = tool.get("spec") or {}
    try:
        parsed = json.loads(tool_input or "{}")
    except ValueError:
        parsed = tool_input
    return {"contract_version": "v1", "request_id": ctx.idempotency_key, "namespace": ctx.namespace,
            "task": ctx.task, "agent": ctx.agent, "tool": tool_name(tool), "input": parsed, "input_raw": tool_input,
            "capabilities": list(spec.get("capabilities") or []), "risk_level": spec.get("risk_level") or "low",
            "runtime": {"mode": mode, "timeout_ms": int(tool_timeout(tool) * 1000), **(extra or {})}}


class ExecPaths:
    """Where local programs and modules may come from."""

    def __init__(self, paths: Iterable[str] = ()):
        self.roots = tuple(Path(p).resolve() for p in paths if str(p).strip())

    def check(self, path: str, name: str) -> Path:
        p = Path(path)
        if not p.is_absolute():
            raise ToolError(f'tool "{name}": "{path}" must be an absolute path', code="runtime_policy_invalid")
        real = p.resolve()
        if not any(real == root or root in real.parents for root in self.roots):
            raise ToolError(f'tool "{name}": "{path}" is outside the directories this server allows for tool '
                            f"programs; {EXEC_FIX}", code="runtime_policy_invalid")
        if not real.is_file():
            raise ToolError(f'tool "{name}": "{path}" does not exist', code="runtime_policy_invalid")
        return real


def auth_env(auth: ResolvedAuth | None) -> dict[str, str]:
    """The tool's own credentials, as upstream's container backend passes them."""
    if auth is None or auth.error or not auth.secret:
        return {}
    if auth.profile == "bearer":
        return {"TOOL_AUTH_BEARER": auth.secret}
    if auth.profile == "basic":
        return {"TOOL_AUTH_BASIC": base64.b64encode(auth.secret.encode()).decode()}
    if auth.profile == "api_key_header":
        return {"TOOL_AUTH_HEADER_NAME": auth.header_name, "TOOL_AUTH_HEADER_VALUE": auth.secret}
    return {}


SYSTEM_DIRS = ("/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin", "/etc/alternatives", "/etc/ld.so.cache")
"""What every sandbox sees of the server's files, read-only (``/bin`` and ``/lib`` are often
links into ``/usr``)."""
NETWORK_FILES = ("/etc/resolv.conf", "/etc/hosts", "/etc/nsswitch.conf", "/etc/ssl", "/etc/ca-certificates",
                 "/etc/pki", "/etc/gai.conf")
"""Added, read-only, when the sandbox may use the network (an MCP server): names and TLS roots."""


def bwrap_argv(bwrap: str, workdir: str, argv: list[str], *, network: bool = False,
               read_only: Iterable[str] = ()) -> list[str]:
    """``argv`` inside bubblewrap: new namespaces (the network only with ``network``), the
    system directories and ``read_only`` paths read-only, ``/proc``, a minimal ``/dev``, an
    empty ``/tmp``, and ``workdir`` the one writable place (also the working directory).
    Order matters: bwrap mounts in argument order, so ``/tmp`` comes before ``workdir``,
    which usually lies under it."""
    command = [bwrap, "--unshare-all", *(["--share-net"] if network else []), "--die-with-parent",
               "--new-session", "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
    for path in (*SYSTEM_DIRS, *(NETWORK_FILES if network else ())):
        command += ["--ro-bind-try", path, path]
    for path in read_only:
        command += ["--ro-bind", path, path]
    return command + ["--bind", workdir, workdir, "--chdir", workdir, "--", *argv]


_warned_no_bwrap = False


def warn_without_bwrap(what: str) -> None:
    global _warned_no_bwrap
    if not _warned_no_bwrap:
        _warned_no_bwrap = True
        log.warning("bubblewrap (bwrap) is not usable here: %s run with limits, a clean environment and a private "
                    "directory, but can read what this server's user can read and reach the network. Install "
                    "bubblewrap (Debian/Ubuntu: apt-get install bubblewrap) to isolate them.", what)


def bwrap_usable() -> str:
    """The bwrap path when it is installed and can create a sandbox here, else ``""``."""
    path = shutil.which("bwrap")
    if not path:
        return ""
    try:
        probe = subprocess.run([path, "--ro-bind", "/", "/", "--unshare-net", "true"], capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return path if probe.returncode == 0 else ""


def _user_processes() -> int:
    uid = os.getuid()
    count = 0
    try:
        for entry in os.scandir("/proc"):
            if entry.name.isdigit():
                try:
                    count += entry.stat().st_uid == uid
                except OSError:
                    pass
    except OSError:
        return 256
    return count


class SandboxRunner:
    """``isolation_mode: sandboxed``."""

    def __init__(self, http: ToolRunner, exec_paths: ExecPaths, limits: SandboxLimits | None = None,
                 use_bwrap: bool | None = None):
        self._http = http
        self._paths = exec_paths
        self.limits = limits or SandboxLimits()
        self._use_bwrap = use_bwrap
        self._bwrap: str | None = None if use_bwrap is not False else ""

    @property
    def bwrap(self) -> str:
        """The bwrap in use (probed on first use), or ``""``."""
        if self._bwrap is None:
            self._bwrap = bwrap_usable()
            if self._use_bwrap and not self._bwrap:
                raise ToolError("bubblewrap was required for sandboxed tools but is not usable here",
                                code="isolation_unavailable")
        return self._bwrap

    async def call(self, tool: dict, tool_input: str, ctx: ToolCallContext) -> str:
        endpoint = str((tool.get("spec") or {}).get("endpoint") or "").strip()
        if not endpoint.startswith("exec:"):
            return await self._http.call(tool, tool_input, ctx)
        name = tool_name(tool)
        try:
            argv = shlex.split(endpoint[len("exec:"):].strip())
        except ValueError as exc:
            raise ToolError(f'tool "{name}": bad exec endpoint: {exc}', code="runtime_policy_invalid") from None
        if not argv:
            raise ToolError(f'tool "{name}": exec endpoint names no program', code="runtime_policy_invalid")
        argv[0] = str(self._paths.check(argv[0], name))
        auth = auth_of(tool)
        redactor = Redactor(auth.secret_values() if auth else ())
        timeout = tool_timeout(tool)
        doc = request_document(tool, tool_input, ctx, mode="sandboxed",
                               extra={"max_memory_bytes": self.limits.memory_bytes})
        workdir = tempfile.mkdtemp(prefix="orloj-tool-")
        os.chmod(workdir, 0o700)
        try:
            code, out, err, timed_out, overflow = await self._run(argv, json.dumps(doc).encode(), workdir,
                                                                  auth_env(auth), timeout)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        if timed_out:
            raise ToolError(f'tool "{name}" timed out after {timeout:g}s (sandbox killed it)', code="timeout",
                            retryable=True)
        if overflow:
            raise ToolError(f'tool "{name}" wrote more than {MAX_OUTPUT} bytes of output', code="resource_limit")
        stderr_tail = redactor.text(err.decode(errors="replace")[-400:].strip())
        if code != 0:
            limit = _limit_hit(code, stderr_tail)
            if limit:
                raise ToolError(f'tool "{name}" exceeded its sandbox {limit} '
                                f"(memory {self.limits.memory_bytes // (1024 * 1024)} MiB): {stderr_tail}",
                                code="resource_limit")
            raise ToolError(f'tool "{name}" exited with status {code}: {stderr_tail}')
        return redactor.text(parse_response(name, out.decode(errors="replace"), redactor=redactor))

    async def _run(self, argv: list[str], stdin: bytes, workdir: str, extra_env: dict[str, str], timeout: float):
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": workdir, "TMPDIR": workdir, "LANG": "C.UTF-8",
               **extra_env}
        limits = self.limits
        cpu = limits.cpu_seconds or int(timeout) + 1
        nproc = _user_processes() + limits.processes

        def preexec() -> None:  # runs in the child between fork and exec
            for what, value in ((resource.RLIMIT_AS, limits.memory_bytes), (resource.RLIMIT_CPU, cpu),
                                (resource.RLIMIT_NOFILE, limits.open_files), (resource.RLIMIT_NPROC, nproc),
                                (resource.RLIMIT_FSIZE, limits.file_bytes), (resource.RLIMIT_CORE, 0)):
                resource.setrlimit(what, (value, value))

        command = argv
        bwrap = await asyncio.to_thread(lambda: self.bwrap)
        if bwrap:
            command = bwrap_argv(bwrap, workdir, argv, read_only=[argv[0]])
        else:
            warn_without_bwrap("sandboxed tools")
        proc = await asyncio.create_subprocess_exec(
            *command, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, cwd=workdir, env=env, preexec_fn=preexec,
            start_new_session=True, close_fds=True)
        out, err = bytearray(), bytearray()
        overflow = False

        async def pump(stream, buf: bytearray) -> None:
            nonlocal overflow
            while chunk := await stream.read(65536):
                if len(buf) < MAX_OUTPUT:
                    buf.extend(chunk[:MAX_OUTPUT - len(buf)])
                else:
                    overflow = True
                    _kill(proc)

        async def feed() -> None:
            try:
                proc.stdin.write(stdin)
                await proc.stdin.drain()
            except (BrokenPipeError, ConnectionResetError):
                pass
            finally:
                proc.stdin.close()

        timed_out = False
        try:
            await asyncio.wait_for(asyncio.gather(feed(), pump(proc.stdout, out), pump(proc.stderr, err),
                                                  proc.wait()), timeout)
        except asyncio.TimeoutError:
            timed_out = True
        finally:
            _kill(proc)
            try:
                await asyncio.wait_for(proc.wait(), 5)
            except asyncio.TimeoutError:
                pass
        return proc.returncode, bytes(out), bytes(err), timed_out, overflow


def _kill(proc) -> None:
    if proc.returncode is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def _limit_hit(code: int, stderr: str) -> str:
    if code in (-signal.SIGXCPU, 128 + signal.SIGXCPU):
        return "CPU time limit"
    if code in (-signal.SIGXFSZ, 128 + signal.SIGXFSZ):
        return "file size limit"
    if "MemoryError" in stderr or "Cannot allocate memory" in stderr or "std::bad_alloc" in stderr:
        return "memory limit"
    if code in (-signal.SIGSEGV, -signal.SIGKILL, -signal.SIGABRT):
        return "resource limits (killed by signal)"
    return ""


class WasmRunner:
    """``isolation_mode: wasm`` / ``type: wasm`` with wasmtime."""

    def __init__(self, exec_paths: ExecPaths, default_module: str = "", entrypoint: str = "run",
                 memory_bytes: int = 64 * 1024 * 1024, fuel: int = 2_000_000_000):
        self._paths = exec_paths
        self._default = default_module
        self._entrypoint = entrypoint
        self.memory_bytes = memory_bytes
        self.fuel = fuel

    async def call(self, tool: dict, tool_input: str, ctx: ToolCallContext) -> str:
        name = tool_name(tool)
        try:
            import wasmtime  # noqa: F401
        except ImportError:
            raise ToolError(f'tool "{name}" needs the wasm backend but wasmtime is not installed '
                            "(pip install 'orloj-ray[wasm]')", code="isolation_unavailable") from None
        endpoint = str((tool.get("spec") or {}).get("endpoint") or "").strip()
        if endpoint.startswith("file://"):
            endpoint = endpoint[len("file://"):]
        elif endpoint.startswith("file:"):
            endpoint = endpoint[len("file:"):]
        module_path = endpoint or self._default
        if not module_path:
            raise ToolError(f'tool "{name}": no wasm module: set spec.endpoint to file:/abs/module.wasm or configure '
                            "the server's default module (ORLOJ_TOOL_WASM_MODULE)", code="runtime_policy_invalid")
        path = self._paths.check(module_path, name) if endpoint else Path(module_path)
        timeout = tool_timeout(tool)
        doc = request_document(tool, tool_input, ctx, mode="wasm",
                               extra={"entrypoint": self._entrypoint, "max_memory_bytes": self.memory_bytes,
                                      "fuel": self.fuel, "enable_wasi": True})
        auth = auth_of(tool)
        redactor = Redactor(auth.secret_values() if auth else ())
        out = await asyncio.to_thread(self._run, path, json.dumps(doc).encode(), timeout, name)
        return redactor.text(parse_response(name, out, strict=True, redactor=redactor))

    def _run(self, path: Path, stdin: bytes, timeout: float, name: str) -> str:
        import wasmtime

        config = wasmtime.Config()
        config.consume_fuel = True
        config.epoch_interruption = True
        engine = wasmtime.Engine(config)
        try:
            if path.suffix == ".wat":
                module = wasmtime.Module(engine, wasmtime.wat2wasm(path.read_text()))
            else:
                module = wasmtime.Module.from_file(engine, str(path))
        except (wasmtime.WasmtimeError, OSError) as exc:
            raise ToolError(f'tool "{name}": cannot load wasm module {path.name}: {exc}',
                            code="runtime_policy_invalid") from None
        with tempfile.TemporaryDirectory(prefix="orloj-wasm-") as tmp:
            stdin_path, stdout_path = os.path.join(tmp, "in"), os.path.join(tmp, "out")
            Path(stdin_path).write_bytes(stdin)
            wasi = wasmtime.WasiConfig()
            wasi.argv = [path.name]
            wasi.stdin_file = stdin_path
            wasi.stdout_file = stdout_path
            store = wasmtime.Store(engine)
            store.set_wasi(wasi)
            store.set_limits(memory_size=self.memory_bytes)
            store.set_fuel(self.fuel)
            store.set_epoch_deadline(1)
            timer = threading.Timer(timeout, engine.increment_epoch)
            timer.start()
            linker = wasmtime.Linker(engine)
            linker.define_wasi()
            try:
                instance = linker.instantiate(store, module)
                exports = instance.exports(store)
                entry = next((n for n in (self._entrypoint, "_start") if n in exports), None)
                if entry is None:
                    raise ToolError(f'tool "{name}": wasm module exports neither "{self._entrypoint}" nor "_start"',
                                    code="runtime_policy_invalid")
                exports[entry](store)
            except wasmtime.ExitTrap as exc:
                if exc.code != 0:
                    raise ToolError(f'tool "{name}": wasm module exited with status {exc.code}') from None
            except wasmtime.Trap as exc:
                text = str(exc)
                if "interrupt" in text:
                    raise ToolError(f'tool "{name}" timed out after {timeout:g}s (wasm)', code="timeout",
                                    retryable=True) from None
                if "fuel" in text:
                    raise ToolError(f'tool "{name}" ran out of wasm fuel ({self.fuel})', code="resource_limit") from None
                raise ToolError(f'tool "{name}": wasm trap: {text.splitlines()[0] if text else "unknown"}') from None
            except wasmtime.WasmtimeError as exc:
                raise ToolError(f'tool "{name}": wasm error: {str(exc).splitlines()[0]}') from None
            finally:
                timer.cancel()
            return Path(stdout_path).read_bytes()[:MAX_OUTPUT].decode(errors="replace")


def container_engine() -> tuple[str, str]:
    """``(cli path, "")`` when docker/podman is installed and its engine answers, else ``("", why)``."""
    reasons = []
    for cli in ("docker", "podman"):
        path = shutil.which(cli)
        if not path:
            continue
        try:
            probe = subprocess.run([path, "info", "--format", "{{.ServerVersion}}"], capture_output=True, timeout=15)
        except (OSError, subprocess.TimeoutExpired) as exc:
            reasons.append(f"{cli}: {exc}")
            continue
        if probe.returncode == 0:
            return path, ""
        reasons.append(f"{cli}: {(probe.stderr or probe.stdout).decode(errors='replace').strip().splitlines()[-1:] or ['no engine']}"
                       .replace("['", "").replace("']", ""))
    return "", "; ".join(reasons) or "neither docker nor podman is installed"


class ContainerRunner:
    """``isolation_mode: container``: upstream's curl-in-a-container call of an ``http`` tool.

    The engine is probed once, on first use; without a usable one every call fails with
    ``isolation_unavailable``, naming why."""

    IMAGE = "curlimages/curl:8.8.0"

    def __init__(self, guard: EgressGuard, engine: tuple[str, str] | None = None):
        self._guard = guard
        self._engine = engine

    def engine(self) -> tuple[str, str]:
        if self._engine is None:
            self._engine = container_engine()
        return self._engine

    async def call(self, tool: dict, tool_input: str, ctx: ToolCallContext) -> str:
        name = tool_name(tool)
        cli, why = await asyncio.to_thread(self.engine)
        if not cli:
            raise ToolError(f'tool "{name}" needs container isolation but no container engine is usable on this '
                            f"server ({why}); start docker/podman or choose another spec.runtime.isolation_mode",
                            code="isolation_unavailable")
        spec = tool.get("spec") or {}
        if str(spec.get("type") or "http") != "http":
            raise ToolError(f'tool "{name}": the container backend runs http tools only', code="unsupported_tool")
        target = await self._guard.check(str(spec.get("endpoint") or ""), tool=name)
        auth = auth_of(tool)
        redactor = Redactor(auth.secret_values() if auth else ())
        timeout = tool_timeout(tool)
        env = {"TOOL_ENDPOINT": spec["endpoint"], "TOOL_IDEMPOTENCY_KEY": ctx.idempotency_key, **auth_env(auth)}
        port = target.url.split("://", 1)[1].split("/", 1)[0].rsplit(":", 1)
        script = ('set -e; set -- -sS --fail-with-body -X POST -H "Content-Type: application/json" '
                  '-H "Idempotency-Key: $TOOL_IDEMPOTENCY_KEY" --data-binary @- '
                  f'--resolve {shlex.quote(target.host)}:{port[1] if len(port) == 2 else (443 if target.scheme == "https" else 80)}:{shlex.quote(target.ip)}; '
                  '[ -n "$TOOL_AUTH_BEARER" ] && set -- "$@" -H "Authorization: Bearer $TOOL_AUTH_BEARER"; '
                  '[ -n "$TOOL_AUTH_BASIC" ] && set -- "$@" -H "Authorization: Basic $TOOL_AUTH_BASIC"; '
                  '[ -n "$TOOL_AUTH_HEADER_NAME" ] && set -- "$@" -H "$TOOL_AUTH_HEADER_NAME: $TOOL_AUTH_HEADER_VALUE"; '
                  'exec curl "$@" "$TOOL_ENDPOINT"')
        argv = [cli, "run", "--rm", "-i", "--read-only", "--cap-drop=ALL", "--security-opt", "no-new-privileges",
                "--user", "65532:65532", "--memory", "128m", "--cpus", "0.50", "--pids-limit", "64"]
        for key in env:
            argv += ["-e", key]
        argv += ["--entrypoint", "/bin/sh", self.IMAGE, "-c", script]
        proc = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.PIPE, env={**os.environ, **env})
        try:
            out, err = await asyncio.wait_for(proc.communicate(tool_input.encode()), timeout + 30)
        except asyncio.TimeoutError:
            proc.kill()
            raise ToolError(f'tool "{name}" timed out in its container', code="timeout", retryable=True) from None
        if proc.returncode != 0:
            raise ToolError(redactor.text(f'tool "{name}" container call failed: {err.decode(errors="replace")[-300:]}'),
                            retryable=True)
        return redactor.text(parse_response(name, out.decode(errors="replace")[:MAX_OUTPUT], redactor=redactor))

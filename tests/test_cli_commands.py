"""Each `orloj` command against the real control plane (Ray Serve on the shared cluster), as a
user runs it: a subprocess with the server in ORLOJ_SERVER. Every upstream `orlojctl` command
of the reference (tests/conformance/reference/orlojctl-cli.md) has an equivalent here."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import shutil
import stat
import subprocess
import sys
import textwrap
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parent.parent
PIPELINE = REPO / "examples" / "blueprints" / "pipeline"
CLI_REFERENCE = REPO / "tests" / "conformance" / "reference" / "orlojctl-cli.md"
pytestmark = pytest.mark.slow


def orloj(env: dict, *args: str, input: str | None = None, timeout: float = 120, cwd: Path = REPO):
    return subprocess.run([sys.executable, "-m", "orloj_ray.cli.main", *args], capture_output=True, text=True,
                          env=env, cwd=cwd, input=input, timeout=timeout)


def ok(res: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert res.returncode == 0, f"exit {res.returncode}\nstdout:\n{res.stdout[-3000:]}\nstderr:\n{res.stderr[-3000:]}"
    return res


@pytest.fixture(scope="module")
def pipeline_run(orloj_api):
    """The pipeline blueprint run once in namespace cli-cmd (message-driven, on agent actors)."""
    env = {**os.environ, "ORLOJ_SERVER": orloj_api}
    ok(orloj(env, "apply", "-f", str(PIPELINE), "--run", "-n", "cli-cmd"))
    ok(orloj(env, "wait", "task/bp-pipeline-task", "-n", "cli-cmd", "--timeout", "120s"))
    return "cli-cmd"


# ---------------------------------------------------------------- the whole orlojctl surface


def _reference_commands() -> list[tuple[list[str], list[str]]]:
    """(command words, long flags) of each `### <command>` of the orlojctl reference."""
    text = CLI_REFERENCE.read_text()
    body = text.split("## 2. Commands", 1)[1].split("\n## 3.", 1)[0]
    out = []
    for section in body.split("\n### ")[1:]:
        title, _, rest = section.partition("\n")
        usage = " ".join(re.findall(r"`orlojctl ([^`]*)`", rest)) + " " + " ".join(re.findall(r"`config ([^`]*)`", rest))
        flags = sorted(set(re.findall(r"(--[a-z][a-z-]*)", usage)) - {"--server", "--api-token"})
        if title == "config":  # its flags are set-profile's
            out += [(["config"], []), (["config", "set-profile"], flags)]
            out += [(["config", sub], []) for sub in ("path", "get", "use")]
            continue
        for name in title.split(" / "):
            out.append((name.split(), flags))
    return out


def test_every_orlojctl_command_has_an_orloj_equivalent(cli_env):
    commands = _reference_commands()
    assert len(commands) >= 30 and ["admin", "reset-password"] in [words for words, _ in commands]
    env = {**cli_env, "COLUMNS": "200"}
    root = ok(orloj(env, "--help")).stdout
    assert "--server" in root and "--api-token" in root  # global, anywhere on the line
    for words, flags in commands:
        res = orloj(env, *words, "--help")
        assert res.returncode == 0, (words, res.stderr[-2000:])
        for flag in flags:
            assert flag in res.stdout, f"orloj {' '.join(words)} has no {flag} (orlojctl has)"
    assert "orloj-ray" in ok(orloj(env, "--version")).stdout and ok(orloj(env, "help", "get")).stdout


# ---------------------------------------------------------------- edit


EDIT_SCRIPT = """\
import sys, pathlib
path = pathlib.Path(sys.argv[-1])
{before}
path.write_text(path.read_text().replace({old!r}, {new!r}))
"""


def _editor(tmp_path: Path, old: str, new: str, before: str = "") -> str:
    """$EDITOR: a program that replaces ``old`` with ``new`` in the file (after running ``before``)."""
    script = tmp_path / f"editor-{abs(hash(old + new + before))}.py"
    script.write_text(EDIT_SCRIPT.format(old=old, new=new, before=before))
    return f"{sys.executable} {script}"


def test_edit_writes_back_with_if_match_and_never_over_a_newer_version(cli_env, orloj_api, tmp_path):
    ns = "cli-edit"
    ok(orloj(cli_env, "apply", "-f", str(PIPELINE / "agents"), "-n", ns))
    agent = "bp-pipeline-planner-agent"
    res = ok(orloj({**cli_env, "EDITOR": _editor(tmp_path, "You are the planning stage.", "You plan, carefully.")}, "edit", "agent", agent, "-n", ns))
    assert res.stdout.strip() == f"edited agent/{agent}"
    live = httpx.get(f"{orloj_api}/v1/agents/{agent}", params={"namespace": ns}, timeout=10).json()
    assert live["spec"]["prompt"].startswith("You plan, carefully.")

    res = ok(orloj({**cli_env, "EDITOR": "true"}, "edit", "agent", agent, "-n", ns))  # saved nothing
    assert res.stdout.strip() == "no changes detected"

    # someone else writes while the editor is open: the edit is refused, their change stays
    racer = (f"import httpx; u = '{orloj_api}/v1/agents/{agent}?namespace={ns}'; d = httpx.get(u).json(); "
             f"d['spec']['prompt'] = 'changed meanwhile'; httpx.post('{orloj_api}/v1/agents?namespace={ns}', json=d)")
    res = orloj({**cli_env, "VISUAL": _editor(tmp_path, "You plan, carefully.", "mine", before=racer)}, "edit", "agent", agent, "-n", ns)
    assert res.returncode == 1 and "changed on the server while you edited it" in res.stderr, res.stderr
    kept = Path(re.search(r"kept in (\S+):", res.stderr).group(1))
    assert kept.exists() and "mine" in kept.read_text() and stat.S_IMODE(kept.stat().st_mode) == 0o600
    live = httpx.get(f"{orloj_api}/v1/agents/{agent}", params={"namespace": ns}, timeout=10).json()
    assert live["spec"]["prompt"] == "changed meanwhile"

    bad = tmp_path / "bad.py"
    bad.write_text("import sys, pathlib\np = pathlib.Path(sys.argv[-1])\n"
                   "p.write_text(p.read_text().replace('max_steps: 4', 'max_steps: lots'))\n")
    res = orloj({**cli_env, "EDITOR": f"{sys.executable} {bad}"}, "edit", "agent", agent, "-n", ns)
    assert res.returncode == 1 and "max_steps" in res.stderr and "nothing was changed" in res.stderr, res.stderr
    assert httpx.get(f"{orloj_api}/v1/agents/{agent}", params={"namespace": ns}, timeout=10).json()["spec"][
        "prompt"] == "changed meanwhile"
    res = orloj({**cli_env, "EDITOR": "true"}, "edit", "secret", "any", "-n", ns)  # read back as ***: not editable
    assert res.returncode == 2 and "orloj create secret any --from-literal" in res.stderr


# ---------------------------------------------------------------- diff


def test_diff_shows_what_apply_would_change(cli_env, tmp_path):
    ns = "cli-diff"
    ok(orloj(cli_env, "apply", "-f", str(PIPELINE), "-n", ns))
    res = orloj(cli_env, "diff", "-f", str(PIPELINE), "-n", ns)
    assert res.returncode == 0 and res.stdout == "", res.stdout + res.stderr
    assert "diff: 0 to create, 0 to update, 5 unchanged" in res.stderr
    work = tmp_path / "pipeline"
    shutil.copytree(PIPELINE, work)
    planner = work / "agents" / "planner_agent.yaml"
    planner.write_text(planner.read_text().replace("You are the planning stage.", "You plan."))
    (work / "extra.yaml").write_text("apiVersion: orloj.dev/v1\nkind: Secret\nmetadata: {name: diff-secret}\n"
                                     "spec: {stringData: {value: sk-do-not-print}}\n")
    res = orloj(cli_env, "diff", "-f", str(work), "-n", ns)
    assert res.returncode == 1, res.stderr
    out = res.stdout
    assert "--- live/Agent/bp-pipeline-planner-agent\n+++ desired/Agent/bp-pipeline-planner-agent\n" in out
    assert "-    You are the planning stage.\n" in out and "+    You plan.\n" in out
    assert "--- /dev/null\n+++ desired/Secret/diff-secret\n" in out and "sk-do-not-print" not in out
    assert "diff: 1 to create, 1 to update, 4 unchanged" in res.stderr


# ---------------------------------------------------------------- top, graph, logs, trace


def test_top_counts_tasks_and_agents_and_refreshes(cli_env, pipeline_run):
    ns = pipeline_run
    res = ok(orloj(cli_env, "top", "-n", ns))
    head, est = res.stdout.splitlines()[0].rsplit(" ", 1)
    assert head == "tasks=1 pending=0 running=0 waiting_approval=0 succeeded=1 failed=0 deadletter=0"
    assert est.startswith("est_tokens_total=") and int(est.split("=")[1]) > 3 * 120  # the task's upstream estimate
    assert "agents=3 ready=3 error=0" in res.stdout and "bp-pipeline-task" in res.stdout
    row = next(line for line in res.stdout.splitlines() if line.startswith("bp-pipeline-planner-agent"))
    assert row.split()[1:3] == ["Ready", "idle"] or row.split()[1] == "Ready", row
    view = json.loads(ok(orloj(cli_env, "top", "agents", "-n", ns, "-o", "json")).stdout)
    turns = {a["name"]: a["turns"] for a in view["agents"]["agents"]}
    assert turns == {"bp-pipeline-planner-agent": 1, "bp-pipeline-research-agent": 1, "bp-pipeline-writer-agent": 1}
    res = ok(orloj(cli_env, "top", "tasks", "-n", ns, "--count", "3", "--interval", "0.2"))
    assert res.stdout.count("tasks=1 ") == 3  # one snapshot per refresh
    assert re.match(r"workers=\d+ ready=\d+ current_tasks=\d+", ok(orloj(cli_env, "top", "workers")).stdout)


def _pty(env: dict, *args: str, columns: int = 80, timeout: float = 60) -> tuple[int, str]:
    """Run the CLI at a terminal of ``columns`` columns; (exit code, what it drew)."""
    import fcntl
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    env = {k: v for k, v in env.items() if k not in ("COLUMNS", "LINES")}
    proc = subprocess.Popen([sys.executable, "-m", "orloj_ray.cli.main", *args], stdin=slave, stdout=slave,
                            stderr=slave, env={**env, "TERM": "xterm"}, cwd=REPO, close_fds=True)
    os.close(slave)
    out, deadline = b"", time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
        elif proc.poll() is not None:
            break
    os.close(master)
    return proc.wait(timeout=10), out.decode(errors="replace")


def _visible_lines(text: str) -> list[str]:
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)
    return [line for chunk in text.split("\n") for line in chunk.split("\r")]


def test_tables_fit_the_terminal(cli_env, pipeline_run):
    ns = pipeline_run
    res = ok(orloj({**cli_env, "COLUMNS": "80"}, "trace", "task", "bp-pipeline-task", "-n", ns))
    tables = res.stdout.split("\nOutput:\n")[0]  # the output itself is the agents' text, as written
    assert max(len(line) for line in tables.splitlines()) <= 80, tables
    assert "bp-pipeline-writer-agent" in tables and "elapsed=" in tables.replace("\n", "").replace(" ", "")
    code, drawn = _pty(cli_env, "get", "tasks", "-n", ns, columns=72)
    assert code == 0, drawn
    lines = _visible_lines(drawn)
    assert any("bp-pipeline-task" in line or "bp-pipeline-ta" in line for line in lines), drawn
    assert max(len(line) for line in lines) <= 72, drawn
    code, drawn = _pty(cli_env, "top", "-n", ns, "--count", "2", "--interval", "0.2", columns=90)
    assert code == 0 and "tasks=1" in drawn, drawn
    assert max(len(line) for line in _visible_lines(drawn)) <= 90, drawn


def test_graph_of_a_system_and_of_a_task(cli_env, pipeline_run):
    ns = pipeline_run
    res = ok(orloj(cli_env, "graph", "system", "bp-pipeline-system", "-n", ns))
    assert res.stdout.splitlines() == [
        "system: bp-pipeline-system",
        "entrypoints: bp-pipeline-planner-agent",
        "bp-pipeline-planner-agent  -> bp-pipeline-research-agent",
        "bp-pipeline-research-agent -> bp-pipeline-writer-agent",
        "bp-pipeline-writer-agent   -> (end)",
    ]
    res = ok(orloj(cli_env, "graph", "task/bp-pipeline-task", "-n", ns))
    assert res.stdout.splitlines()[0] == "task: bp-pipeline-task (system bp-pipeline-system, phase Succeeded)"
    assert res.stdout.count("[done]") == 3 and "execution order: bp-pipeline-planner-agent ->" in res.stdout
    view = json.loads(ok(orloj(cli_env, "graph", "task", "bp-pipeline-task", "-n", ns, "-o", "json")).stdout)
    assert set(view["states"].values()) == {"done"} and view["entrypoints"] == ["bp-pipeline-planner-agent"]
    res = orloj(cli_env, "graph", "system", "no-such-system", "-n", ns)
    assert res.returncode == 1 and "no-such-system" in res.stderr


def test_logs_of_an_agent_are_its_turns(cli_env, pipeline_run):
    ns = pipeline_run
    res = ok(orloj(cli_env, "logs", "agent", "bp-pipeline-research-agent", "-n", ns))
    lines = res.stdout.splitlines()
    assert any("phase=Ready" in line for line in lines), lines
    call = next(line for line in lines if " model_call " in line)
    assert "task=bp-pipeline-task step=1 model_call model=gpt-4o tokens=" in call and "latency=" in call
    end = next(line for line in lines if " agent_end " in line)
    assert "elapsed=" in end and "steps=1 tool_calls=0" in end
    body = json.loads(ok(orloj(cli_env, "logs", "bp-pipeline-research-agent", "-n", ns, "-o", "json")).stdout)
    assert {r["type"] for r in body["turns"]} >= {"agent_start", "model_call", "agent_end"}
    assert all(r["agent"] == "bp-pipeline-research-agent" and r["task"] == "bp-pipeline-task" for r in body["turns"])
    task_lines = ok(orloj(cli_env, "logs", "task/bp-pipeline-task", "-n", ns)).stdout
    assert "succeeded" in task_lines


def test_trace_latency_is_measured(cli_env, orloj_api):
    """The model call's own time: 300 ms when the (mock) model takes 300 ms; a sub-millisecond
    call shows as <1ms, not 0ms; each agent_end carries the time since its message was sent."""
    ns = "cli-latency"
    manifest = textwrap.dedent("""\
        apiVersion: orloj.dev/v1
        kind: ModelEndpoint
        metadata: {name: slow}
        spec: {provider: mock, default_model: m, options: {latency_ms: "300"}}
        ---
        apiVersion: orloj.dev/v1
        kind: ModelEndpoint
        metadata: {name: quick}
        spec: {provider: mock, default_model: m}
        ---
        apiVersion: orloj.dev/v1
        kind: Agent
        metadata: {name: slow-agent}
        spec: {model_ref: slow, prompt: You are slow.}
        ---
        apiVersion: orloj.dev/v1
        kind: Agent
        metadata: {name: quick-agent}
        spec: {model_ref: quick, prompt: You are quick.}
        ---
        apiVersion: orloj.dev/v1
        kind: AgentSystem
        metadata: {name: lat}
        spec: {agents: [slow-agent, quick-agent], graph: {slow-agent: {next: quick-agent}}}
        """)
    ok(orloj(cli_env, "apply", "-f", "-", "-n", ns, input=manifest))
    ok(orloj(cli_env, "run", "--system", "lat", "-n", ns, "--name", "lat-1", "--timeout", "90s"))
    task = httpx.get(f"{orloj_api}/v1/tasks/lat-1", params={"namespace": ns}, timeout=10).json()
    calls = {r["agent"]: r for r in task["status"]["trace"] if r["type"] == "model_call"}
    ends = {r["agent"]: r for r in task["status"]["trace"] if r["type"] == "agent_end"}
    assert 300 <= calls["slow-agent"]["latency_ms"] < 5000 and calls["quick-agent"]["latency_ms"] < 100
    assert all(ends[a]["elapsed_ms"] >= ends[a]["latency_ms"] >= calls[a]["latency_ms"] for a in ends), ends
    trace = ok(orloj({**cli_env, "COLUMNS": "200"}, "trace", "task", "lat-1", "-n", ns)).stdout
    slow_row = next(line for line in trace.splitlines() if "model_call" in line and "slow-agent" in line)
    quick_row = next(line for line in trace.splitlines() if "model_call" in line and "quick-agent" in line)
    assert f"{calls['slow-agent']['latency_ms']}ms" in slow_row
    assert (("<1ms" in quick_row) if calls["quick-agent"]["latency_ms"] == 0 else "ms" in quick_row) and " 0ms " not in quick_row
    assert "elapsed=" in next(line for line in trace.splitlines() if "agent_end" in line)


# ---------------------------------------------------------------- apply


def test_apply_warns_of_missing_references_and_does_not_rerun_a_finished_task(cli_env, orloj_api, tmp_path):
    ns = "cli-apply"
    agent = tmp_path / "agent.yaml"
    agent.write_text((REPO / "examples" / "governance" / "compliance-checker.yaml").read_text())
    res = ok(orloj(cli_env, "apply", "-f", str(agent), "-n", ns))
    assert "3 applied" in res.stdout
    assert (f"warning: agent/compliance-checker: missing in namespace {ns}: model endpoint default (spec.model "
            "'gpt-4' is served by the namespace's ModelEndpoint named \"default\"); tools scan-documents, "
            "flag-issues (its tasks fail until they exist)") in res.stderr, res.stderr

    ok(orloj(cli_env, "apply", "-f", str(PIPELINE), "--run", "-n", ns))
    ok(orloj(cli_env, "wait", "task/bp-pipeline-task", "-n", ns, "--timeout", "120s"))
    res = ok(orloj(cli_env, "apply", "-f", str(PIPELINE), "--run", "-n", ns))
    assert (f"task/bp-pipeline-task already finished (Succeeded); not run again. Run it again with: orloj apply "
            f"-f {PIPELINE} --run --rerun") in res.stdout
    assert "5 applied, 1 finished" in res.stdout
    tasks = httpx.get(f"{orloj_api}/v1/tasks", params={"namespace": ns}, timeout=10).json()["items"]
    assert [t["metadata"]["name"] for t in tasks] == ["bp-pipeline-task"]
    res = ok(orloj(cli_env, "apply", "-f", str(PIPELINE / "task.yaml"), "--rerun", "-n", ns))
    rerun = re.search(r"applied task/(bp-pipeline-task-\d+) \(a new run of task/bp-pipeline-task, which finished "
                      r"Succeeded\)", res.stdout)
    assert rerun, res.stdout
    ok(orloj(cli_env, "wait", f"task/{rerun.group(1)}", "-n", ns, "--timeout", "120s"))


# ---------------------------------------------------------------- status, env, health, describe: -o and -n


def test_read_commands_speak_json_and_yaml(cli_env, pipeline_run):
    ns = pipeline_run
    import yaml

    for args in (["describe", "agent", "bp-pipeline-planner-agent"], ["health"], ["status"],
                 ["trace", "task", "bp-pipeline-task"], ["logs", "task/bp-pipeline-task"], ["top"],
                 ["graph", "system", "bp-pipeline-system"], ["get", "tasks"], ["messages", "task/bp-pipeline-task"],
                 ["metrics", "task/bp-pipeline-task"], ["audit"], ["config", "get"]):
        for fmt, load in (("json", json.loads), ("yaml", yaml.safe_load)):
            extra = [] if args[0] in ("health", "config") else ["-n", ns]
            res = ok(orloj(cli_env, *args, "-o", fmt, *extra))
            assert load(res.stdout) is not None, (args, fmt, res.stdout[:500])
    status = json.loads(ok(orloj(cli_env, "status", "-o", "json", "-n", ns)).stdout)
    assert status["tasks"] == {"total": 1, "by_phase": {"Succeeded": 1}} and status["namespace"] == ns
    assert json.loads(ok(orloj(cli_env, "describe", "task", "bp-pipeline-task", "-n", ns, "-o", "json")).stdout)[
        "status"]["phase"] == "Succeeded"


def test_env_prints_the_exports_for_drivers(cli_env, orloj_api, ray_cluster):
    res = ok(orloj(cli_env, "env"))
    gcs = ray_cluster.address_info["gcs_address"]
    assert res.stdout.splitlines() == [f"export ORLOJ_SERVER={orloj_api}", f"export RAY_ADDRESS={gcs}",
                                       "export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0"]
    status = ok(orloj(cli_env, "status")).stdout
    assert f"drivers:    export RAY_ADDRESS={gcs} RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0" in status


def test_admin_reset_password_says_this_server_uses_tokens(cli_env):
    res = orloj(cli_env, "admin", "reset-password", "--new-password", "s3cret")
    assert res.returncode == 1 and "bearer tokens" in res.stderr and "s3cret" not in res.stderr + res.stdout


# ---------------------------------------------------------------- memory-entries


def test_memory_entries_shows_what_an_agent_wrote(cli_env, orloj_api):
    ns = "cli-memory"
    manifest = textwrap.dedent("""\
        apiVersion: orloj.dev/v1
        kind: ModelEndpoint
        metadata: {name: default}
        spec: {provider: mock, default_model: m}
        ---
        apiVersion: orloj.dev/v1
        kind: Memory
        metadata: {name: notes}
        spec: {type: kv, provider: in-memory}
        ---
        apiVersion: orloj.dev/v1
        kind: Agent
        metadata: {name: scribe}
        spec: {model: m, prompt: You write notes., memory: {ref: notes, allow: [write]}, limits: {max_steps: 3}}
        ---
        apiVersion: orloj.dev/v1
        kind: AgentSystem
        metadata: {name: scribe-system}
        spec: {agents: [scribe]}
        """)
    ok(orloj(cli_env, "apply", "-f", "-", "-n", ns, input=manifest))
    res = ok(orloj(cli_env, "memory-entries", "notes", "-n", ns))
    assert res.stdout.strip() == "count=0" and "holds no entries" in res.stderr
    ok(orloj(cli_env, "run", "--system", "scribe-system", "-n", ns, "--timeout", "90s",
             'topic={"key": "cli-note", "value": "written by scribe"}'))
    res = ok(orloj(cli_env, "memory-entries", "notes", "-n", ns, "--prefix", "cli-"))
    assert "INDEX" in res.stdout and "cli-note" in res.stdout and res.stdout.strip().endswith("count=1")
    body = json.loads(ok(orloj(cli_env, "get", "memory-entries", "notes", "-n", ns, "-o", "json")).stdout)
    assert body["count"] == 1 and "written by scribe" in json.dumps(body["entries"])
    assert orloj(cli_env, "memory-entries", "notes", "--limit", "0", "-n", ns).returncode == 2


# ---------------------------------------------------------------- completion


def test_completion_scripts_complete_commands_and_kinds(cli_env):
    env = {**cli_env, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{cli_env['PATH']}"}
    script = ok(orloj(env, "completion", "bash")).stdout
    assert "_ORLOJ_COMPLETE=complete_bash" in script
    probe = ('source /dev/stdin; COMP_WORDS=(orloj ge); COMP_CWORD=1; _orloj_completion orloj; echo "${COMPREPLY[*]}"; '
             'COMP_WORDS=(orloj get agent-s); COMP_CWORD=2; _orloj_completion orloj; echo "${COMPREPLY[*]}"')
    res = subprocess.run(["bash", "-c", probe], input=script, env=env, capture_output=True, text=True, timeout=60)
    assert res.stdout.splitlines() == ["get", "agent-systems"], res.stdout + res.stderr
    for shell, var in (("zsh", "complete_zsh"), ("fish", "complete_fish")):
        assert var in ok(orloj(env, "completion", shell)).stdout
    res = subprocess.run(["orloj"], env={**env, "_ORLOJ_COMPLETE": "complete_zsh", "_TYPER_COMPLETE_ARGS": "orloj to"},
                         capture_output=True, text=True, timeout=60)
    assert "top" in res.stdout
    assert orloj(env, "completion", "powershell").returncode == 2


# ---------------------------------------------------------------- config profiles


class _HeaderServer:
    """Answers /healthz and records each request's Authorization header (real HTTP on loopback)."""

    def __init__(self):
        self.auth: list[str] = []
        seen = self.auth

        class H(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                seen.append(self.headers.get("Authorization", ""))
                body = b'{"status": "ok"}'
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def test_config_profiles_with_upstreams_precedence(cli_env, orloj_api, tmp_path):
    env = {k: v for k, v in cli_env.items() if k not in ("ORLOJ_SERVER", "ORLOJCTL_SERVER", "ORLOJ_API_TOKEN",
                                                         "ORLOJCTL_API_TOKEN")}
    env["XDG_CONFIG_HOME"] = str(tmp_path / "cfg")
    path = tmp_path / "cfg" / "orlojctl" / "config.json"
    assert ok(orloj(env, "config", "path")).stdout.strip() == str(path)
    ok(orloj(env, "config", "set-profile", "real", "--server", orloj_api))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert ok(orloj(env, "health")).stdout.strip() == f"server={orloj_api} status=ok"  # the profile's server
    bogus = "http://127.0.0.1:9"
    assert orloj({**env, "ORLOJ_SERVER": bogus}, "health").returncode == 1  # env beats the profile
    assert ok(orloj({**env, "ORLOJ_SERVER": bogus}, "health", "--server", orloj_api)).returncode == 0  # the flag beats env

    hs = _HeaderServer()
    try:
        ok(orloj(env, "config", "set-profile", "tok", "--server", hs.url, "--token-env", "MY_ORLOJ_TOKEN"))
        ok(orloj({**env, "MY_ORLOJ_TOKEN": "from-token-env"}, "health"))
        ok(orloj(env, "config", "set-profile", "tok", "--token", "from-profile"))
        ok(orloj({**env, "MY_ORLOJ_TOKEN": "from-token-env"}, "health"))
        ok(orloj({**env, "ORLOJ_API_TOKEN": "from-env"}, "health"))
        ok(orloj({**env, "ORLOJ_API_TOKEN": "from-env"}, "health", "--api-token", "from-flag"))
        assert hs.auth == ["Bearer from-token-env", "Bearer from-profile", "Bearer from-env", "Bearer from-flag"]
    finally:
        hs.server.shutdown()
    got = json.loads(ok(orloj(env, "config", "get", "-o", "json")).stdout)
    assert got["current_profile"] == "tok" and got["token"] == "set" and got["profiles"] == ["real", "tok"]
    assert "from-profile" not in ok(orloj(env, "config", "get")).stdout
    assert ok(orloj(env, "config", "use", "real")).stdout.strip() == "current profile: real"
    res = orloj(env, "config", "use", "nope")
    assert res.returncode == 1 and "no profile 'nope'" in res.stderr and "set-profile nope" in res.stderr


# ---------------------------------------------------------------- SDK


def test_sdk_run_task_checks_the_system_and_raises_for_a_failed_task(orloj_api):
    from orloj_ray.client import Client, TaskFailed
    from orloj_ray.errors import NotFound

    ns = "cli-sdk"
    with Client(orloj_api) as client:
        with pytest.raises(NotFound, match="agent system 'missing-system' not found in namespace 'cli-sdk'"):
            client.run_task("missing-system", {"topic": "x"}, namespace=ns, timeout=60)
        assert client.list("task", ns) == []  # nothing was created
        client.apply([{"apiVersion": "orloj.dev/v1", "kind": "Agent", "metadata": {"name": "lost"},
                       "spec": {"model_ref": "no-endpoint", "prompt": "hi"}},
                      {"apiVersion": "orloj.dev/v1", "kind": "AgentSystem", "metadata": {"name": "broken"},
                       "spec": {"agents": ["lost"]}}], namespace=ns)
        with pytest.raises(TaskFailed) as info:
            client.run_task("broken", {"topic": "x"}, namespace=ns, timeout=60)
        assert info.value.phase == "Failed" and info.value.task["status"]["phase"] == "Failed"
        assert "no-endpoint" in info.value.message and info.value.task["metadata"]["namespace"] == ns
    import orloj_ray

    assert (Path(orloj_ray.__file__).parent / "py.typed").exists()

"""run, wait, logs, trace, events: following tasks as they execute."""

from __future__ import annotations

import textwrap
from typing import Annotated, Optional

import typer
from rich.markup import escape

from orloj_ray.cli import render
from orloj_ray.cli.common import (
    NamespaceOpt, OutputOpt, console, echo, err_console, fail, key_values, make_client, namespace_or, note,
    output_format, print_doc, resolve_kind, seconds, split_ref, waiting,
)
FAILED_PHASES = ("Failed", "DeadLetter", "Error")


class Progress:
    """The live line for ``run``: a rich spinner on a terminal, plain lines otherwise (stderr)."""

    def __init__(self, name: str, total_agents: int | None):
        """``name``: a task name (``run``) or ``<kind>/<name>`` (``wait``)."""
        self.name, self.total = name, total_agents
        self.label = name if "/" in name else f"task {name}"
        self.err = err_console()
        self.live = self.err.is_terminal
        self._status = None
        self._phase, self._done = None, []

    def __enter__(self) -> Progress:
        if self.live:
            self._status = self.err.status(f"{escape(self.label)}: starting")
            self._status.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self._status is not None:
            self._status.__exit__(*exc)

    def update(self, task: dict) -> None:
        phase = (task.get("status") or {}).get("phase") or "Pending"
        done = render.agents_done(task)
        if self.live:
            total = f"/{self.total}" if self.total else ""
            agents = f" · agents done {len(done)}{total}" + (f": {', '.join(done)}" if done else "")
            self._status.update(f"{escape(self.label)}: [bold]{escape(phase)}[/bold]{escape(agents)}")
            for agent in done[len(self._done):]:
                self.err.print(f"  [green]✓[/green] {escape(agent)}", highlight=False)
        else:
            for agent in done[len(self._done):]:
                note(f"  agent done: {agent}")
            if phase != self._phase:
                note(f"{self.label}: {phase}")
        self._phase, self._done = phase, done


def run(
    ctx: typer.Context,
    system: Annotated[str, typer.Option("--system", "-s", help="AgentSystem to run.")],
    inputs: Annotated[Optional[list[str]], typer.Argument(help="Task input as key=value (e.g. topic='AI chips').")] = None,
    namespace: NamespaceOpt = None,
    timeout: Annotated[str, typer.Option("--timeout", help="Give up after this long (5m, 90s).")] = "5m",
    name: Annotated[Optional[str], typer.Option("--name", help="Task name (default run-<system>-<ms>).")] = None,
    poll: Annotated[str, typer.Option("--poll", help="Polling interval when the server has no watch stream.")] = "1s",
    output: Annotated[str, typer.Option("--output", "-o", help="text (the result) or json (all of status.output).")] = "text",
    follow: Annotated[bool, typer.Option("--follow", help="Print the agents' model output live (stderr).")] = False,
) -> None:
    """Create a task for a system, follow it live and print its result.

    Exit 0 when it succeeds, 1 when it fails, dead-letters or times out.
    """
    from orloj_ray.client import WaitTimeout
    from orloj_ray.errors import OrlojError

    if output not in ("text", "json"):
        fail(f"unsupported output {output!r}: expected text or json", 2)
    data = key_values(inputs or [], "input")
    ns = namespace_or(ctx, namespace)
    limit, interval = seconds(timeout, "--timeout"), seconds(poll, "--poll")
    client = make_client(ctx)
    total = None
    try:
        total = len((client.get("agent-system", system, ns).get("spec") or {}).get("agents") or []) or None
    except OrlojError as exc:
        if exc.code in ("not_found",) or getattr(exc, "status", None) == 404:
            fail(f"agent system {system!r} not found in namespace {ns!r}; apply it first "
                 f"(orloj apply -f <dir>) or list systems with `orloj get agent-systems`")
        if exc.code == "unavailable":
            raise
    task = client.create_task(system, data, name=name, namespace=ns)
    tname = task["metadata"]["name"]
    try:
        if follow:
            from orloj_ray.cli.follow import follow_task

            final = follow_task(client, tname, ns, limit)
        else:
            with Progress(tname, total) as progress:
                progress.update(task)
                final = client.wait("task", tname, namespace=ns, timeout=limit, on_update=progress.update,
                                    poll_interval=interval)
    except WaitTimeout as exc:
        fail(f"{exc.message}; follow it with `orloj wait task/{tname}` or inspect `orloj trace task {tname}`")
    st = final.get("status") or {}
    if st.get("phase") == "Succeeded":
        if output == "json":
            echo(render.to_json(st.get("output") or {}))
        else:
            summary = render.task_summary(final)
            note(f"task {tname} succeeded" + (f" ({summary})" if summary else "") +
                 f"; details: orloj trace task {tname}" + (f" -n {ns}" if ns != "default" else ""))
            echo(render.task_output_text(final))
        return
    fail(f"task/{tname} {st.get('phase')}: {st.get('lastError') or 'no error recorded'} "
         f"(details: orloj trace task {tname})")


def _condition_phases(cond: str) -> tuple[str, set[str]]:
    label = cond.split("=", 1)[1] if "=" in cond else cond
    key = label.strip().lower()
    if key in ("complete", "completed", "succeeded"):
        return label, {"succeeded", "ready"}
    if key in ("failed", "deadletter", "error"):
        return label, {"failed", "deadletter", "error"}
    return label, {key}


def wait(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="<resource>/<name>, e.g. task/weekly-report.")],
    name: Annotated[Optional[str], typer.Argument(hidden=True)] = None,
    for_: Annotated[str, typer.Option("--for", help="condition=Complete|Failed|<Phase>.")] = "condition=Complete",
    timeout: Annotated[str, typer.Option("--timeout", help="How long to wait (5m, 90s).")] = "5m",
    interval: Annotated[str, typer.Option("--interval", help="Polling interval without a watch stream.")] = "2s",
    namespace: NamespaceOpt = None,
) -> None:
    """Wait for a condition. Exit 0 when met, 1 on timeout (or a task that ended otherwise), 2 on errors."""
    from orloj_ray.client import TERMINAL_TASK_PHASES, WaitTimeout
    from orloj_ray.errors import OrlojError

    kind, nm = split_ref(ref, name, "orloj wait task/NAME --for condition=Complete")
    info = resolve_kind(kind, 2)
    if not for_.lower().startswith("condition=") and "=" in for_:
        fail(f"--for {for_!r}: expected condition=<Complete|Failed|Phase>", 2)
    label, phases = _condition_phases(for_)
    limit, every = seconds(timeout, "--timeout"), seconds(interval, "--interval")
    terminal = {p.lower() for p in TERMINAL_TASK_PHASES} if info.kind == "Task" else set()

    def stop(obj: dict) -> bool:
        phase = str((obj.get("status") or {}).get("phase") or "").lower()
        return phase in phases or phase in terminal

    try:
        with Progress(f"{info.lower}/{nm}", None) as progress:
            obj = make_client(ctx).wait(info.kind, nm, namespace=namespace_or(ctx, namespace), for_phases=stop,
                                        timeout=limit, poll_interval=every, on_update=progress.update)
    except WaitTimeout as exc:
        fail(f"{exc.message} for condition {label}", 1)
    except OrlojError as exc:
        fail(exc.message, 2)
    phase = (obj.get("status") or {}).get("phase") or ""
    if phase.lower() in phases:
        echo(f"{info.lower}/{nm} condition met: {label} (phase={phase})")
        return
    err = (obj.get("status") or {}).get("lastError")
    fail(f"{info.lower}/{nm} ended {phase}" + (f": {err}" if err else "") + f"; condition {label} cannot be met", 1)


def logs(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="task/<name>, agent/<name>, or an agent name (also: task NAME, agent NAME).")],
    name: Annotated[Optional[str], typer.Argument(help="The name, after task or agent.")] = None,
    task: Annotated[Optional[str], typer.Option("--task", help="An agent's turns in this task only.")] = None,
    limit: Annotated[int, typer.Option("--limit", help="The newest N lines of an agent's turns (0: all).")] = 500,
    output: OutputOpt = "table",
    namespace: NamespaceOpt = None,
) -> None:
    """Print a task's log lines, or an agent's: its phase and every turn it ran.

    An agent's turns come from the traces of the namespace's tasks: model and tool calls,
    denials and errors, and each turn's end (tokens, latency, elapsed since it was sent).
    """
    if name is not None:
        kind, nm = ref, name
    else:
        kind, _, nm = ref.partition("/") if "/" in ref else ("agent", "", ref)
    info = resolve_kind(kind)
    fmt = output_format(output)
    ns = namespace_or(ctx, namespace)
    client = make_client(ctx)
    if info.kind != "Agent":
        lines = client.logs(info.kind, nm, ns)
        if fmt != "table":
            print_doc({"name": nm, "logs": lines}, fmt)
            return
        for line in lines:
            echo(line)
        return
    with waiting(f"reading agent/{nm}'s turns"):
        header = client.logs("agent", nm, ns)
        rows = client.agent_turns(nm, ns, task=task, limit=max(limit, 0))
    if fmt != "table":
        print_doc({"name": nm, "namespace": ns, "logs": header, "turns": rows}, fmt)
        return
    for line in header:
        echo(line)
    for row in rows:
        echo(turn_line(row))
    if not rows:
        note(f"agent/{nm} has run no turns in namespace {ns}" + (f" (task {task})" if task else "")
             + " that a task still records")


def turn_line(row: dict) -> str:
    """``<time> task=<t> step=<n> <type> model=... tokens=... latency=...: <message>``."""
    parts = [str(row.get("timestamp") or ""), f"task={row.get('task', '')}"]
    if row.get("step") not in (None, ""):
        parts.append(f"step={row['step']}")
    parts.append(str(row.get("type") or ""))
    for key in ("model", "tool", "tokens", "error_code"):
        if row.get(key) not in (None, ""):
            parts.append(f"{key}={row[key]}")
    if row.get("latency_ms") not in (None, ""):
        parts.append(f"latency={render.ms(row['latency_ms'])}")
    if row.get("elapsed_ms") not in (None, ""):
        parts.append(f"elapsed={render.ms(row['elapsed_ms'])}")
    message = str(row.get("message") or "")
    return " ".join(p for p in parts if p) + (f": {message}" if message else "")


def trace(
    ctx: typer.Context,
    resource: Annotated[str, typer.Argument(help="task")],
    name: Annotated[Optional[str], typer.Argument(help="Task name.")] = None,
    namespace: NamespaceOpt = None,
    output: Annotated[str, typer.Option("--output", "-o", help="table, json or yaml (the raw trace).")] = "table",
) -> None:
    """Show how a task ran: summary, history, per-step trace and output."""
    kind, nm = split_ref(resource, name, "orloj trace task NAME")
    if resolve_kind(kind).kind != "Task":
        fail("trace works on tasks: orloj trace task NAME", 2)
    fmt = output_format(output)
    task = make_client(ctx).get("task", nm, namespace_or(ctx, namespace))
    st, spec = task.get("status") or {}, task.get("spec") or {}
    if fmt != "table":
        print_doc(st.get("trace") or [], fmt)
        return
    out = st.get("output") or {}
    header = [("Task", nm), ("System", spec.get("system")), ("Phase", st.get("phase")),
              ("Attempts", st.get("attempts")), ("ClaimedBy", st.get("claimedBy")),
              ("Started", st.get("startedAt")), ("Completed", st.get("completedAt")),
              ("LastError", st.get("lastError")), ("ExecutionOrder", out.get("execution_order")),
              ("TokensUsed", out.get("tokens_used_total")), ("EstimatedTokens", out.get("tokens_estimated_total"))]
    con = console()
    for key, value in header:
        if value not in (None, ""):
            echo(textwrap.fill(f"{key + ':':<17}{value}", max(con.width, 40), subsequent_indent=" " * 17,
                               break_on_hyphens=False))
    history = st.get("history") or []
    if history:
        rows = [[render.cell(render._short_time(h.get("timestamp"))), render.cell(h.get("type")),
                 render.cell(h.get("worker")), render.cell(h.get("message"), 200)] for h in history]
        con.print(render.table(["TIME", "TYPE", "WORKER", "MESSAGE"], rows, title="History"))
    headers, rows = render.trace_rows(task)
    if rows:
        con.print(render.table(headers, rows, title="Trace"))
    else:
        echo("Trace: (empty)")
    if out:
        echo("Output:")
        echo(render.task_output_text(task))
        if render.final_output(task):
            echo(f"(all output keys: orloj get task {nm} -o json)")


def events(
    ctx: typer.Context,
    since: Annotated[Optional[int], typer.Option("--since", help="Replay events after this id.")] = None,
    source: Annotated[Optional[str], typer.Option("--source")] = None,
    type_: Annotated[Optional[str], typer.Option("--type", help="e.g. task.succeeded")] = None,
    kind: Annotated[Optional[str], typer.Option("--kind", help="e.g. Task")] = None,
    name: Annotated[Optional[str], typer.Option("--name")] = None,
    namespace: NamespaceOpt = None,
    once: Annotated[bool, typer.Option("--once", help="Exit after the first event.")] = False,
    timeout: Annotated[Optional[str], typer.Option("--timeout", help="Stop after this long (error if nothing arrived).")] = None,
    raw: Annotated[bool, typer.Option("--raw", help="Print each event as JSON.")] = False,
) -> None:
    """Stream control-plane events (Ctrl-C to stop)."""
    import json

    if kind:
        kind = resolve_kind(kind, 2).kind
    limit = seconds(timeout, "--timeout") if timeout else None
    got = 0
    try:
        for ev in make_client(ctx).events(since, timeout=limit, source=source, type=type_, kind=kind,
                                          name=name, namespace=namespace_or(ctx, namespace, None)):
            got += 1
            echo(json.dumps(ev, separators=(",", ":")) if raw else render.event_line(ev))
            if once:
                return
    except KeyboardInterrupt:
        return
    if got == 0:
        fail("no matching event arrived" + (f" within {timeout}" if timeout else " before the stream closed"))


def register(app: typer.Typer) -> None:
    for fn in (run, wait, logs, trace, events):
        app.command()(fn)

"""messages, metrics, cancel, retry: inspecting and steering one task (as orlojctl does)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from orloj_ray.cli import render
from orloj_ray.cli.common import console, echo, fail, key_values, make_client, namespace_or, note

NamespaceOpt = Annotated[Optional[str], typer.Option("--namespace", "-n", help="Namespace.")]
OutputOpt = Annotated[str, typer.Option("--output", "-o", help="table, json or yaml.")]
PhaseOpt = Annotated[Optional[str], typer.Option(
    "--phase", help="Message phase(s), comma separated: queued,running,retrypending,succeeded,deadletter.")]
TaskTarget = Annotated[list[str], typer.Argument(help="task/<name> or: task <name>.", metavar="task/NAME",
                                                 show_default=False)]
TARGET_USAGE = "target must be task/<task-name> or task <task-name>"


def task_target(args: list[str], usage: str = TARGET_USAGE) -> tuple[str, list[str]]:
    """``task/NAME`` or ``task NAME`` at the front of ``args`` → (name, the remaining args); exit 2 otherwise."""
    if args and args[0].lower().startswith("task/"):
        name, rest = args[0][len("task/"):].strip(), args[1:]
    elif len(args) >= 2 and args[0].strip().lower() in ("task", "tasks"):
        name, rest = args[1].strip(), args[2:]
    else:
        fail(f"usage: {usage}", 2)
    if not name:
        fail("task name is required", 2)
    return name, rest


def _output_format(output: str) -> str:
    fmt = (output or "table").strip().lower()
    fmt = "yaml" if fmt == "yml" else fmt
    if fmt not in ("table", "json", "yaml"):
        fail(f"unsupported output {output!r}: expected table, json or yaml", 2)
    return fmt


def _print_structured(body: dict, fmt: str) -> None:
    echo(render.to_json(body) if fmt == "json" else render.to_yaml(body).rstrip())


def _single_task(target) -> str:
    """The task name of ``task/NAME`` or ``task NAME``; exit 2 on anything more."""
    name, extra = task_target(target)
    if extra:
        fail(f"usage: {TARGET_USAGE} (unexpected {' '.join(extra)!r})", 2)
    return name


def _limit(limit: int) -> int | None:
    if limit < 0:
        fail("--limit must be >= 0 (0 means no limit)", 2)
    return limit or None


def messages(
    ctx: typer.Context,
    target: TaskTarget,
    agent: Annotated[Optional[str], typer.Option("--agent", help="Only messages from or to this agent.")] = None,
    phase: PhaseOpt = None,
    limit: Annotated[int, typer.Option("--limit", help="Keep the last N messages (0: all).")] = 0,
    output: OutputOpt = "table",
    namespace: NamespaceOpt = None,
) -> None:
    """List the agent-to-agent messages of a task with their lifecycle phase."""
    name = _single_task(target)
    fmt = _output_format(output)
    body = make_client(ctx).messages(name, namespace_or(ctx, namespace), phase=(phase or "").strip() or None,
                                     limit=_limit(limit))
    items = list(body.get("messages") or [])
    if agent and agent.strip():
        wanted = agent.strip().lower()
        items = [m for m in items if str(m.get("from_agent") or "").strip().lower() == wanted
                 or str(m.get("to_agent") or "").strip().lower() == wanted]
        body = {**body, "messages": items, "total": len(items), "filtered_from": len(items)}
    if fmt != "table":
        _print_structured(body, fmt)
        return
    if not items:
        note(f"no messages for task/{name}" + (" matching the filters" if (agent or phase) else ""))
        return
    rows = [[render.cell(m.get("timestamp")), render.cell(m.get("from_agent")), render.cell(m.get("to_agent")),
             render.cell(m.get("type")), render.cell(m.get("phase")), str(_int(m.get("attempts"))),
             render.cell(m.get("content"), 80)] for m in items]
    console().print(render.table(["TIME", "FROM", "TO", "TYPE", "PHASE", "ATTEMPTS", "CONTENT"], rows))
    counts = body.get("lifecycle_counts") or {}
    if counts and not agent:
        echo(f"total={body.get('total', len(items))} filtered_from={body.get('filtered_from', len(items))} "
             + " ".join(f"{k}={v}" for k, v in counts.items()))


def metrics(
    ctx: typer.Context,
    target: TaskTarget,
    phase: PhaseOpt = None,
    limit: Annotated[int, typer.Option("--limit", help="Use only the last N messages (0: all).")] = 0,
    output: OutputOpt = "table",
    namespace: NamespaceOpt = None,
) -> None:
    """Message counts, retries and latency of a task, in total, per agent and per edge."""
    name = _single_task(target)
    fmt = _output_format(output)
    body = make_client(ctx).metrics(name, namespace_or(ctx, namespace), phase=(phase or "").strip() or None,
                                    limit=_limit(limit))
    if fmt != "table":
        _print_structured(body, fmt)
        return
    echo(f"task={body.get('name', name)} namespace={body.get('namespace', '')}")
    t = body.get("totals") or {}
    echo(" ".join(f"{k}={t.get(k, 0)}" for k in
                  ("messages", "in_flight", "retry_count", "deadletters", "latency_ms_avg", "latency_ms_p95")))
    con = console()
    per_agent = body.get("per_agent") or []
    if per_agent:
        echo("per-agent:")
        rows = [[render.cell(a.get("agent")), *(str(a.get(k, 0)) for k in (
            "inbound", "outbound", "in_flight", "succeeded", "deadletter", "latency_ms_avg", "latency_ms_p95"))]
            for a in per_agent]
        con.print(render.table(["AGENT", "INBOUND", "OUTBOUND", "IN_FLIGHT", "SUCCEEDED", "DEADLETTER",
                                "LAT_MS_AVG", "LAT_MS_P95"], rows))
    per_edge = body.get("per_edge") or []
    if per_edge:
        echo("per-edge:")
        rows = [[render.cell(e.get("from_agent")), render.cell(e.get("to_agent")), *(str(e.get(k, 0)) for k in (
            "messages", "in_flight", "succeeded", "deadletter", "retry_count", "latency_ms_avg", "latency_ms_p95"))]
            for e in per_edge]
        con.print(render.table(["FROM", "TO", "MESSAGES", "IN_FLIGHT", "SUCCEEDED", "DEADLETTER", "RETRIES",
                                "LAT_MS_AVG", "LAT_MS_P95"], rows))


def cancel(
    ctx: typer.Context,
    target: Annotated[list[str], typer.Argument(help="task <name> (or task/<name>).", metavar="task NAME",
                                                show_default=False)],
    reason: Annotated[Optional[str], typer.Option("--reason", help="Recorded as status.lastError.")] = None,
    namespace: NamespaceOpt = None,
) -> None:
    """Cancel a task: mark it Failed (running agents stop at their next step)."""
    from orloj_ray.errors import Conflict

    name, extra = task_target(target, "orloj cancel task <name> [--reason text]")
    if extra:
        fail(f"usage: orloj cancel task <name> [--reason text] (unexpected {' '.join(extra)!r})", 2)
    try:
        make_client(ctx).cancel_task(name, namespace_or(ctx, namespace), reason)
    except Conflict as exc:
        if exc.code == "already_terminal":
            echo(exc.message)
            return
        fail(f"cancel failed: {exc.message}")
    echo(f"canceled task/{name}")


def retry(
    ctx: typer.Context,
    target: Annotated[list[str], typer.Argument(
        help="task <name> (or task/<name>), optionally followed by key=value input overrides.",
        metavar="task NAME [KEY=VALUE...]", show_default=False)],
    with_overrides: Annotated[Optional[list[str]], typer.Option(
        "--with-overrides", help="Input override key=value (repeatable).")] = None,
    namespace: NamespaceOpt = None,
) -> None:
    """Run a finished task again as <name>-retry-<unix ms>, with the same spec."""
    from orloj_ray.errors import Conflict

    usage = "orloj retry task <name> [--with-overrides key=value ...]"
    name, extra = task_target(target, usage)
    pairs = list(with_overrides or []) + extra
    for pair in pairs:
        key, sep, _ = pair.partition("=")
        if not sep or not key.strip():
            fail(f"invalid --with-overrides {pair!r}: expected key=value", 2)
    overrides = {k.strip(): v.strip() for k, v in key_values(pairs, "--with-overrides").items()}
    try:
        created = make_client(ctx).retry_task(name, namespace_or(ctx, namespace), overrides)
    except Conflict as exc:
        if exc.code == "not_retryable":
            fail(exc.message)
        raise
    echo(f"retried task/{name} as task/{(created.get('metadata') or {}).get('name', '?')}")


def _int(value) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def register(app: typer.Typer) -> None:
    for fn in (messages, metrics, cancel, retry):
        app.command()(fn)

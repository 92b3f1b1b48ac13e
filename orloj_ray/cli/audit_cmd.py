"""``orloj audit``: the governance audit trail (``GET /v1/audit``)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from orloj_ray.cli import render
from orloj_ray.cli.common import console, echo, fail, make_client, note, settings

Opt = Optional[str]


def audit(
    ctx: typer.Context,
    task: Annotated[Opt, typer.Option("--task", help="Only this task's decisions.")] = None,
    agent: Annotated[Opt, typer.Option("--agent", help="Only this agent's decisions.")] = None,
    decision: Annotated[Opt, typer.Option("--decision", help="requested, allowed, denied, approval_requested, "
                                          "approved, approval_denied, expired, executed or rate_limited.")] = None,
    code: Annotated[Opt, typer.Option("--code", help="A denial code, e.g. tool_permission_denied.")] = None,
    subject: Annotated[Opt, typer.Option("--subject", help="A tool or model name.")] = None,
    after: Annotated[int, typer.Option("--after", help="Only records with a larger id.")] = 0,
    limit: Annotated[int, typer.Option("--limit", help="At most N records (max 1000).")] = 0,
    all_namespaces: Annotated[bool, typer.Option("--all-namespaces", "-A", help="Every namespace.")] = False,
    output: Annotated[str, typer.Option("--output", "-o", help="table, json or yaml.")] = "table",
    namespace: Annotated[Opt, typer.Option("--namespace", "-n", help="Namespace (default: default).")] = None,
) -> None:
    """List governance decisions: who asked for which tool or model, what was decided and why."""
    fmt = (output or "table").strip().lower().replace("yml", "yaml")
    if fmt not in ("table", "json", "yaml"):
        fail(f"unsupported output {output!r}: expected table, json or yaml", 2)
    if after < 0 or limit < 0:
        fail("--after and --limit must be >= 0", 2)
    ns = None if all_namespaces else (namespace or settings(ctx).namespace or "default")
    body = make_client(ctx).audit(ns, task=task, agent=agent, decision=decision, code=code, subject=subject,
                                  after=after or None, limit=limit or None)
    items = body.get("items") or []
    if fmt != "table":
        echo(render.to_json(body) if fmt == "json" else render.to_yaml(body).rstrip())
        return
    if not items:
        note("no audit records" + (" matching the filters" if any((task, agent, decision, code, subject)) else ""))
        return
    headers = ["ID", "TIME", "TASK", "AGENT", "SUBJECT", "DECISION", "CODE", "RULE", "REASON"]
    rows = [[str(r.get("id", "")), render.cell(r.get("timestamp")), render.cell(r.get("task")),
             render.cell(r.get("agent")), render.cell(r.get("subject")), render.cell(r.get("decision")),
             render.cell(r.get("code")), render.cell(r.get("rule")), render.cell(r.get("reason"), 100)] for r in items]
    if ns is None:
        headers.insert(1, "NAMESPACE")
        for row, r in zip(rows, items):
            row.insert(1, render.cell(r.get("namespace")))
    console().print(render.table(headers, rows))
    if body.get("continue"):
        note(f"more records: --after {body['continue']}")


def register(app: typer.Typer) -> None:
    app.command()(audit)

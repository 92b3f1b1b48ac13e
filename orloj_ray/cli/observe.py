"""top, graph, memory-entries: what runs now, how a system is wired, what a Memory holds."""

from __future__ import annotations

import time
from collections import Counter
from typing import Annotated, Any, Optional

import typer

from orloj_ray.cli import render
from orloj_ray.cli.common import (
    NamespaceOpt, OutputOpt, console, echo, fail, make_client, namespace_or, note, output_format, print_doc,
    seconds, split_ref, waiting,
)

TASK_PHASES = ("Pending", "Running", "WaitingApproval", "Succeeded", "Failed", "DeadLetter")
ACTIVE = ("Pending", "Running", "WaitingApproval")
FINISHED_SHOWN = 10
"""``top tasks`` lists every active task and the newest finished ones, at most this many."""

# --------------------------------------------------------------------------- top


COUNT_KEYS = {"Pending": "pending", "Running": "running", "WaitingApproval": "waiting_approval",
              "Succeeded": "succeeded", "Failed": "failed", "DeadLetter": "deadletter"}
"""upstream's ``top tasks`` line"""


def tasks_view(tasks: list[dict]) -> dict:
    """Counts (upstream's ``top tasks`` line) and the rows of the tasks worth watching."""
    phases = Counter(render.cell((t.get("status") or {}).get("phase") or "Pending") for t in tasks)
    est = sum(int(float(((t.get("status") or {}).get("output") or {}).get("tokens_estimated_total") or 0))
              for t in tasks)
    counts = {"tasks": len(tasks), **{COUNT_KEYS[p]: phases.get(p, 0) for p in TASK_PHASES}, "est_tokens_total": est}
    active = [t for t in tasks if ((t.get("status") or {}).get("phase") or "Pending") in ACTIVE]
    done = [t for t in tasks if t not in active]
    done.sort(key=lambda t: str((t.get("status") or {}).get("completedAt") or ""), reverse=True)
    rows = []
    for t in active + done[:FINISHED_SHOWN]:
        st, out = t.get("status") or {}, (t.get("status") or {}).get("output") or {}
        rows.append({
            "name": (t.get("metadata") or {}).get("name", ""), "namespace": (t.get("metadata") or {}).get("namespace", ""),
            "system": (t.get("spec") or {}).get("system", ""), "phase": st.get("phase") or "Pending",
            "attempts": st.get("attempts") or 0, "agents_done": len(render.agents_done(t)),
            "tokens": out.get("tokens_used_total") or "", "claimed_by": st.get("claimedBy") or "",
            "started": st.get("startedAt") or "", "last_error": st.get("lastError") or "",
        })
    return {"counts": counts, "tasks": rows}


def agents_view(agents: list[dict], tasks: list[dict]) -> dict:
    """Each agent's phase and actor, with what the listed tasks say about its turns."""
    turns: Counter = Counter()
    tokens: Counter = Counter()
    last: dict[str, str] = {}
    inflight: Counter = Counter()
    for t in tasks:
        st = t.get("status") or {}
        ns = (t.get("metadata") or {}).get("namespace", "default")
        for row in st.get("trace") or []:
            if row.get("type") == "agent_end" and row.get("agent"):
                key = (ns, row["agent"])
                turns[key] += 1
                tokens[key] += int(row.get("tokens") or 0)
                last[key] = max(last.get(key, ""), str(row.get("timestamp") or ""))
        if (st.get("phase") or "Pending") in ACTIVE:
            for m in st.get("messages") or []:
                if m.get("phase") in ("Queued", "Running", "RetryPending") and m.get("to_agent"):
                    inflight[(ns, m["to_agent"])] += 1
    rows = []
    for a in agents:
        meta, st = a.get("metadata") or {}, a.get("status") or {}
        key = (meta.get("namespace", "default"), meta.get("name", ""))
        rows.append({"name": key[1], "namespace": key[0], "phase": st.get("phase") or "Pending",
                     "actor": st.get("actor") or "", "in_flight": inflight[key], "turns": turns[key],
                     "tokens": tokens[key], "last_turn": last.get(key, ""), "last_error": st.get("lastError") or ""})
    actors = Counter(r["actor"] for r in rows)
    counts = {"agents": len(rows), "ready": sum(1 for r in rows if r["phase"] == "Ready"),
              "error": sum(1 for r in rows if r["phase"] == "Error"), "actors_running": actors.get("running", 0)}
    return {"counts": counts, "agents": rows}


def workers_view(workers: list[dict]) -> dict:
    ready = sum(1 for w in workers if (w.get("status") or {}).get("phase") == "Ready")
    current = sum(int((w.get("status") or {}).get("currentTasks") or 0) for w in workers)
    return {"counts": {"workers": len(workers), "ready": ready, "current_tasks": current},
            "workers": [{"name": (w.get("metadata") or {}).get("name", ""),
                         "region": (w.get("spec") or {}).get("region", ""),
                         "phase": (w.get("status") or {}).get("phase", ""),
                         "current_tasks": (w.get("status") or {}).get("currentTasks") or 0,
                         "last_heartbeat": (w.get("status") or {}).get("lastHeartbeat", "")} for w in workers]}


def _line(counts: dict) -> str:
    return " ".join(f"{k}={v}" for k, v in counts.items())


def _table(rows: list[dict], columns: list[tuple[str, str]], namespaces: bool):
    cols = ([("NAMESPACE", "namespace")] if namespaces else []) + columns
    body = [[render.cell(r.get(key), 60 if key == "last_error" else None) for _, key in cols] for r in rows]
    return render.table([h for h, _ in cols], body)


TASK_COLUMNS = [("NAME", "name"), ("SYSTEM", "system"), ("PHASE", "phase"), ("ATTEMPTS", "attempts"),
                ("AGENTS_DONE", "agents_done"), ("TOKENS", "tokens"), ("CLAIMED_BY", "claimed_by"),
                ("LAST_ERROR", "last_error")]
AGENT_COLUMNS = [("NAME", "name"), ("PHASE", "phase"), ("ACTOR", "actor"), ("IN_FLIGHT", "in_flight"),
                 ("TURNS", "turns"), ("TOKENS", "tokens"), ("LAST_TURN", "last_turn"), ("LAST_ERROR", "last_error")]
WORKER_COLUMNS = [("NAME", "name"), ("REGION", "region"), ("PHASE", "phase"), ("CURRENT_TASKS", "current_tasks"),
                  ("LAST_HEARTBEAT", "last_heartbeat")]


def _snapshot(client, what: str, ns: str | None) -> dict:
    view: dict[str, Any] = {}
    tasks = client.list("task", ns) if what in ("all", "tasks", "agents") else []
    if what in ("all", "tasks"):
        view["tasks"] = tasks_view(tasks)
    if what in ("all", "agents"):
        view["agents"] = agents_view(client.list("agent", ns), tasks)
    if what == "workers":
        view["workers"] = workers_view(client.list("worker", ns))
    return view


def _renderables(view: dict, ns: str | None) -> list:
    from rich.text import Text

    out: list = []
    spread = ns is None
    for section, columns, key in (("tasks", TASK_COLUMNS, "tasks"), ("agents", AGENT_COLUMNS, "agents"),
                                  ("workers", WORKER_COLUMNS, "workers")):
        if section not in view:
            continue
        part = view[section]
        out.append(Text(_line(part["counts"])))
        if part[key]:
            multi = spread and len({r.get("namespace") for r in part[key]}) > 1
            out.append(_table(part[key], columns, multi))
    return out


def top(
    ctx: typer.Context,
    what: Annotated[str, typer.Argument(help="tasks, agents, workers, or all (tasks and agents).",
                                        autocompletion=lambda: ["tasks", "agents", "workers", "all"])] = "all",
    interval: Annotated[str, typer.Option("--interval", help="Refresh every (2s, 500ms as 0.5).")] = "2s",
    count: Annotated[int, typer.Option("--count", help="Stop after N refreshes (0: until Ctrl-C).")] = 0,
    once: Annotated[bool, typer.Option("--once", help="Print one snapshot and exit (the default when piped).")] = False,
    output: OutputOpt = "table",
    namespace: Annotated[Optional[str], typer.Option("--namespace", "-n", help="Namespace (default: all).")] = None,
) -> None:
    """Tasks and agents now: counts, active and recent tasks, each agent's actor and turns.

    At a terminal it refreshes in place until Ctrl-C; piped it prints one snapshot, or one per
    --interval with --count N. The first line of each part is upstream orlojctl's
    (``tasks=N pending=...``, ``workers=N ready=R current_tasks=C``).
    """
    what = what.strip().lower()
    if what not in ("all", "tasks", "agents", "workers"):
        fail(f"top {what!r}: expected tasks, agents, workers or all", 2)
    fmt = output_format(output)
    every = seconds(interval, "--interval")
    if count < 0:
        fail("--count must be >= 0", 2)
    ns = namespace_or(ctx, namespace, None)
    client = make_client(ctx)
    con = console()
    live_mode = con.is_terminal and fmt == "table" and not once
    rounds = count or (0 if live_mode else 1)
    if once:
        rounds = 1
    if live_mode:
        from rich.console import Group
        from rich.live import Live

        try:
            with Live(console=con, auto_refresh=False, screen=False) as live:
                n = 0
                while True:
                    live.update(Group(*_renderables(_snapshot(client, what, ns), ns)), refresh=True)
                    n += 1
                    if rounds and n >= rounds:
                        return
                    time.sleep(every)
        except KeyboardInterrupt:
            return
    for n in range(rounds):
        if n:
            time.sleep(every)
            echo()
        with waiting(f"reading {what} from {client.server}"):
            view = _snapshot(client, what, ns)
        if fmt != "table":
            print_doc(view, fmt)
            continue
        for item in _renderables(view, ns):
            con.print(item)


# --------------------------------------------------------------------------- graph


def system_graph(system: dict) -> dict:
    """``{"system", "entrypoints", "edges": [[from, to|None]], "joins": {node: text}}``."""
    from orloj_ray.graph import Graph, GraphError

    spec = system.get("spec") or {}
    try:
        graph = Graph.from_spec(spec)
    except GraphError as exc:
        fail(f"agent-system/{(system.get('metadata') or {}).get('name')}: invalid graph: {exc}")
    edges: list[list[str | None]] = []
    for agent in graph.agents:
        nxt = graph.successors.get(agent) or []
        edges.extend([agent, n] for n in nxt) if nxt else edges.append([agent, None])
    joins = {}
    for node, join in graph.joins.items():
        sources = ", ".join(graph.predecessors.get(node) or [])
        need = f"quorum {join.required(len(graph.predecessors.get(node) or []))}" if join.mode == "quorum" else join.mode
        joins[node] = f"join {need} of {sources} (on_failure={join.on_failure})"
    return {"system": (system.get("metadata") or {}).get("name", ""), "entrypoints": graph.entry_agents(),
            "agents": list(graph.agents), "edges": edges, "joins": joins}


_STATE_BY_TRACE = {"agent_start": "running", "agent_end": "done", "agent_error": "failed",
                   "agent_message_deadletter": "failed", "policy_violation": "failed", "agent_missing": "failed",
                   "token_budget_exceeded": "failed", "tool_permission_denied": "failed",
                   "tool_approval_pending": "waiting"}


def task_states(task: dict, agents: list[str]) -> dict[str, str]:
    """Each agent's state in a task, from its trace (upstream's rules): pending, running,
    waiting (an approval), done or failed."""
    states = {a: "pending" for a in agents}
    for row in (task.get("status") or {}).get("trace") or []:
        agent = row.get("agent")
        state = _STATE_BY_TRACE.get(row.get("type", ""))
        if agent and state:
            states[agent] = state
    return states


def graph(
    ctx: typer.Context,
    target: Annotated[str, typer.Argument(help="system (agent-system) or task; or system/NAME, task/NAME.",
                                          autocompletion=lambda: ["system", "task"])],
    name: Annotated[Optional[str], typer.Argument(help="Its name.")] = None,
    output: OutputOpt = "table",
    namespace: NamespaceOpt = None,
) -> None:
    """An agent system's graph as text; for a task, each agent's state in it too.

    Entrypoints, then one `a -> b` line per edge (`a -> (end)` for a last agent), joins noted.
    """
    kind, nm = split_ref(target, name, "orloj graph system|task NAME")
    kind = kind.strip().lower()
    if kind not in ("system", "agent-system", "agentsystem", "agent-systems", "task", "tasks"):
        fail(f"graph {kind!r}: expected system or task", 2)
    fmt = output_format(output)
    ns = namespace_or(ctx, namespace)
    client = make_client(ctx)
    task = None
    if kind.startswith("task"):
        task = client.get("task", nm, ns)
        system_name = (task.get("spec") or {}).get("system", "")
        system = client.get("agent-system", system_name, ns)
    else:
        system = client.get("agent-system", nm, ns)
    view = system_graph(system)
    if task is not None:
        st = task.get("status") or {}
        view = {"task": nm, "phase": st.get("phase") or "Pending", **view,
                "states": task_states(task, view["agents"]),
                "execution_order": (st.get("output") or {}).get("execution_order", "")}
    if fmt != "table":
        print_doc(view, fmt)
        return
    if task is not None:
        echo(f"task: {nm} (system {view['system']}, phase {view['phase']})")
    else:
        echo(f"system: {view['system']}")
    echo(f"entrypoints: {', '.join(view['entrypoints']) or '-'}")
    width = max((len(a) for a in view["agents"]), default=0)
    for src, dst in view["edges"]:
        mark = f"[{view['states'][src]}] ".ljust(10) if task is not None else ""
        join = f"   ({view['joins'][dst]})" if dst in view["joins"] else ""
        echo(f"{mark}{src.ljust(width)} -> {dst or '(end)'}{join}")
    if task is not None and view["execution_order"]:
        echo(f"execution order: {view['execution_order']}")


# --------------------------------------------------------------------------- memory entries


def memory_entries(
    ctx: typer.Context,
    memory: Annotated[str, typer.Argument(help="Memory name.")],
    query: Annotated[Optional[str], typer.Option("--query", "-q", help="Search (ranked) instead of listing.")] = None,
    prefix: Annotated[Optional[str], typer.Option("--prefix", help="Only keys with this prefix.")] = None,
    limit: Annotated[int, typer.Option("--limit", help="At most N entries (> 0).")] = 100,
    output: OutputOpt = "table",
    namespace: NamespaceOpt = None,
) -> None:
    """What a Memory holds: its entries (INDEX, ENTRY) and count."""
    if limit <= 0:
        fail("--limit must be > 0", 2)
    fmt = output_format(output)
    body = make_client(ctx).memory_entries(memory, namespace_or(ctx, namespace), query=query, prefix=prefix,
                                           limit=limit)
    if fmt != "table":
        print_doc(body, fmt)
        return
    entries = body.get("entries") or []
    if entries:
        rows = [[str(i), render.cell(e, 200)] for i, e in enumerate(entries)]
        console().print(render.table(["INDEX", "ENTRY"], rows))
    else:
        note(f"memory/{memory} holds no entries" + (" matching" if query or prefix else ""))
    echo(f"count={body.get('count', len(entries))}" + (f" ranking={body['ranking']}" if body.get("ranking") else ""))


def register(app: typer.Typer) -> None:
    app.command()(top)
    app.command()(graph)
    app.command("memory-entries")(memory_entries)

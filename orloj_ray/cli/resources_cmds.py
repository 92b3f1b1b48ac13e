"""apply, validate, get, describe, delete, create secret, approve/deny."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from orloj_ray.cli import render
from orloj_ray.cli.common import (
    KindArg, NamespaceOpt, OutputOpt, console, echo, fail, key_values, make_client, namespace_or, note, output_format,
    print_doc, resolve_kind, waiting,
)


def format_manifest_error(err) -> str:
    """``<file>: document <n>: <field>: <message>`` (``ManifestError`` reads that way)."""
    return str(err)


def _manifest_errors_exit(exc) -> None:
    errors = getattr(exc, "errors", None) or [exc]
    for err in errors:
        print(f"error: {format_manifest_error(err)}", file=sys.stderr)
    n = len({(getattr(e, "source", ""), getattr(e, "index", None)) for e in errors})  # one line per problem
    print(f"error: {n} invalid document{'s' if n != 1 else ''}; nothing was applied", file=sys.stderr)
    raise typer.Exit(1)


def _print_warnings(source: str, index: int, warnings) -> None:
    for w in warnings:
        print(f"warning: {source}: document {index + 1}: {w['message']}", file=sys.stderr)


StrictOpt = Annotated[bool, typer.Option("--strict", help="Unknown fields are errors, not warnings.")]


def _with_stdin(files: list[Path]) -> list[str]:
    """``-`` (kubectl's stdin) becomes a file holding what stdin gave, named ``stdin.yaml``."""
    import tempfile

    out = []
    for f in files:
        if str(f) == "-":
            tmp = Path(tempfile.mkdtemp(prefix="orloj-stdin-")) / "stdin.yaml"
            tmp.write_text(sys.stdin.read())
            out.append(str(tmp))
        else:
            out.append(str(f))
    return out


def apply(
    ctx: typer.Context,
    files: Annotated[list[Path], typer.Option("--filename", "-f",
                                              help="Manifest file or directory, or - for stdin (repeatable).")],
    run: Annotated[bool, typer.Option("--run", help="Include runnable Tasks found in directories.")] = False,
    rerun: Annotated[bool, typer.Option(
        "--rerun", help="Run a task that already finished again, as <name>-<unix ms>.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show create/update/no-op without changing anything.")] = False,
    namespace: NamespaceOpt = None,
    strict: StrictOpt = False,
) -> None:
    """Validate every manifest locally, then create or update each object on the server.

    A runnable Task that already finished is left as it is (a POST would not run it again);
    --rerun creates a new run of it. Afterwards every applied agent, system and task is
    checked for references the server does not have (tools, model endpoint, roles, agents):
    each is a warning on stderr naming what is missing.
    """
    from orloj_ray.client import plan_apply
    from orloj_ray.errors import OrlojError, Unavailable
    from orloj_ray.resources import ManifestError, ManifestErrors

    paths = _with_stdin(files)
    try:
        with waiting(f"validating {', '.join(paths)}"):
            plan = plan_apply(paths, run=run or rerun, namespace=namespace_or(ctx, namespace, None), strict=strict)
    except (ManifestErrors, ManifestError) as exc:
        _manifest_errors_exit(exc)
    for item in plan.objects:
        _print_warnings(item.source, item.index, item.warnings)
    for item in plan.skipped:
        echo(f"skipped task/{item.name} (mode: run) from {item.source}; use --run to include")
    if not plan.objects:
        note("nothing to apply")
        return
    client = make_client(ctx)
    ns = namespace_or(ctx, namespace, None)
    again = " ".join(["orloj apply", *(f"-f {p}" for p in paths), "--run --rerun", *([f"-n {ns}"] if ns else [])])
    counts: dict[str, int] = {}
    failed = 0
    applied: list[dict] = []
    for item in plan.objects:
        try:
            with waiting(f"applying {item.ref} to {client.server}"):
                action = _apply_one(client, item, dry_run, rerun, again)
            if action == "applied":
                applied.append(item.doc)
            counts[action] = counts.get(action, 0) + 1
        except Unavailable as exc:
            fail(exc.message)
        except OrlojError as exc:
            failed += 1
            print(f"error: {item.source}: {item.ref}: {exc.message}", file=sys.stderr)
    if dry_run:
        echo(f"dry-run: {counts.get('create', 0)} to create, {counts.get('update', 0)} to update, "
             f"{counts.get('no-op', 0)} unchanged" + (f", {failed} failed" if failed else ""))
    else:
        finished = counts.get("finished", 0)
        extra = "".join(f", {n} {what}" for n, what in ((len(plan.skipped), "skipped"), (finished, "finished"),
                                                        (failed, "failed")) if n)
        if failed or finished or len(plan.objects) > 1:
            echo(f"{counts.get('applied', 0)} applied{extra}")
        _warn_missing(client, applied)
    if failed:
        raise typer.Exit(1)


def _apply_one(client, item, dry_run: bool, rerun: bool, again: str) -> str:
    """Apply (or dry-run) one planned object; returns the action counted for the summary.
    ``again``: the command that runs a finished task again, for the message saying it finished."""
    from orloj_ray.client import rerun_name, strip_server_fields

    runnable = item.kind == "Task" and str((item.doc.get("spec") or {}).get("mode") or "run").lower() != "template"
    if dry_run:
        live = client.request("GET", f"/v1/{client.kind(item.kind).plural}/{item.name}",
                              params={"namespace": item.namespace}, allow_404=True)
        action = ("create" if live is None else
                  "no-op" if strip_server_fields(live) == strip_server_fields(item.doc) else "update")
        echo(f"dry-run {action} {item.ref}")
        return action
    doc = item.doc
    phase = client.finished_phase(item.name, item.namespace) if runnable else None
    if phase and not rerun:
        echo(f"task/{item.name} already finished ({phase}); not run again. Run it again with: {again} "
             f"(a new task {item.name}-<unix ms>), or `orloj retry task {item.name}`")
        return "finished"
    if phase:
        doc = {**doc, "metadata": {**doc["metadata"], "name": rerun_name(item.name)}}
    stored = client.create(doc)
    name = (stored.get("metadata") or {}).get("name") or item.name
    suffix = f" (generated from {item.generated_from})" if item.generated_from else ""
    rerun_note = f" (a new run of task/{item.name}, which finished {phase})" if phase else ""
    echo(f"applied {item.kind.lower()}/{name}{suffix}{rerun_note}")
    return "applied"


def _warn_missing(client, applied: list[dict]) -> None:
    """A warning on stderr for each applied object that names something the server lacks."""
    from orloj_ray.client import References
    from orloj_ray.errors import OrlojError

    try:
        lines = References(client).warnings(applied)
    except OrlojError:
        return  # advice only: a server that cannot answer leaves the apply as it was
    for line in lines:
        note(line)


def validate(
    files: Annotated[list[Path], typer.Option("--filename", "-f", help="Manifest file or directory (repeatable).")],
    strict: StrictOpt = False,
) -> None:
    """Check manifests offline (no server needed); exit 1 when any document is invalid."""
    from orloj_ray.client import manifest_files
    from orloj_ray.errors import OrlojError
    from orloj_ray.resources import ManifestError, ManifestErrors, load_path

    valid, errors, invalid = 0, [], set()
    for root in files:
        try:
            paths = manifest_files(root)
        except OrlojError as exc:
            errors.append(exc.message)
            invalid.add((str(root), None))
            continue
        for path in paths:
            try:
                manifests = load_path(path, strict=strict)
            except ManifestErrors as exc:
                errors.extend(format_manifest_error(e) for e in exc.errors)
                invalid.update((e.source, e.index) for e in exc.errors)
                continue
            except ManifestError as exc:
                errors.append(format_manifest_error(exc))
                invalid.add((exc.source, exc.index))
                continue
            for m in manifests:
                valid += 1
                echo(f"  valid  {str(m.kind).lower()}/{m.name}  ({m.source})")
                _print_warnings(m.source, m.index, m.warnings)
    if errors:
        print(f"{valid} valid, {len(invalid)} invalid:", file=sys.stderr)
        for line in errors:
            print(f"  error  {line}", file=sys.stderr)
        raise typer.Exit(1)
    echo(f"{valid} valid")


def get(
    ctx: typer.Context,
    resource: KindArg,
    name: Annotated[Optional[str], typer.Argument(help="One object by name.")] = None,
    output: Annotated[str, typer.Option("--output", "-o", help="table, json or yaml.")] = "table",
    namespace: Annotated[Optional[str], typer.Option("--namespace", "-n", help="Namespace (lists: all when omitted).")] = None,
    phase: Annotated[Optional[str], typer.Option("--phase", help="Only objects in this status.phase.")] = None,
    selector: Annotated[Optional[str], typer.Option("--selector", "-l", help="Label selector k=v[,k=v].")] = None,
    watch: Annotated[bool, typer.Option("--watch", "-w", help="Stream task changes (tasks only).")] = False,
) -> None:
    """List objects of a kind, or show one (get memory-entries MEMORY: what a Memory holds)."""
    output = output_format(output)
    if resource.strip().lower() in MEMORY_ENTRY_ALIASES:
        if not name:
            fail("usage: orloj get memory-entries MEMORY [-n ns]", 2)
        from orloj_ray.cli.observe import memory_entries

        memory_entries(ctx, name, output=output, namespace=namespace)
        return
    info = resolve_kind(resource)
    client = make_client(ctx)
    if watch:
        _watch_tasks(client, info, namespace_or(ctx, namespace, None), name)
        return
    if name:
        obj = client.get(info.kind, name, namespace_or(ctx, namespace))
        echo(render.to_json(obj) if output == "json" else render.to_yaml(obj).rstrip())
        return
    items = client.list(info.kind, namespace_or(ctx, namespace, None), selector)
    if phase:
        items = [o for o in items if str((o.get("status") or {}).get("phase", "")).lower() == phase.lower()]
    if output == "json":
        echo(render.to_json({"items": items}))
    elif output == "yaml":
        echo(render.to_yaml({"items": items}).rstrip())
    elif not items:
        where = f" in namespace {namespace_or(ctx, namespace, None)}" if namespace_or(ctx, namespace, None) else ""
        note(f"no {info.plural} found{where}")
    else:
        headers, rows = render.resource_rows(info.kind, items)
        console().print(render.table(headers, rows))


MEMORY_ENTRY_ALIASES = ("memory-entries", "memoryentries", "memoryentry")


def _watch_tasks(client, info, namespace, name) -> None:
    if not info.watchable:
        fail(f"--watch is supported for agents, tasks, task-schedules and task-webhooks, not {info.plural}", 2)
    try:
        for etype, res in client.watch(info.kind, namespace, name):
            st = res.get("status") or {}
            now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
            echo(f"{now} event={etype} {info.lower}={(res.get('metadata') or {}).get('name')} "
                 f"phase={st.get('phase', '')} attempts={st.get('attempts', 0)} claimed_by={st.get('claimedBy', '')}")
    except KeyboardInterrupt:
        return


def describe(
    ctx: typer.Context,
    resource: KindArg,
    name: Annotated[str, typer.Argument(help="Object name.")],
    output: OutputOpt = "table",
    namespace: NamespaceOpt = None,
) -> None:
    """Show one object with its status (-o json|yaml: the object itself)."""
    info = resolve_kind(resource)
    fmt = output_format(output)
    obj = make_client(ctx).get(info.kind, name, namespace_or(ctx, namespace))
    if fmt != "table":
        print_doc(obj, fmt)
        return
    meta, status = obj.get("metadata") or {}, obj.get("status") or {}
    echo(f"Kind:       {obj.get('kind', info.kind)}")
    echo(f"Name:       {meta.get('name', name)}")
    echo(f"Namespace:  {meta.get('namespace') or 'default'}")
    if status.get("phase"):
        echo(f"Phase:      {status['phase']}")
    if status.get("lastError"):
        echo(f"LastError:  {status['lastError']}")
    echo("Resource:")
    echo(render.to_yaml(obj).rstrip())


def delete(
    ctx: typer.Context,
    resource: KindArg,
    name: Annotated[str, typer.Argument(help="Object name.")],
    namespace: NamespaceOpt = None,
) -> None:
    """Delete one object."""
    info = resolve_kind(resource)
    make_client(ctx).delete(info.kind, name, namespace_or(ctx, namespace))
    echo(f"deleted {info.lower}/{name}")


def create_secret(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Secret name, e.g. openai-api-key.")],
    from_literal: Annotated[list[str], typer.Option("--from-literal", help="key=value (repeatable); models read the key 'value'.")],
    namespace: NamespaceOpt = None,
) -> None:
    """Create or update a Secret from literal values."""
    data = key_values(from_literal, "--from-literal")
    make_client(ctx).create_secret(name, data, namespace=namespace_or(ctx, namespace))
    echo(f"created secret/{name}")


def _decide(ctx, verb: str, resource: str, name: str, decided_by, reason, namespace) -> None:
    info = resolve_kind(resource, 2)
    if info.kind != "ToolApproval":
        fail(f"{verb} works on tool-approval only, not {resource!r}", 2)
    client = make_client(ctx)
    call = client.approve if verb == "approve" else client.deny
    call(name, namespace=namespace_or(ctx, namespace), decided_by=decided_by, reason=reason)
    echo(f"{'approved' if verb == 'approve' else 'denied'} tool-approval/{name}")


DecidedBy = Annotated[Optional[str], typer.Option("--decided-by", help="Who decided (recorded).")]
Reason = Annotated[Optional[str], typer.Option("--reason", help="Why.")]


def approve(
    ctx: typer.Context,
    resource: Annotated[str, typer.Argument(help="tool-approval")],
    name: Annotated[str, typer.Argument(help="ToolApproval name (ta-xxxxxxxx).")],
    decided_by: DecidedBy = None, reason: Reason = None, namespace: NamespaceOpt = None,
) -> None:
    """Approve a pending tool call."""
    _decide(ctx, "approve", resource, name, decided_by, reason, namespace)


def deny(
    ctx: typer.Context,
    resource: Annotated[str, typer.Argument(help="tool-approval")],
    name: Annotated[str, typer.Argument(help="ToolApproval name (ta-xxxxxxxx).")],
    decided_by: DecidedBy = None, reason: Reason = None, namespace: NamespaceOpt = None,
) -> None:
    """Deny a pending tool call."""
    _decide(ctx, "deny", resource, name, decided_by, reason, namespace)


def register(app: typer.Typer) -> None:
    for fn in (apply, validate, get, describe, delete, approve, deny):
        app.command()(fn)
    create = typer.Typer(help="Create objects imperatively.", no_args_is_help=True)
    create.command("secret")(create_secret)
    app.add_typer(create, name="create")

"""export and import: backup and restore of every resource (rules in ``orloj_ray.backup``)."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from orloj_ray.cli.common import echo, fail, make_client, namespace_or, note


def export(
    ctx: typer.Context,
    output: Annotated[Optional[Path], typer.Option(
        "--output", "-o", help="File to write (.json: a JSON List; else YAML documents). Default stdout.")] = None,
    namespace: Annotated[Optional[str], typer.Option("--namespace", "-n", help="Only this namespace.")] = None,
    all_namespaces: Annotated[bool, typer.Option(
        "--all-namespaces", "-A", help="Every namespace (the default unless -n is given).")] = False,
) -> None:
    """Write every resource, with its status, to a file: a backup (Secret values stay masked)."""
    from orloj_ray import backup

    ns = None if all_namespaces else namespace_or(ctx, namespace, None)
    client = make_client(ctx)
    objects = client.export(ns)
    fmt = "json" if output is not None and output.suffix.lower() == ".json" else "yaml"
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    masked = sum(1 for o in objects if o.get("kind") == "Secret")
    header = (f"orloj export of {client.server} at {now}, namespace: {ns or 'all'}, {len(objects)} objects\n"
              f"restore with: orloj import -f <this file>" +
              (f"\n{masked} Secret(s) have masked values: re-create them after a restore" if masked else ""))
    text = backup.dump(objects, fmt, header)
    if output is None:
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text)
    counts: dict[str, int] = {}
    for obj in objects:
        counts[obj["kind"]] = counts.get(obj["kind"], 0) + 1
    summary = ", ".join(f"{n} {k}" for k, n in counts.items()) or "nothing"
    note(f"exported {len(objects)} objects ({summary})" + (f" to {output}" if output else ""))
    if masked:
        note(f"note: {masked} Secret(s) exported with masked values; re-create them after a restore")


def import_(
    ctx: typer.Context,
    filename: Annotated[Path, typer.Option("--filename", "-f", help="An export file (YAML or JSON); - for stdin.")],
) -> None:
    """Restore an export: create what is missing (with its status), update the rest as apply does."""
    from orloj_ray import backup
    from orloj_ray.errors import OrlojError

    if str(filename) == "-":
        text, source = sys.stdin.read(), "<stdin>"
    else:
        if not filename.is_file():
            fail(f"{filename}: no such file", 2)
        text, source = filename.read_text(), str(filename)
    try:
        docs = backup.parse(text, source)
    except OrlojError as exc:
        fail(exc.message, 2)

    def show(action: str, doc: dict, detail: str) -> None:
        line = f"{action} {backup.ref(doc)}" + (f": {detail}" if detail else "")
        if action == "failed":
            print(f"error: {line}", file=sys.stderr, flush=True)
        else:
            echo(line)

    report = make_client(ctx).import_objects(docs, on_result=show)
    echo(f"{len(report.created)} created, {len(report.updated)} updated, {len(report.unchanged)} unchanged"
         + (f", {len(report.secrets_to_recreate)} secrets to re-create" if report.secrets_to_recreate else "")
         + (f", {len(report.failed)} failed" if report.failed else ""))
    for ref in report.secrets_to_recreate:
        note(f"warning: {ref} was not restored (masked values): orloj create secret <name> --from-literal value=...")
    if report.failed:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("export")(export)
    app.command("import")(import_)

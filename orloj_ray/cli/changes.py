"""edit and diff: change one object in an editor, or see what apply would change."""

from __future__ import annotations

import difflib
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from orloj_ray.cli import render
from orloj_ray.cli.common import KindArg, NamespaceOpt, console, echo, fail, make_client, namespace_or, note, resolve_kind, waiting

SERVER_FIELDS = ("resourceVersion", "generation", "createdAt", "uid")
EDIT_HEADER = """\
# Edit {ref} and save to apply it; close the editor without saving (or leave the file as it
# is) to change nothing. The object is written back with If-Match: {rv}, so a change made on
# the server meanwhile is refused, not overwritten. Its status is not editable.
"""


def _editor() -> list[str]:
    for var in ("VISUAL", "EDITOR"):
        value = os.environ.get(var, "").strip()
        if value:
            return shlex.split(value)
    return ["vi"]


def _editable(obj: dict) -> dict:
    """The object as the user edits it: no status and no server-owned metadata."""
    doc = {k: v for k, v in obj.items() if k != "status"}
    meta = {k: v for k, v in (doc.get("metadata") or {}).items() if k not in SERVER_FIELDS}
    return {**doc, "metadata": meta}


def edit(
    ctx: typer.Context,
    resource: KindArg,
    name: Annotated[str, typer.Argument(help="Object name.")],
    namespace: NamespaceOpt = None,
) -> None:
    """Edit one object in $VISUAL/$EDITOR; written back with If-Match.

    The saved text is validated first; the write carries the resourceVersion that was read,
    so an object that changed on the server meanwhile is refused, never overwritten.
    """
    from orloj_ray.client import plan_apply
    from orloj_ray.errors import Conflict
    from orloj_ray.resources import ManifestError, ManifestErrors

    info = resolve_kind(resource)
    if info.kind == "ToolApproval":
        fail("tool approvals are decided, not edited: orloj approve|deny tool-approval NAME", 2)
    if info.kind == "Secret":  # the server shows *** for every value: writing that back would destroy them
        fail(f"secret values are masked when read, so a secret cannot be edited: set them with "
             f"`orloj create secret {name} --from-literal KEY=VALUE` (it replaces the secret)", 2)
    ns = namespace_or(ctx, namespace)
    client = make_client(ctx)
    obj = client.get(info.kind, name, ns)
    rv = str((obj.get("metadata") or {}).get("resourceVersion") or "")
    ref = f"{info.lower}/{name}"
    text = EDIT_HEADER.format(ref=ref, rv=rv) + render.to_yaml(_editable(obj))
    folder = Path(tempfile.mkdtemp(prefix="orloj-edit-"))
    path = folder / f"orloj-edit-{info.plural}-{name}.yaml"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    try:
        code = subprocess.call([*_editor(), str(path)])
    except OSError as exc:
        fail(f"cannot start the editor {_editor()[0]!r} ({exc}); set $EDITOR")
    if code != 0:
        fail(f"the editor exited with status {code}; nothing was changed (your text: {path})")
    edited = path.read_text()
    if edited == text:
        echo("no changes detected")
        _discard(path)
        return
    try:
        plan = plan_apply([str(path)])
    except (ManifestErrors, ManifestError) as exc:
        for err in getattr(exc, "errors", None) or [exc]:
            print(f"error: {err}", file=sys.stderr)
        fail(f"nothing was changed; your edit is kept in {path}: fix it and run `orloj apply -f {path}`")
    main = [item for item in plan.objects if not item.generated_from]
    if len(main) != 1 or main[0].kind != info.kind or main[0].name != name:
        fail(f"the edited file must hold {ref} only (kind and name cannot change); your edit is kept in {path}")
    item = main[0]
    item.doc.setdefault("metadata", {})["namespace"] = ns
    try:
        with waiting(f"writing {ref}"):
            if info.kind == "McpServer":  # no PUT route (as upstream): compare versions, then upsert
                if str(client.get(info.kind, name, ns)["metadata"].get("resourceVersion")) != rv:
                    raise Conflict(f"{ref} changed on the server")
                client.create(item.doc)
            else:
                client.replace(item.doc, rv)
            for extra in plan.objects:
                if extra.generated_from:
                    extra.doc.setdefault("metadata", {})["namespace"] = ns
                    client.create(extra.doc)
    except Conflict as exc:
        fail(f"{ref} changed on the server while you edited it ({exc.message}); nothing was written. "
             f"Your edit is kept in {path}: run `orloj edit {info.lower} {name}` again, or "
             f"`orloj apply -f {path}` to overwrite")
    echo(f"edited {ref}")
    _discard(path)


def _discard(path: Path) -> None:
    path.unlink(missing_ok=True)
    try:
        path.parent.rmdir()
    except OSError:
        pass


# --------------------------------------------------------------------------- diff


def _comparable(doc: dict) -> dict:
    from orloj_ray.client import strip_server_fields

    out = strip_server_fields(doc)
    meta = out.get("metadata") or {}
    meta.pop("uid", None)
    if out.get("kind") == "Secret":  # never print a value; the server shows *** anyway
        spec = out.get("spec") or {}
        for key in ("data", "stringData"):
            if isinstance(spec.get(key), dict):
                spec[key] = {k: "***" for k in spec[key]}
    return out


def _lines(doc: dict | None) -> list[str]:
    return render.to_yaml(doc, sort_keys=True).splitlines(keepends=True) if doc is not None else []


def diff(
    ctx: typer.Context,
    files: Annotated[list[Path], typer.Option("--filename", "-f", help="Manifest file or directory (repeatable).")],
    run: Annotated[bool, typer.Option("--run", help="Include runnable Tasks found in directories (as apply).")] = False,
    namespace: NamespaceOpt = None,
) -> None:
    """Show what apply would change on the server, as a unified diff per object.

    live/<kind>/<name> against desired/<kind>/<name> (/dev/null for a new object), then a
    summary on stderr.

    Exit 0 with no differences, 1 with some, 2 on errors (as kubectl diff). Secret values are
    never printed or compared (the server shows them as ***).
    """
    from orloj_ray.client import plan_apply
    from orloj_ray.errors import OrlojError
    from orloj_ray.resources import ManifestError, ManifestErrors

    try:
        with waiting("validating manifests"):
            plan = plan_apply([str(f) for f in files], run=run, namespace=namespace_or(ctx, namespace, None))
    except (ManifestErrors, ManifestError) as exc:
        for err in getattr(exc, "errors", None) or [exc]:
            print(f"error: {err}", file=sys.stderr)
        raise typer.Exit(2)
    client = make_client(ctx)
    con = console()
    counts = {"create": 0, "update": 0, "unchanged": 0}
    for item in plan.objects:
        ref = f"{item.kind}/{item.name}"
        try:
            with waiting(f"reading {ref}"):
                live = client.request("GET", f"/v1/{client.kind(item.kind).plural}/{item.name}",
                                      params={"namespace": item.namespace}, allow_404=True)
        except OrlojError as exc:
            fail(f"{item.source}: {ref}: {exc.message}", 2)
        before = _comparable(live) if live is not None else None
        after = _comparable(item.doc)
        if before == after:
            counts["unchanged"] += 1
            continue
        counts["create" if before is None else "update"] += 1
        lines = difflib.unified_diff(_lines(before), _lines(after),
                                     "/dev/null" if before is None else f"live/{ref}", f"desired/{ref}")
        for line in lines:
            text = line.rstrip("\n")
            if con.is_terminal:
                from rich.markup import escape

                style = ("bold" if text.startswith(("---", "+++")) else "green" if text.startswith("+")
                         else "red" if text.startswith("-") else "cyan" if text.startswith("@@") else "")
                con.print(f"[{style}]{escape(text)}[/{style}]" if style else escape(text), highlight=False)
            else:
                echo(text)
    for item in plan.skipped:
        note(f"skipped task/{item.name} (mode: run) from {item.source}; use --run to include")
    note(f"diff: {counts['create']} to create, {counts['update']} to update, {counts['unchanged']} unchanged")
    if counts["create"] or counts["update"]:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command()(edit)
    app.command()(diff)

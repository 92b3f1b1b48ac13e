"""``orloj admin ...``: operator actions (admin token)."""

from __future__ import annotations

import typer

from orloj_ray.cli import render
from orloj_ray.cli.common import echo, make_client

admin = typer.Typer(help="Operator actions (need an admin token).", no_args_is_help=True)


@admin.command("rotate-secret-key")
def rotate_secret_key(ctx: typer.Context) -> None:
    """Re-encrypt every stored Secret under a new key.

    With keys in a key file ($ORLOJ_HOME/secret.key or ORLOJ_SECRET_KEY_FILE) the server writes
    a new key first in the file and drops the keys no value uses any more. With ORLOJ_SECRET_KEY,
    put the new key first there and restart the server; this then re-encrypts under it and
    lists the keys you may remove.
    """
    body = make_client(ctx).rotate_secret_key()
    echo(render.to_yaml(body).rstrip())


def register(app: typer.Typer) -> None:
    app.add_typer(admin, name="admin")

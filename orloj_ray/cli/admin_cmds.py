"""``orloj admin ...``: operator actions (admin token)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from orloj_ray.cli import render
from orloj_ray.cli.common import echo, fail, make_client

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


@admin.command("reset-password")
def reset_password(
    ctx: typer.Context,
    new_password: Annotated[str, typer.Option("--new-password", help="The new admin password.")],
    username: Annotated[Optional[str], typer.Option("--username", help="Admin user (default: the server's).")] = None,
) -> None:
    """Reset the local admin's password (upstream's native auth: POST /v1/auth/admin/reset-password)."""
    from orloj_ray.errors import NotFound, OrlojError

    body = {"new_password": new_password, **({"username": username} if username else {})}
    try:
        make_client(ctx).request("POST", "/v1/auth/admin/reset-password", json_body=body)
    except OrlojError as exc:
        if isinstance(exc, NotFound) or exc.code == "native_auth_unsupported":
            fail("this server has no password login to reset: orloj-ray authenticates with bearer tokens "
                 "(--auth-mode token, tokens and roles in ORLOJ_API_TOKENS); upstream's native mode is not "
                 "implemented")
        raise
    echo("admin password reset")


def register(app: typer.Typer) -> None:
    app.add_typer(admin, name="admin")

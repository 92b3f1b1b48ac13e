"""Shared CLI plumbing: consoles, the per-invocation client, error exits, small parsers."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, NoReturn

import typer
from rich.console import Console

from orloj_ray.resources import parse_duration

if TYPE_CHECKING:
    from orloj_ray.client import Client
    from orloj_ray.resources.kinds import KindInfo


def console() -> Console:
    """stdout; wide when not a terminal so tables are not wrapped in pipes and tests."""
    out = Console(highlight=False, soft_wrap=False)
    if not out.is_terminal:
        out = Console(highlight=False, width=250)
    return out


def err_console() -> Console:
    return Console(stderr=True, highlight=False)


def echo(text: str = "") -> None:
    print(text, flush=True)


def note(text: str) -> None:
    """Progress and diagnostics: stderr, so stdout stays parseable."""
    print(text, file=sys.stderr, flush=True)


def fail(message: str, code: int = 1) -> NoReturn:
    print(f"error: {message}", file=sys.stderr, flush=True)
    raise typer.Exit(code)


@dataclass
class Settings:
    server: str | None = None
    token: str | None = None
    namespace: str | None = None


def settings(ctx: typer.Context) -> Settings:
    root = ctx.find_root()
    if not isinstance(root.obj, Settings):
        root.obj = Settings()
    return root.obj


def make_client(ctx: typer.Context) -> Client:
    from orloj_ray.client import Client

    s = settings(ctx)
    return Client(s.server, token=s.token)


def namespace_or(ctx: typer.Context, ns: str | None, default: str | None = "default") -> str | None:
    """``-n`` on the command, else the global ``-n`` given before it, else ``default``."""
    return ns or settings(ctx).namespace or default


def seconds(text: str, flag: str) -> float:
    """Parse ``5m``/``30s``/``1h``/``90`` (plain numbers are seconds) or exit 2."""
    raw = text.strip()
    try:
        return float(raw)
    except ValueError:
        pass
    try:
        return parse_duration(raw).total_seconds()
    except ValueError as exc:
        fail(f"{flag}: {exc}", 2)


def resolve_kind(name: str, code: int = 1) -> KindInfo:
    from orloj_ray.errors import OrlojError
    from orloj_ray.resources.kinds import kind_info

    try:
        return kind_info(name)
    except OrlojError as exc:
        fail(exc.message, code)


def split_ref(ref: str, name: str | None, usage: str, code: int = 2) -> tuple[str, str]:
    """``task/NAME`` or ``task NAME`` → (kind, name)."""
    if "/" in ref and not name:
        kind, _, nm = ref.partition("/")
    else:
        kind, nm = ref, name or ""
    if not kind or not nm:
        fail(f"expected <resource>/<name>: {usage}", code)
    return kind, nm


def key_values(pairs: list[str], what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            fail(f"{what} {pair!r}: expected key=value", 2)
        out[key.strip()] = value
    return out

"""Shared CLI plumbing: consoles, the per-invocation client, output formats, progress for
waits, error exits, small parsers."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, Optional

import typer
from rich.console import Console

if TYPE_CHECKING:
    from orloj_ray.client import Client
    from orloj_ray.resources.kinds import KindInfo

WIDE = 250
"""Width of tables written for a program (no terminal anywhere, no ``$COLUMNS``): not wrapped."""

OUTPUTS = ("table", "json", "yaml")
OutputOpt = Annotated[str, typer.Option("--output", "-o", help="table, json or yaml.")]
NamespaceOpt = Annotated[Optional[str], typer.Option("--namespace", "-n", help="Namespace.")]


def complete_kind(incomplete: str) -> list[str]:
    """Shell completion of a resource argument: the REST collection names (agents, tasks...)."""
    from orloj_ray.resources.kinds import KINDS

    return [k.plural for k in KINDS if k.plural.startswith(incomplete.strip().lower())]


KindArg = Annotated[str, typer.Argument(help="Kind or alias: tasks, agents, agent-systems, ...",
                                        autocompletion=complete_kind)]


def _width() -> int | None:
    """The width tables must fit: stdout's terminal; else ``$COLUMNS``; else the terminal the
    user sits at when stdout is piped (``orloj get tasks | less``); else None (wide)."""
    try:
        return int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        pass
    try:
        if sys.stderr is not None and sys.stderr.isatty():
            return os.get_terminal_size(sys.stderr.fileno()).columns
    except (OSError, ValueError, AttributeError):
        pass
    return None


def console() -> Console:
    """stdout, as wide as the terminal (see ``_width`` when it is not one)."""
    out = Console(highlight=False, soft_wrap=False)
    if not out.is_terminal:
        out = Console(highlight=False, width=_width() or WIDE)
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
    """A client for ``--server``/``--api-token``, else the environment, else the active
    ``orloj config`` profile (upstream orlojctl's precedence; ``orloj_ray.cli.profiles``)."""
    from orloj_ray.cli.profiles import resolve_server, resolve_token
    from orloj_ray.client import Client

    s = settings(ctx)
    return Client(resolve_server(s.server), token=resolve_token(s.token) or "")


def namespace_or(ctx: typer.Context, ns: str | None, default: str | None = "default") -> str | None:
    """``-n`` on the command, else the global ``-n`` given before it, else ``default``."""
    return ns or settings(ctx).namespace or default


def seconds(text: str, flag: str) -> float:
    """Parse ``5m``/``30s``/``1h``/``90`` (plain numbers are seconds) or exit 2."""
    from orloj_ray.resources import parse_duration

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


def output_format(value: str | None, allowed: tuple[str, ...] = OUTPUTS) -> str:
    """``-o`` checked (``yml`` is ``yaml``), or exit 2 naming what is accepted."""
    fmt = (value or allowed[0]).strip().lower()
    fmt = "yaml" if fmt == "yml" else fmt
    if fmt not in allowed:
        fail(f"unsupported output {value!r}: expected {', '.join(allowed[:-1])} or {allowed[-1]}", 2)
    return fmt


def print_doc(body: Any, fmt: str) -> None:
    """``body`` as JSON or YAML on stdout."""
    from orloj_ray.cli import render

    echo(render.to_json(body) if fmt == "json" else render.to_yaml(body).rstrip())


PROGRESS_AFTER_S = 1.0


@contextmanager
def waiting(message: str) -> Iterator[None]:
    """Progress for a wait: a spinner on stderr at a terminal; elsewhere ``message ...`` on
    stderr once the wait passes a second (quick calls stay quiet in scripts)."""
    err = err_console()
    if err.is_terminal:
        from rich.markup import escape

        with err.status(escape(message)):
            yield
        return
    timer = threading.Timer(PROGRESS_AFTER_S, note, (f"{message} ...",))
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()

"""``orloj`` / ``orlojctl``: the command line, wired from the command modules.

Global options (``--server``, ``--api-token``) may appear anywhere on the command line, as
with upstream orlojctl; ``-n`` before the subcommand sets the default namespace.
Exit codes: 0 ok, 1 error (``error: ...`` on stderr), 2 usage (and ``wait`` request errors).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from orloj_ray.cli import (
    admin_cmds, audit_cmd, backup_cmds, changes, local, observe, profiles, resources_cmds, run_cmds, scaffold, task_ops,
)
from orloj_ray.cli.common import OutputOpt, Settings, echo, fail, make_client, output_format, print_doc

app = typer.Typer(
    name="orloj",
    help="orloj-ray: run multi-agent systems on Ray, declared as orloj.dev/v1 manifests.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,  # `orloj completion bash|zsh|fish` instead of typer's --install-completion
    context_settings={"help_option_names": ["-h", "--help"]},
)
typer.completion.completion_init()  # typer's shell classes answer the scripts `orloj completion` prints


@app.callback()
def _root(
    ctx: typer.Context,
    server: Annotated[Optional[str], typer.Option(
        "--server", help="API URL (default $ORLOJCTL_SERVER, $ORLOJ_SERVER, http://127.0.0.1:8080).")] = None,
    api_token: Annotated[Optional[str], typer.Option(
        "--api-token", help="Bearer token (default $ORLOJCTL_API_TOKEN, $ORLOJ_API_TOKEN).")] = None,
    namespace: Annotated[Optional[str], typer.Option(
        "--namespace", "-n", help="Default namespace for the command.")] = None,
) -> None:
    ctx.obj = Settings(server=server, token=api_token, namespace=namespace)


@app.command()
def version() -> None:
    """Print the orloj-ray version."""
    from orloj_ray import __version__

    echo(f"orloj-ray {__version__} (python {sys.version.split()[0]})")


@app.command()
def health(ctx: typer.Context, output: OutputOpt = "table") -> None:
    """Check that the API server answers."""
    fmt = output_format(output)
    client = make_client(ctx)
    body = client.health() or {}
    if fmt != "table":
        print_doc({"server": client.server, **body}, fmt)
        return
    echo(f"server={client.server} status={body.get('status', 'ok')}")


SHELLS = ("bash", "zsh", "fish")


@app.command()
def completion(shell: Annotated[str, typer.Argument(help="bash, zsh or fish.", autocompletion=lambda: list(SHELLS))]) -> None:
    """Print the shell completion script, e.g. `source <(orloj completion bash)` or
    `orloj completion fish > ~/.config/fish/completions/orloj.fish`."""
    from typer._completion_shared import get_completion_script

    shell = shell.strip().lower()
    if shell not in SHELLS:
        fail(f"completion {shell!r}: expected bash, zsh or fish", 2)
    prog = _prog_name()
    echo(get_completion_script(prog_name=prog, complete_var=f"_{prog.upper()}_COMPLETE", shell=shell))


scaffold.register(app)
local.register(app)
resources_cmds.register(app)
run_cmds.register(app)
task_ops.register(app)
backup_cmds.register(app)
audit_cmd.register(app)
admin_cmds.register(app)
changes.register(app)
observe.register(app)
profiles.register(app)

def _prog_name() -> str:
    """``orlojctl`` when run as that alias, else ``orloj`` (shell completion keys on it)."""
    return "orlojctl" if Path(sys.argv[0]).name == "orlojctl" else "orloj"


_GLOBAL_VALUE_FLAGS = ("--server", "--api-token")


def hoist_global_flags(argv: list[str]) -> list[str]:
    """Move ``--server``/``--api-token`` (either ``--flag v`` or ``--flag=v``) to the front so
    they work after the subcommand too (not after ``config``, whose ``set-profile --server``
    is the profile's own)."""
    head = _command_index(argv)
    if head is not None and argv[head] == "config":
        return hoist_global_flags(argv[:head]) + argv[head:]
    front, rest, i = [], [], 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            rest.extend(argv[i:])
            break
        if arg in _GLOBAL_VALUE_FLAGS and i + 1 < len(argv):
            front += [arg, argv[i + 1]]
            i += 2
            continue
        if arg.split("=", 1)[0] in _GLOBAL_VALUE_FLAGS and "=" in arg:
            front.append(arg)
        else:
            rest.append(arg)
        i += 1
    return front + rest


def _command_index(argv: list[str]) -> int | None:
    """Where the subcommand is: the first word that is neither a global flag nor its value."""
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in (*_GLOBAL_VALUE_FLAGS, "--namespace", "-n"):
            i += 2
        elif arg.startswith("-"):
            i += 1
        else:
            return i
    return None


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns (and, run as a script, exits with) the exit code."""
    from orloj_ray.errors import OrlojError

    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in ("--version", "-version"):
        args = ["version"]
    if args and args[0] == "help":  # upstream's `orlojctl help [command]`
        args = [*args[1:], "--help"]
    args = hoist_global_flags(args)
    try:
        app(args=args, prog_name=_prog_name(), standalone_mode=True)
    except SystemExit as exc:
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except OrlojError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())

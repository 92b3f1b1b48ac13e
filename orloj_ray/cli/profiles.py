"""``orloj config``: server profiles in upstream orlojctl's file, and who wins where.

The file is upstream's, ``<user config dir>/orlojctl/config.json`` (mode 0600), so both CLIs
share their profiles: ``{"current_profile": "prod", "profiles": {"prod": {"server": ...,
"token": ..., "token_env": ...}}}``. Precedence, as upstream:

* server: ``--server``, ``$ORLOJCTL_SERVER``, ``$ORLOJ_SERVER``, the profile's ``server``,
  ``http://127.0.0.1:8080``;
* token: ``--api-token``, ``$ORLOJCTL_API_TOKEN``, ``$ORLOJ_API_TOKEN``, the profile's
  ``token``, then the variable its ``token_env`` names.

The profile is the CLI's: the Python SDK (``Client()``) reads only the environment.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from orloj_ray.cli.common import OutputOpt, echo, fail, output_format, print_doc

DEFAULT_SERVER = "http://127.0.0.1:8080"


def user_config_dir() -> Path:
    """Go's ``os.UserConfigDir``: ``$XDG_CONFIG_HOME`` or ``~/.config`` (Linux),
    ``~/Library/Application Support`` (macOS), ``%AppData%`` (Windows)."""
    if sys.platform == "win32":
        return Path(os.environ.get("AppData") or Path.home() / "AppData" / "Roaming")
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support"
    xdg = os.environ.get("XDG_CONFIG_HOME", "").strip()
    return Path(xdg) if xdg else Path.home() / ".config"


def config_path() -> Path:
    return user_config_dir() / "orlojctl" / "config.json"


def load() -> dict:
    """The config file (an empty one when it is missing); exit 1 naming the file when it is not JSON."""
    path = config_path()
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {"current_profile": "", "profiles": {}}
    except (OSError, ValueError) as exc:
        fail(f"{path}: not a readable orlojctl config ({exc}); fix or remove it")
    if not isinstance(data, dict):
        fail(f"{path}: expected a JSON object with current_profile and profiles")
    data.setdefault("current_profile", "")
    if not isinstance(data.get("profiles"), dict):
        data["profiles"] = {}
    return data


def save(data: dict) -> Path:
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2)
        f.write("\n")
    os.chmod(tmp, 0o600)
    tmp.replace(path)
    return path


def current() -> dict:
    """The active profile (``{}`` when none is set or the file is missing)."""
    if not config_path().exists():
        return {}
    data = load()
    profile = data["profiles"].get(data.get("current_profile") or "")
    return profile if isinstance(profile, dict) else {}


def _env(*names: str) -> str:
    for name in names:
        value = os.environ.get(name, "").strip()
        if value:
            return value
    return ""


def resolve_server(flag: str | None) -> str:
    return (flag or "").strip() or _env("ORLOJCTL_SERVER", "ORLOJ_SERVER") or \
        str(current().get("server") or "").strip() or DEFAULT_SERVER


def resolve_token(flag: str | None) -> str | None:
    value = (flag or "").strip() or _env("ORLOJCTL_API_TOKEN", "ORLOJ_API_TOKEN")
    if value:
        return value
    profile = current()
    token = str(profile.get("token") or "").strip()
    if token:
        return token
    env_name = str(profile.get("token_env") or "").strip()
    return _env(env_name) if env_name else None


config_app = typer.Typer(help="Server profiles (shared with upstream orlojctl): path, get, use, set-profile.",
                         no_args_is_help=True)


@config_app.command("path")
def path_cmd() -> None:
    """Print the config file's path."""
    echo(str(config_path()))


@config_app.command("get")
def get_cmd(output: OutputOpt = "table") -> None:
    """The current profile, its server, whether it holds a token, its token_env, and every profile."""
    fmt = output_format(output)
    data = load()
    name = data.get("current_profile") or ""
    profile = data["profiles"].get(name) or {}
    body = {"config": str(config_path()), "current_profile": name, "server": profile.get("server", ""),
            "token": "set" if profile.get("token") else "not set", "token_env": profile.get("token_env", ""),
            "profiles": sorted(data["profiles"])}
    if fmt != "table":
        print_doc(body, fmt)
        return
    for key, value in body.items():
        value = ", ".join(value) if isinstance(value, list) else value
        echo(f"{key + ':':<17}{value or '-'}")


@config_app.command("use")
def use_cmd(name: Annotated[str, typer.Argument(help="Profile to make current.")]) -> None:
    """Make a profile the current one."""
    data = load()
    if name not in data["profiles"]:
        known = ", ".join(sorted(data["profiles"])) or "none yet"
        fail(f"no profile {name!r} in {config_path()} (profiles: {known}); create it with "
             f"`orloj config set-profile {name} --server URL`")
    data["current_profile"] = name
    save(data)
    echo(f"current profile: {name}")


@config_app.command("set-profile")
def set_profile_cmd(
    name: Annotated[str, typer.Argument(help="Profile name.")],
    server: Annotated[Optional[str], typer.Option("--server", help="API URL of this profile.")] = None,
    token: Annotated[Optional[str], typer.Option("--token", help="Bearer token (stored in the file, mode 0600).")] = None,
    token_env: Annotated[Optional[str], typer.Option(
        "--token-env", help="Read the token from this environment variable instead.")] = None,
) -> None:
    """Create or update a profile and make it current."""
    if not name.strip():
        fail("profile name is required", 2)
    data = load()
    profile = dict(data["profiles"].get(name) or {})
    for key, value in (("server", server), ("token", token), ("token_env", token_env)):
        if value is not None:
            profile[key] = value.strip()
    data["profiles"][name] = profile
    data["current_profile"] = name
    path = save(data)
    echo(f"profile {name} saved in {path} (current)")


def register(app: typer.Typer) -> None:
    app.add_typer(config_app, name="config")

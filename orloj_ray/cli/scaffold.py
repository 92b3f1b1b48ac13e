"""``orloj init``: scaffold a project from a packaged blueprint.

The templates in ``orloj_ray/cli/blueprints/<name>/`` are the upstream example blueprints
verbatim plus a mock ``model-endpoint.yaml``; ``examples/blueprints/`` holds identical copies
(a test keeps them equal). Rendering swaps the upstream name prefixes for ``<project>-``.
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path
from typing import Annotated

import typer

from orloj_ray.cli.common import echo, fail

BLUEPRINTS: dict[str, tuple[str, ...]] = {
    # upstream name prefixes to replace, longest first
    "pipeline": ("bp-pipeline-",),
    "hierarchical": ("bp-hierarchical-", "bp-hier-"),
    "swarm-loop": ("bp-swarm-loop-", "bp-swarm-"),
}
_NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")


def template_files(blueprint: str) -> dict[str, str]:
    """Relative path → text of each template file of a blueprint."""
    root = resources.files("orloj_ray.cli").joinpath("blueprints", blueprint)
    out: dict[str, str] = {}

    def walk(node, prefix: str) -> None:
        for child in node.iterdir():
            rel = f"{prefix}{child.name}"
            if child.is_dir():
                walk(child, rel + "/")
            elif child.name.endswith((".yaml", ".yml")):
                out[rel] = child.read_text(encoding="utf-8")

    walk(root, "")
    return dict(sorted(out.items()))


def render(blueprint: str, prefix: str) -> dict[str, str]:
    """The blueprint's files with resource names prefixed ``<prefix>-``."""
    files = {}
    for rel, text in template_files(blueprint).items():
        for old in BLUEPRINTS[blueprint]:
            text = text.replace(old, f"{prefix}-")
        files[rel] = text
    files["README.md"] = readme(blueprint, prefix)
    return files


def readme(blueprint: str, name: str) -> str:
    return f"""# {name}

A `{blueprint}` multi-agent system scaffolded by `orloj init`.

| File | What |
|---|---|
| `agents/*.yaml` | the agents (prompt, model, limits) |
| `agent-system.yaml` | `{name}-system`: which agents, and the graph between them |
| `task.yaml` | `{name}-task`: one run of the system with an input |
| `model-endpoint.yaml` | `openai-default`: the model, `provider: mock` (offline) |

Run it:

```sh
orloj up --detach                    # local Ray + control plane + API
orloj apply -f {name} --run          # validate, create everything and start the task
orloj wait task/{name}-task --for condition=Complete
orloj trace task {name}-task         # each agent step, tokens, latency, output
```

Or start a fresh run with your own input:

```sh
orloj apply -f {name}
orloj run --system {name}-system topic="state of AI agents"
```

To use a real model, store the key with
`orloj create secret openai-api-key --from-literal value=sk-...` and follow the comments
in `model-endpoint.yaml`. Stop the local server with `orloj down`.
"""


def init(
    name: Annotated[str, typer.Argument(help="Project directory and resource name prefix.")],
    blueprint: Annotated[str, typer.Option("--blueprint", "-b", help="pipeline, hierarchical or swarm-loop.")] = "pipeline",
) -> None:
    """Scaffold a runnable multi-agent project (works offline with the mock model)."""
    bp = blueprint.strip().lower()
    if bp not in BLUEPRINTS:
        fail(f"unknown blueprint {bp!r} (expected: {', '.join(BLUEPRINTS)})", 2)
    target = Path(name)
    prefix = target.name.strip()
    if not _NAME_RE.match(prefix):
        fail(f"name {prefix!r} must be lower-case letters, digits and '-' (it prefixes resource names)", 2)
    if target.exists() and any(target.iterdir()):
        fail(f"{target}/ already exists and is not empty; pick another name or remove it")
    for rel, text in render(bp, prefix).items():
        path = target / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        echo(f"  created {path}")
    echo(f"\nScaffolded {bp} blueprint {prefix!r} in {target}/\n")
    echo("Next:")
    echo("  orloj up --detach")
    echo(f"  orloj apply -f {target} --run")
    echo(f"  orloj trace task {prefix}-task")


def register(app: typer.Typer) -> None:
    app.command()(init)

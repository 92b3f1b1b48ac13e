"""``orloj init``: scaffold a project from a packaged blueprint.

The templates in ``orloj_ray/cli/blueprints/<name>/`` are the upstream example blueprints
verbatim plus a mock ``model-endpoint.yaml``; ``examples/blueprints/`` holds identical copies
(a test keeps them equal). Rendering swaps the upstream name prefixes for ``<project>-`` and
makes the project's endpoint the namespace's ``default`` one (``ENDPOINT``): the agents name it
in ``model_ref``, and an agent that only sets ``model:`` (the launch announcement's form) is
served by it too, where upstream's ``init`` writes ``openai-default``.
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
UPSTREAM_ENDPOINT = "openai-default"
ENDPOINT = "default"
ENDPOINT_YAML = """\
# The namespace's default model: every agent here names it (model_ref: default), and an agent
# that sets only `model: <name>` is served by it as well.
#
# provider: mock runs offline: a deterministic stand-in model, no API key needed.
# To use OpenAI instead:
#   1. store the key:  orloj create secret openai-api-key --from-literal value=sk-...
#   2. replace the spec below with:
#        provider: openai
#        base_url: https://api.openai.com/v1
#        default_model: gpt-4o
#        auth:
#          secretRef: openai-api-key
#   3. apply again:    orloj apply -f model-endpoint.yaml
apiVersion: orloj.dev/v1
kind: ModelEndpoint
metadata:
  name: default
spec:
  provider: mock
  default_model: gpt-4o
"""


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
        files[rel] = text.replace(f"model_ref: {UPSTREAM_ENDPOINT}", f"model_ref: {ENDPOINT}")
    files["model-endpoint.yaml"] = ENDPOINT_YAML
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
| `model-endpoint.yaml` | `default`: the namespace's default model, `provider: mock` (offline) |

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

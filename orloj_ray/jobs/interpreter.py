"""The check a Ray job's entry point makes before importing anything else.

``ray job submit -- python -m ...`` runs the ``python`` that the cluster's PATH finds. Ray
does not pick the interpreter it runs itself: a cluster started from a virtualenv that was
never activated finds another Python (or none), and the job dies on ``import httpx`` with a
traceback that says nothing about why. This module uses the standard library only, so it
runs under any Python and says what is wrong and how to fix it.
"""

from __future__ import annotations

import importlib.util
import sys

CLIENT_MODULES = ("httpx", "pydantic", "yaml")
"""What ``orloj_ray.jobs.apply`` needs (it talks REST only); ``cluster.up`` needs ``ray`` too."""


def require_orloj_python(entry: str, modules: tuple[str, ...] = CLIENT_MODULES) -> None:
    """Exit 2 with the fix when this interpreter lacks one of ``modules``."""
    missing = [name for name in modules if importlib.util.find_spec(name) is None]
    if not missing:
        return
    print(f"error: {entry} runs under {sys.executable}, which lacks {', '.join(missing)}: this `python` is not "
          "the one orloj-ray is installed in. On the cluster, `python` must be that one: start Ray from "
          "orloj-ray's environment (activate it before `ray start`; `orloj up` does this itself), or submit "
          "the job with --runtime-env-json '{\"env_vars\": {\"PATH\": \"/path/to/orloj-ray-env/bin:${PATH}\"}}'",
          file=sys.stderr, flush=True)
    raise SystemExit(2)

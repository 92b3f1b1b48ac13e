"""Exec a program under resource limits: ``python -I -S launch.py --limit NAME=VALUE ... -- argv``.

For processes orloj-ray does not spawn itself (the MCP SDK starts stdio servers), so limits
cannot be set between fork and exec as ``SandboxRunner`` does. Run with ``-I -S`` by file path:
it imports nothing but the standard library, so it starts in milliseconds. ``NAME`` is a
``resource.RLIMIT_*`` suffix (``DATA``, ``NOFILE``, ``NPROC``, ``FSIZE``, ``CORE``, ``CPU``, ``AS``).
"""

from __future__ import annotations

import os
import resource
import sys


def main(argv: list[str]) -> None:
    if "--" not in argv:
        sys.exit("usage: launch.py [--limit NAME=VALUE ...] -- program [args ...]")
    split = argv.index("--")
    options, program = argv[:split], argv[split + 1:]
    if not program:
        sys.exit("launch.py: no program given")
    it = iter(options)
    for option in it:
        if option != "--limit":
            sys.exit(f"launch.py: unknown option {option!r}")
        name, _, value = next(it, "").partition("=")
        limit = int(value)
        resource.setrlimit(getattr(resource, f"RLIMIT_{name.upper()}"), (limit, limit))
    os.execvp(program[0], program)


if __name__ == "__main__":
    main(sys.argv[1:])

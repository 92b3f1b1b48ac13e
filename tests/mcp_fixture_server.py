"""An MCP server written with the official SDK (FastMCP), started by tests/test_mcp.py.

    python tests/mcp_fixture_server.py stdio
    python tests/mcp_fixture_server.py http <port>      # streamable HTTP on 127.0.0.1:<port>/mcp

Tools: ``add_numbers`` (a+b), ``text.upper``, ``echo_text`` (takes the mock model's
``{"input": ...}``), ``whoami`` (this process's pid: session reuse and reconnects show in it),
``always_fails`` (an ``isError`` result), ``slow`` (sleeps), ``crash`` (the process exits),
``environment`` (what the process was given: env names, cwd, limits) and ``read_file``.
With ``FIXTURE_TOKEN`` set, the HTTP server answers 401 to requests without that bearer token.
"""

from __future__ import annotations

import asyncio
import os
import sys

from mcp.server.fastmcp import FastMCP

mode = sys.argv[1] if len(sys.argv) > 1 else "stdio"
port = int(sys.argv[2]) if len(sys.argv) > 2 else 0
server = FastMCP("orloj-fixture", host="127.0.0.1", port=port or 8000, log_level="WARNING")


@server.tool(description="Add two integers.")
def add_numbers(a: int, b: int) -> int:
    return a + b


@server.tool(name="text.upper", description="Upper-case a text.")
def text_upper(text: str) -> str:
    return text.upper()


@server.tool(description="Echo the input back, marked as coming from the fixture.")
def echo_text(input: str) -> str:  # noqa: A002 - the mock model sends {"input": ...}
    return f"fixture echo: {input}"


@server.tool(description="The server process id.")
def whoami() -> str:
    return str(os.getpid())


@server.tool(description="Always fails.")
def always_fails() -> str:
    raise ValueError("this tool always fails")


@server.tool(description="Sleep for the given seconds.")
async def slow(seconds: float) -> str:
    await asyncio.sleep(seconds)
    return "done"


@server.tool(description="What this process was given: environment names, directory, limits.")
def environment() -> str:
    import json
    import resource

    return json.dumps({"env": sorted(os.environ), "cwd": os.getcwd(), "home": os.environ.get("HOME", ""),
                       "data": resource.getrlimit(resource.RLIMIT_DATA)[0],
                       "nofile": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
                       "canary": os.environ.get("ORLOJ_SECRET_CANARY", "")})


@server.tool(description="Read a file, or say why not.")
def read_file(path: str) -> str:
    try:
        with open(path) as f:
            return "read: " + f.read()
    except OSError as exc:
        return f"refused: {type(exc).__name__}"


@server.tool(description="Exit the server process at once.")
def crash() -> str:
    os._exit(3)


def main() -> None:
    if mode == "stdio":
        server.run("stdio")
        return
    token = os.environ.get("FIXTURE_TOKEN", "")
    app = server.streamable_http_app()
    if token:
        inner = app

        async def app(scope, receive, send):  # noqa: F811 - a bearer check in front of the MCP app
            if scope["type"] == "http":
                headers = dict(scope.get("headers") or [])
                if headers.get(b"authorization", b"").decode() != f"Bearer {token}":
                    await send({"type": "http.response.start", "status": 401, "headers": []})
                    await send({"type": "http.response.body", "body": b"unauthorized"})
                    return
            await inner(scope, receive, send)

    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")


if __name__ == "__main__":
    main()

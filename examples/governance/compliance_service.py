"""A tiny local stand-in for the compliance tools, so the governance walk-through runs offline.

    python examples/governance/compliance_service.py [--port 8765]

Answers POST /scan-documents, /flag-issues and /purge-records with upstream's tool contract
envelope and prints every call it receives, so you can see which calls governance let through.
"""

from __future__ import annotations

import argparse
import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

RESULTS = {
    "/scan-documents": "scanned 12 documents: 2 clauses miss a data-retention term",
    "/flag-issues": "filed COMP-101 and COMP-102",
    "/purge-records": "purged 340 records",
}


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode(errors="replace")
        print(f"call {self.path} key={self.headers.get('Idempotency-Key', '')} input={body[:200]}", flush=True)
        if self.path in RESULTS:
            status, reply = 200, {"status": "ok", "output": {"result": RESULTS[self.path]}}
        else:
            status, reply = 404, {"status": "error", "error": {"message": f"no tool at {self.path}"}}
        data = json.dumps(reply).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    print(f"compliance tools on http://127.0.0.1:{args.port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()

"""A fan-out in front of several storms' Nova endpoints (the 4-host bench).

    python bench/dist_nova.py PORT URL [URL ...]

The server posts every `os-server-external-events` batch to one Nova URL, but
each `vifwire boot --host H` process runs its own Nova endpoint that knows only
its own instances. This process listens on 127.0.0.1:PORT and forwards each
POST to every endpoint at once; an event is accepted (code 200) if one of them
accepted it, and the answer is 200, 207 or 404 as Nova's. Each endpoint stamps
an event when the forwarded copy arrives: the hop is in the measured latency
(about a millisecond on an idle machine; more when it is loaded).
"""

from __future__ import annotations

import json
import sys
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import httpx


class FanOut(BaseHTTPRequestHandler):
    targets: ClassVar[list[str]] = []
    client: ClassVar[httpx.Client]
    pool: ClassVar[ThreadPoolExecutor]
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        headers = {k: v for k, v in self.headers.items()
                   if k.lower() in ("content-type", "x-auth-token")}

        def forward(base: str) -> list[dict[str, Any]]:
            try:
                answer = self.client.post(base + self.path.split("/v2.1", 1)[-1],
                                          content=body, headers=headers)
                return list(answer.json().get("events", []))
            except (httpx.HTTPError, ValueError):
                return []

        answers = list(self.pool.map(forward, self.targets))
        events = json.loads(body).get("events", [])
        merged = []
        for i, event in enumerate(events):
            codes = [a[i].get("code", 404) for a in answers if i < len(a)]
            merged.append({**event, "code": 200 if 200 in codes else 404})
        accepted = sum(e["code"] == 200 for e in merged)
        status = 200 if accepted == len(merged) else 207 if accepted else 404
        out = json.dumps({"events": merged}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def do_GET(self) -> None:  # the bench's readiness probe
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        return None


def main() -> int:
    port, targets = int(sys.argv[1]), [t.rstrip("/") for t in sys.argv[2:]]
    FanOut.targets = targets
    FanOut.client = httpx.Client(timeout=30, limits=httpx.Limits(max_keepalive_connections=64))
    FanOut.pool = ThreadPoolExecutor(max(4, 4 * len(targets)))
    server = ThreadingHTTPServer(("127.0.0.1", port), FanOut)
    server.daemon_threads = True
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())

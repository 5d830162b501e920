"""How the API is served: uvicorn with its httptools protocol, no proxy layer.

A one-write variant (a transport that held a response's head and body until the
end of the loop turn, so they left in one send()) lived here until the A/B of
issue 13.2 (bench/http_ab.py) measured it: it cost the server CPU (about 50 us
per request more, not less), so uvicorn's own protocol serves every request.
"""

from __future__ import annotations

from typing import Any

import uvicorn


def server_config(app: Any, host: str, port: int) -> uvicorn.Config:
    """How the API is served, by the stack and by the tests that speak real HTTP to it."""
    return uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on",
                          access_log=False, http="httptools",
                          # No proxy in front: skip the proxy-headers layer.
                          proxy_headers=False)

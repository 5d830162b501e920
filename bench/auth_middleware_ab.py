"""keystonemiddleware's auth_token vs vifwire's own check (vifwire.keystone), per request.

    .venv/bin/python bench/auth_middleware_ab.py [--requests 2000]

Starts the tests' private Keystone (tests/keystone_rig.py: Debian's keystone under
uwsgi), takes a member's token, then measures the CPU per request of a request
whose token is already cached, the steady state of both:

- keystonemiddleware 10 (Debian's python3-keystonemiddleware, run by /usr/bin/python3:
  it is not in the venv) as a WSGI filter around a WSGI app that returns 200, its
  token cache in memory (`memcached_servers` unset), called with a webob request;
- `vifwire.api.auth.Gate.admit` with keystone, on the same token (ASGI scope).

Both also report the first (uncached) validation's wall time. Results:
bench/results/auth-middleware-ab-<time>.json. Shared machine: indicative.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))

from auth_cost import write_result

import keystone_rig
from vifwire.api.auth import Gate
from vifwire.settings import Settings

MIDDLEWARE = r"""
import json, sys, time, logging
logging.disable(logging.CRITICAL)
import webob
from keystonemiddleware import auth_token
url, user, password, token, n = sys.argv[1:6]
conf = {"auth_type": "password", "auth_url": url, "username": user, "password": password,
        "project_name": "service", "user_domain_name": "Default",
        "project_domain_name": "Default", "www_authenticate_uri": url,
        "delay_auth_decision": "false", "token_cache_time": "300", "interface": "public"}
def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "application/json")])
    return [b"{}"]
filtered = auth_token.filter_factory({}, **conf)(app)
def call():
    request = webob.Request.blank("/v2.0/networks", headers={"X-Auth-Token": token})
    response = request.get_response(filtered)
    assert response.status_int == 200, response.status
t0 = time.perf_counter(); call(); first = time.perf_counter() - t0
c0 = time.process_time()
for _ in range(int(n)):
    call()
cpu = (time.process_time() - c0) * 1000 / int(n)
c0 = time.process_time()
for _ in range(int(n)):  # the same request without the filter: webob's own share
    assert webob.Request.blank("/v2.0/networks", headers={"X-Auth-Token": token}
                               ).get_response(app).status_int == 200
bare = (time.process_time() - c0) * 1000 / int(n)
print(json.dumps({"first_ms": round(first * 1000, 1), "cpu_ms_per_request": round(cpu, 4),
                  "without_the_filter_ms": round(bare, 4),
                  "filter_ms_per_request": round(cpu - bare, 4)}))
"""


async def _vifwire(settings: Settings, token: str, n: int) -> dict[str, float]:
    gate = Gate(settings)
    scope = {"type": "http", "method": "GET", "path": "/v2.0/networks",
             "headers": [(b"host", b"localhost"), (b"x-auth-token", token.encode())]}
    t0 = time.perf_counter()
    assert await gate.admit(dict(scope)) is None
    first = time.perf_counter() - t0
    c0 = time.process_time()
    for _ in range(n):
        assert await gate.admit(dict(scope)) is None
    cpu = (time.process_time() - c0) * 1000 / n
    await gate.close()
    return {"first_ms": round(first * 1000, 1), "cpu_ms_per_request": round(cpu, 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    why = keystone_rig.missing()
    if why:
        sys.exit(f"error: {why}")
    with tempfile.TemporaryDirectory(prefix="vw-ks-bench-") as tmp:
        keystone = keystone_rig.start(Path(tmp))
        try:
            token = keystone.token("alice", "alpha")
            creds = keystone.credentials()
            done = subprocess.run(
                ["/usr/bin/python3", "-c", MIDDLEWARE, keystone.url, creds.username,
                 creds.password, token, str(args.requests)],
                capture_output=True, text=True, check=False, timeout=600)
            if done.returncode != 0:
                sys.exit(f"error: keystonemiddleware run failed: {done.stderr[-1500:]}")
            middleware = json.loads(done.stdout.strip().splitlines()[-1])
            settings = Settings(run_dir=Path(tmp), auth_strategy="keystone",
                                keystone_authtoken=creds)
            own = asyncio.run(_vifwire(settings, token, args.requests))
        finally:
            keystone.stop()
    result = {"bench": "auth_middleware_ab", "at": datetime.now(UTC).isoformat(),
              "requests": args.requests, "keystonemiddleware": middleware, "vifwire": own,
              "note": "cached token, CPU per request; shared 2-core machine: indicative"}
    write_result("auth-middleware-ab", result)

if __name__ == "__main__":
    main()

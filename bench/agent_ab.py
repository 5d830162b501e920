"""A/B of the agent's OVSDB speed-up against the plain library path.

    .venv/bin/python bench/agent_ab.py [--ports 1000] [--rounds 3]

`raw_rows` (vifwire.ovs.vifs, OvsSettings.raw_rows), its member read (results
key `raw_members`): the bridge's member set read from python-ovs's private
`Row._data` as raw UUIDs instead of `bridge.ports` (one Row object per member).
It is paid once per OVSDB batch that changes the Bridge row, i.e. on every
add-port of a boot storm; measured on a private OVS with `--ports` ports on
the bridge, modes alternating.

The other speed-up this bench once measured, `loop_results` (an ovsdbapp
transaction's result queue swapped for a loop future), showed no gain and was
removed: see bench/results/agent-ab-20261201T103031Z.json (1,000 ports) and
agent-ab-20261201T103100Z.json (100 ports), "loop_results".

Writes bench/results/agent-ab-<UTC time>.json and prints the gain.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from vifwire.ovs.idl import open_connection
from vifwire.ovs.runtime import OvsRuntime
from vifwire.ovs.vifs import MONITORED, VifIdl
from vifwire.settings import OvsSettings

RESULTS = Path(__file__).parent / "results"


def member_reads(settings: OvsSettings, raw: bool, calls: int = 200) -> float:
    """Microseconds per `_bridge_members()` with the bridge's ports as they are."""
    conn = open_connection(settings.connection, MONITORED, idl_class=VifIdl,
                           bridge=settings.integration_bridge, sink=lambda changes: None,
                           raw_rows=raw)
    conn.start()  # the IDL thread loads the database, then idles (nothing changes)
    try:
        deadline = time.monotonic() + 30
        while len(conn.idl._bridge_members()) < 2:
            assert time.monotonic() < deadline, "the IDL never saw the bridge's ports"
            time.sleep(0.05)
        start = time.perf_counter()
        for _ in range(calls):
            conn.idl._bridge_members()
        return 1e6 * (time.perf_counter() - start) / calls
    finally:
        conn.stop(10)


def add_ports(runtime: OvsRuntime, count: int) -> list[str]:
    """Ports with no device (ofport -1): OVSDB rows are all the writes need."""
    names = [f"ab{uuid.uuid4().hex[:8]}" for _ in range(count)]
    bridge = runtime.settings.integration_bridge
    for chunk in range(0, count, 200):
        args: list[str] = []
        for name in names[chunk:chunk + 200]:
            args += ["--", "add-port", bridge, name]
        runtime.vsctl(*args, timeout=60)
    return names


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ports", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    short = uuid.uuid4().hex[:6]
    netns = f"vwab-{short}"
    runtime = OvsRuntime(OvsSettings(run_dir=Path(f"/tmp/vw-agent-ab-{short}"),
                                     integration_bridge=f"br-ab{short}"), netns=netns)
    subprocess.run(["ip", "netns", "add", netns], check=True)
    results: dict[str, Any] = {"raw_members": {"fast": [], "plain": []}}
    try:
        runtime.start()
        add_ports(runtime, args.ports)
        for r in range(args.rounds):
            for fast in ((True, False) if r % 2 == 0 else (False, True)):
                key = "fast" if fast else "plain"
                results["raw_members"][key].append(member_reads(runtime.settings, fast))
    finally:
        runtime.destroy()
        subprocess.run(["ip", "netns", "del", netns], check=False)
    summary = summarise(results, args)
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = RESULTS / f"agent-ab-{stamp}.json"
    out.write_text(json.dumps({"args": vars(args), "runs": results, "summary": summary},
                              indent=2))
    print(json.dumps(summary, indent=2))
    print(f"written to {out}")


def summarise(results: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    raw = results["raw_members"]
    fast_us = statistics.median(raw["fast"])
    plain_us = statistics.median(raw["plain"])
    return {
        "raw_members": {"ports": args.ports, "fast_us_per_read": round(fast_us, 1),
                        "plain_us_per_read": round(plain_us, 1),
                        "gain_us_per_bridge_change": round(plain_us - fast_us, 1)},
    }


if __name__ == "__main__":
    main()

"""Does profiling change what it measures? Storms with and without --profile.

    .venv/bin/python bench/profile_overhead.py [--count 30] [--rounds 4]

One warm stack (private OVS in its own namespace); storms alternate between
plain and `--profile DIR`, each round swapping which goes first and each storm
starting after the previous one's teardown settled, so drift hits both alike.
Reports the median of the per-storm p50 plug->vif-plugged latencies for each,
and their difference (the target: within 10%).
Writes bench/results/profile-overhead-<UTC time>.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
SETTLE_S = 3.0
OPTIONS = ["--run-dir", "/var/run/vifwire-overhead", "--ovs-netns", "vwoverhead",
           "--host", "overhead-host", "--api-port", "9796",
           "--nova-url", "http://127.0.0.1:8772/v2.1"]


def vifwire(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "vifwire.cli.main", *OPTIONS, *args],
                          capture_output=True, text=True, check=False, timeout=600)


def storm(count: int, profile: Path | None) -> float:
    args = ["boot", "--count", str(count), "--json", "--no-connectivity"]
    if profile is not None:
        args += ["--profile", str(profile)]
    time.sleep(SETTLE_S)  # let the previous storm's teardown (unplug events) drain
    done = vifwire(*args)
    if done.returncode != 0:
        raise SystemExit(f"storm failed: {done.stderr.strip()}")
    return float(json.loads(done.stdout)["latency_ms"]["p50"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()
    plain: list[float] = []
    profiled: list[float] = []
    if vifwire("up").returncode != 0:
        raise SystemExit("could not start the stack")
    try:
        storm(4, None)  # warm-up
        with tempfile.TemporaryDirectory() as tmp:
            for i in range(args.rounds):
                # Alternate which goes first, so neither always follows the other's teardown.
                if i % 2:
                    profiled.append(storm(args.count, Path(tmp) / f"p{i}"))
                    plain.append(storm(args.count, None))
                else:
                    plain.append(storm(args.count, None))
                    profiled.append(storm(args.count, Path(tmp) / f"p{i}"))
    finally:
        vifwire("down")
    base, with_profile = statistics.median(plain), statistics.median(profiled)
    difference = (with_profile - base) / base * 100
    report = {"when": datetime.now(UTC).isoformat(timespec="seconds"),
              "command": ".venv/bin/python bench/profile_overhead.py "
                         + " ".join(sys.argv[1:]),
              "count": args.count, "rounds": args.rounds,
              "p50_ms_plain": plain, "p50_ms_profiled": profiled,
              "median_p50_ms_plain": base, "median_p50_ms_profiled": with_profile,
              "difference_pct": difference, "target_pct": 10.0}
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"profile-overhead-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"p50 plug->vif-plugged, median of {args.rounds} storms of {args.count} VMs: "
          f"plain {base:.1f} ms, --profile {with_profile:.1f} ms, "
          f"difference {difference:+.1f}% (target within 10%)")
    print(f"results written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

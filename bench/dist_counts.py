"""What the server workers do per VM in distributed mode: SQL, transactions, HTTP, bus.

    .venv/bin/python bench/dist_counts.py [--vms 100] [--workers 2] [--top 40]
                                          [--hosts 1] [--max-concurrent-builds 0]

Runs `bench/distributed.py single --no-embedded` (one host, `vifwire server
--workers N` on PostgreSQL and RabbitMQ), or with `--hosts` above 1 `multi`
(an agent per host: l2population's casts and member rounds to every host
count), with bench/counting/ first on the
PYTHONPATH, so each worker counts every SQL statement, commit and rollback,
HTTP request, message published and consumed, and its GC collections
(bench/counting/sitecustomize.py). Prints the sums over all workers per VM,
the most frequent statements first. The counts cover the server's whole run:
start-up, the 2-VM warm-up, the storm, and the deletes after it; the divisor is
the storm's VMs plus the warm-up's 2. The wrappers cost CPU: the storm's CPU
figures in this run are not comparable with plain runs. Results:
bench/results/dist-counts-<time>.json (the inner run's own results file is removed).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).parent
WARM_UP_VMS = 2


def run(vms: int, workers: int, out: Path, hosts: int = 1, builds: int = 0) -> str:
    env = {**os.environ, "VWCOUNT_DIR": str(out),
           "PYTHONPATH": os.pathsep.join(p for p in (str(HERE / "counting"),
                                                     os.environ.get("PYTHONPATH")) if p)}
    mode = ["multi", "--hosts", str(hosts), "--max-concurrent-builds", str(builds)] \
        if hosts > 1 else ["single", "--no-embedded"]
    done = subprocess.run([sys.executable, str(HERE / "distributed.py"), *mode, "--vms",
                           str(vms), "--workers", str(workers)],
                          env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"bench/distributed.py failed:\n{done.stdout}\n{done.stderr}")
    # Its CPU figures include the wrappers' cost: not a result to keep beside plain runs.
    lines = done.stdout.strip().splitlines()
    for line in lines:
        if line.startswith("results written to "):
            Path(line.removeprefix("results written to ")).unlink(missing_ok=True)
    return "\n".join(line for line in lines if not line.startswith("results written to "))


def summed(out: Path) -> collections.Counter[str]:
    total: collections.Counter[str] = collections.Counter()
    for path in out.glob("*.json"):
        total.update(json.loads(path.read_text()))
    return total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vms", type=int, default=100)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--hosts", type=int, default=1)
    parser.add_argument("--max-concurrent-builds", type=int, default=0,
                        help="with --hosts above 1: the boots' build limit (0: none)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="vwcounts-") as tmp:
        storm = run(args.vms, args.workers, Path(tmp), args.hosts, args.max_concurrent_builds)
        counts = summed(Path(tmp))
    if not counts:
        raise SystemExit("no worker wrote counts (was bench/counting on the path?)")
    per_vm = args.vms + WARM_UP_VMS
    kinds: collections.Counter[str] = collections.Counter()
    for key, n in counts.items():
        if not key.startswith(("pub bytes", "gc ")):
            kinds[key.split()[0]] += n
    print(storm.strip())
    print(f"\nper VM (whole run / {per_vm} VMs), all {args.workers} workers:")
    for kind, n in sorted(kinds.items()):
        print(f"  {kind:<8}{n / per_vm:8.2f}")
    print(f"  {'bytes published':<20}{counts['pub bytes'] / per_vm:8.0f}")
    for key in sorted(k for k in counts if k.startswith("gc ")):
        print(f"  {key:<20}{counts[key] / per_vm:8.2f}")
    print()
    for key, n in counts.most_common():
        if args.top <= 0:
            break
        if not key.startswith(("pub bytes", "gc ")):
            print(f"{n / per_vm:7.2f}  {key}")
            args.top -= 1
    results = HERE / "results"
    results.mkdir(exist_ok=True)
    path = results / f"dist-counts-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    path.write_text(json.dumps({
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": f".venv/bin/python bench/dist_counts.py {' '.join(sys.argv[1:])}",
        "vms_divisor": per_vm, "storm": storm.strip().splitlines(),
        "per_vm": {k: round(n / per_vm, 3) for k, n in counts.most_common()}}, indent=2) + "\n")
    print(f"results written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

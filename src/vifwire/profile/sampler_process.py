"""The resource sampler in a process of its own, so profiling shares no GIL with
what it measures (a sampler thread inside the compute emulator could delay the
plug it is timing).

    python -m vifwire.profile.sampler_process --out FILE --spec JSON [--interval S]

`SamplerProcess` starts it and keeps its stdin open; closing stdin (or SIGTERM)
makes it take a last sample, write the `ResourceTimeline` to FILE and exit.
The spec maps component names to pids, or to {"pid", "prefix", "exclude"} for a
`ThreadGroup`.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping
from pathlib import Path

from vifwire.profile.resources import ResourceSampler, ResourceTimeline, ThreadGroup

Spec = Mapping[str, list[int] | ThreadGroup]


def encode(components: Spec) -> str:
    return json.dumps({name: {"pid": c.pid, "prefix": c.prefix, "exclude": c.exclude}
                       if isinstance(c, ThreadGroup) else list(c)
                       for name, c in components.items()})


def decode(spec: str) -> dict[str, list[int] | ThreadGroup]:
    return {name: ThreadGroup(**c) if isinstance(c, dict) else list(c)
            for name, c in json.loads(spec).items()}


class SamplerError(Exception):
    """The sampler process did not start or left no timeline."""


class SamplerProcess:
    def __init__(self, components: Spec, out: Path, interval: float = 0.2) -> None:
        self.out = out
        self._argv = [sys.executable, "-m", "vifwire.profile.sampler_process", "--out", str(out),
                      "--spec", encode(components), "--interval", str(interval)]
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> SamplerProcess:
        self._process = subprocess.Popen(self._argv, stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE)
        assert self._process.stdout is not None
        if self._process.stdout.readline().strip() != b"started":  # first sample taken
            self.stop()
            raise SamplerError("the resource sampler process failed to start")
        return self

    def stop(self, timeout: float = 10.0) -> ResourceTimeline:
        process, self._process = self._process, None
        if process is not None:
            assert process.stdin is not None
            process.stdin.close()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            if process.stdout is not None:
                process.stdout.close()
        if not self.out.exists():
            raise SamplerError(f"the resource sampler wrote no {self.out}")
        return ResourceTimeline.read(self.out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--spec", required=True)
    parser.add_argument("--interval", type=float, default=0.2)
    args = parser.parse_args(argv)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when we stop
    sampler = ResourceSampler(decode(args.spec), interval=args.interval).start()
    sys.stdout.write("started\n")
    sys.stdout.flush()
    def stop_at_eof() -> None:  # the parent closing our stdin means stop, too
        sys.stdin.read()
        done.set()

    threading.Thread(target=stop_at_eof, daemon=True).start()
    done.wait()
    sampler.stop().write(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What vswitchd holds under a cookie prefix, read once, and whether it is what is wanted.

A restarted agent finds the rules its predecessor left on the bridge (the
firewall's "kept:" groups, `vifwire.ovs.flows`). Rewriting all of them is one
bundle of every port's rules (~26,000 at 1,000 ports) that vswitchd applies and
revalidates on the thread that also forwards the netdev datapath's packets;
nearly always they are exactly the rules the new agent wants. So:

- `read()` takes one dump of the flows under a cookie prefix, grouped by
  cookie, and the bridge's port numbers (two ovs-ofctl calls, in parallel).
  The dump speaks OpenFlow 1.5 so that `set_field` reads back as `set_field`
  (OpenFlow 1.0 shows it as `load`, which parses as another action).
- `differing()` hands what was found and what is wanted to
  `ovs-ofctl diff-flows` as two files, which parses both the same way, and
  returns the cookies whose rules differ (missing, extra or changed).

A file has no switch to resolve port names against, so wanted rules are
compared with the port numbers the snapshot gives (`Snapshot.ports`). Reading
or comparing raises nothing the caller must handle: a failed comparison says
every cookie differs, which only costs a rewrite.
"""

from __future__ import annotations

import asyncio
import logging
import re
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from vifwire.ovs.model import OvsWriteFailed
from vifwire.ovs.openflow import NAMED_PORT
from vifwire.ovs.runtime import OvsRuntime

log = logging.getLogger(__name__)

PREFIX_MASK = 0xFFFF << 48
_COOKIE = re.compile(r"cookie=(0x[0-9a-f]+)")


@dataclass
class Snapshot:
    flows: dict[int, list[str]] = field(default_factory=dict)  # cookie -> dumped lines
    ports: dict[str, int] = field(default_factory=dict)  # port name -> OpenFlow number


class FlowSnapshots:
    def __init__(self, runtime: OvsRuntime, bridge: str) -> None:
        self._runtime = runtime
        self._bridge = bridge

    async def read(self, prefix: int, mask: int = PREFIX_MASK) -> Snapshot:
        """The bridge's flows whose cookie is `prefix` under `mask` (default: the
        top 16 bits) and its port numbers; raises OvsWriteFailed if vswitchd does
        not answer."""
        dump, ports = await asyncio.gather(
            self._ofctl("-O", "OpenFlow15", "dump-flows", "--no-stats", self._bridge,
                        f"cookie={prefix:#x}/{mask:#x}"),
            self._ofctl("dump-ports-desc", self._bridge))
        snapshot = Snapshot(ports=dict(_numbers(ports)))
        for line in dump.splitlines():
            found = _COOKIE.search(line)
            if found is not None:
                snapshot.flows.setdefault(int(found.group(1), 16), []).append(line.strip())
        return snapshot

    async def differing(self, found: Iterable[str], wanted: Iterable[str]) -> set[int] | None:
        """The cookies whose flows differ between `found` (dumped lines) and `wanted`
        (`cookie=<c>,<spec>` lines); None when ovs-ofctl could not tell."""
        try:
            with tempfile.TemporaryDirectory(prefix="vw-flows-") as tmp:
                have, want = Path(tmp, "found"), Path(tmp, "wanted")
                have.write_text("\n".join(found) + "\n")
                want.write_text("\n".join(wanted) + "\n")
                proc = await self._spawn("diff-flows", str(have), str(want))
                out, err = await proc.communicate()
        except OSError as exc:
            log.warning("comparing flows of %s: %s", self._bridge, exc)
            return None
        if proc.returncode not in (0, 2):  # 0: the same, 2: differences
            log.warning("comparing flows of %s: %s", self._bridge,
                        err.decode(errors="replace").strip()[:500])
            return None
        text = out.decode()
        if text:
            log.debug("flows of %s differ from those wanted: %s", self._bridge, text[:1000])
        return {int(c, 16) for c in _COOKIE.findall(text)}

    async def _ofctl(self, *args: str) -> str:
        proc = await self._spawn(*args)
        out, err = await proc.communicate()
        if proc.returncode != 0:
            raise OvsWriteFailed(f"ovs-ofctl {' '.join(args)}: {err.decode().strip()}")
        return out.decode()

    async def _spawn(self, *args: str) -> asyncio.subprocess.Process:
        # OVS_RUNDIR in the runtime's env makes ovs-ofctl find "<bridge>.mgmt".
        return await asyncio.create_subprocess_exec(
            "ovs-ofctl", *args, env=self._runtime.env(), stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)


def numbered(line: str, ports: dict[str, int]) -> str | None:
    """`line` with `in_port=<name>` and `output:<name>` as numbers (a file has no
    switch to resolve names); None if a name is not on the bridge."""
    missing = False

    def number(match: re.Match[str]) -> str:
        nonlocal missing
        found = ports.get(match.group(2))
        missing = missing or found is None
        return f"{match.group(1)}{found}"

    out = NAMED_PORT.sub(number, line)
    return None if missing else out


def _numbers(ports_desc: str) -> Iterator[tuple[str, int]]:
    """(name, number) of each port in `ovs-ofctl dump-ports-desc` output, whose
    port lines read " 5(tap0a1b2c3d-4e): addr:fa:16:3e:..." (LOCAL is no number)."""
    for line in ports_desc.splitlines():
        head, sep, _ = line.partition("): addr:")
        number, paren, name = head.strip().partition("(")
        if sep and paren and number.isdigit():
            yield name, int(number)

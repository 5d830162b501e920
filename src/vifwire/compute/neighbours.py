"""Room in the kernel's ARP table for a storm's VMs.

The emulator's VMs are network namespaces of one kernel, and that kernel keeps
one ARP (neighbour) table for all of them, under machine-wide limits
(`net.ipv4.neigh.default.gc_thresh1/2/3`: 128/512/1024 by default, settable in
the initial namespace only). Each VM caches a few neighbours (the VM it pinged,
the one that pinged it, the probe), so at 1,000 VMs the table was full: the
kernel logged `neighbor table overflow!` and a first contact's ping failed at
once with ENOBUFS ("No buffer space available") until garbage collection freed
an entry. That was the ring's late pairs after a 1,000-VM boot (`ring_late`
100-150 of 250 per host, answering 16-34 s later; a few never within the ring's
30 s), and 64 parallel first contacts on a kept cluster failed 92-204 of 250.
Real VMs have a kernel each, and a host of many namespaces raises these limits:
`make_room` does before a storm that needs it. It only raises, and does not put
them back: another storm may be running, and a larger limit costs memory only
for entries in use.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)

SYSCTL = "/proc/sys/net/ipv4/neigh/default/gc_thresh{}"
ENTRIES_PER_VM = 4  # the ring's two neighbours, the probe, a cross-host pair
# Common settings for hosts of many namespaces: room for 8,000 VMs at 4 each
# before garbage collection (gc_thresh2, the soft limit) gets in the way.
FLOOR = {1: 8192, 2: 32768, 3: 65536}


def read(level: int) -> int:
    with open(SYSCTL.format(level)) as f:
        return int(f.read())


def make_room(vms: int) -> dict[str, list[int]]:
    """Raise the ARP table's limits if a storm of `vms` VMs may not fit under the
    soft one; returns what changed, {"gc_thresh3": [before, after], ...} ({} when
    nothing had to). A limit that cannot be written is logged, not raised: the
    storm runs, and its late pairs say why."""
    try:
        if ENTRIES_PER_VM * vms <= read(2):
            return {}
        changed: dict[str, list[int]] = {}
        for level in (3, 2, 1):  # from the hard limit down: never thresh2 > thresh3
            before = read(level)
            if before < FLOOR[level]:
                with open(SYSCTL.format(level), "w") as f:
                    f.write(str(FLOOR[level]))
                changed[f"gc_thresh{level}"] = [before, FLOOR[level]]
    except OSError as exc:
        log.warning("cannot make room in the ARP table for %d VMs: %s", vms, exc)
        return {}
    if changed:
        log.info("ARP table limits raised for %d VMs: %s", vms, changed)
    return changed

"""The transition header of a Nova event post: what makes a repeated post harmless.

The notifier is at-least-once: a post Nova acted on can be posted again after a
SIGKILL (vifwire.server.notifier). Each post therefore names the transition of
each of its events, and a receiver that honours the header (the compute
emulator, vifwire.compute.nova_server) acts once per (server, tag, name,
revision) and answers a repeat as it answered the first.

    X-Vifwire-Event-Revisions: 7,7,12

One decimal port revision per event, in the order of the body's `events` list
(tag, name and server_uuid are in the body already). Two hundred events
(MAX_EVENTS_PER_POST) of up to 8-digit revisions make ~1.8 KB, far under the
~8 KB per header line that Nova's servers (Apache, eventlet) accept.

Real Nova ignores a header it does not know, and a repeated
network-vif-plugged is a no-op there (the instance's waiter is gone, the
event only logged), so the header changes nothing against real Nova.
A header that does not fit the body (junk, a count other than the events')
is treated as absent, as real Nova would: the post is acted on as today.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

HEADER = "X-Vifwire-Event-Revisions"
_VALUE = re.compile(r"[0-9]{1,19}(?:,[0-9]{1,19})*", re.ASCII)


def format_revisions(revisions: Sequence[int]) -> str:
    return ",".join(str(r) for r in revisions)


def parse_revisions(value: str | None, count: int) -> list[int] | None:
    """The revisions of a post of `count` events; None when the header is absent or
    does not fit (junk, or a count other than the events')."""
    if value is None or not _VALUE.fullmatch(value.strip()):
        return None
    revisions = [int(r) for r in value.strip().split(",")]
    return revisions if len(revisions) == count else None

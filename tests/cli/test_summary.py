"""The boot summary's table says what the JSON says (pure: a rendered console)."""

from __future__ import annotations

import io
from typing import Any

from rich.console import Console

from vifwire.cli.boot import print_summary


def rendered(summary: dict[str, Any]) -> str:
    out = io.StringIO()
    print_summary({"vms": 2, "plugged": 2, "latency_ms": {}, **summary}, "private",
                  Console(file=out, width=200))
    return out.getvalue()


def test_a_proven_ring_is_ok_and_nothing_else_says_failed() -> None:
    text = rendered({"connectivity_ok": True,
                     "connectivity": {"checked": True, "ring_late": 0}})
    assert "each VM reached its neighbour" in text and "FAILED" not in text


def test_late_pairs_are_said() -> None:
    text = rendered({"connectivity_ok": True, "connectivity": {
        "checked": True, "ring_late": 3, "ring_settled_s": 2.5}})
    assert "3 pairs answered late, the last after 2.5 s" in text


def test_a_broken_ring_says_failed_and_port_security_is_shown() -> None:
    text = rendered({"connectivity_ok": False, "connectivity": {"checked": True},
                     "port_security": {"members_ok": False, "outsider_refused": True,
                                       "outsider_answered": []}})
    assert "FAILED" in text and "members reach each other: False" in text


def test_not_checked_is_said() -> None:
    text = rendered({"connectivity": {"checked": False}})
    assert "not checked" in text and "FAILED" not in text

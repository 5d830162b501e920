"""How member rounds are paced (`FirewallCasts._rounds`): the first waits
`sg_members_delay_s`, each next one twice as long while changes keep coming
(within `sg_members_max_delay_s` of the last round), up to
`sg_members_max_delay_s`, and a change after that long without a round starts
over. The module's sleep is replaced by one that records each wait, steps the
casts' clock by it and lets the test say what changed meanwhile, so nothing here
depends on the real clock."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from vifwire.server import firewalls
from vifwire.server.firewalls import FirewallCasts
from vifwire.settings import Settings


def nothing(_n: int) -> set[str]:
    return set()


class Paced:
    """FirewallCasts with its sleep and sends recorded; `waiting(n)` is what
    changes while the n-th wait is under way, `sending(n)` while the n-th round
    is read and sent."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                 waiting: Callable[[int], set[str]] = nothing,
                 sending: Callable[[int], set[str]] = nothing) -> None:
        settings = Settings(run_dir=tmp_path).with_(sg_members_delay_s=0.05,
                                                    sg_members_max_delay_s=0.4)
        self.casts = FirewallCasts(SimpleNamespace(settings=settings))  # type: ignore[arg-type]
        self.waits: list[float] = []
        self.sent: list[set[str]] = []
        self.now = 1000.0
        self.casts._clock = lambda: self.now  # type: ignore[method-assign]
        real_sleep = asyncio.sleep

        async def sleep(delay: float) -> None:
            self.waits.append(delay)
            self.now += delay
            changed = waiting(len(self.waits))
            if changed:
                await self.casts.members_changed(changed)
            await real_sleep(0)

        async def send(groups: set[str]) -> None:
            self.sent.append(groups)
            changed = sending(len(self.sent))
            if changed:
                await self.casts.members_changed(changed)

        monkeypatch.setattr(firewalls.asyncio, "sleep", sleep)
        self.casts._send_members = send  # type: ignore[method-assign]

    async def change(self, *groups: str) -> None:
        await self.casts.members_changed(groups)
        await self.casts.settled()


async def test_a_lone_change_waits_the_short_delay(monkeypatch: Any, tmp_path: Path) -> None:
    paced = Paced(monkeypatch, tmp_path)
    await paced.change("g")
    assert paced.waits == [0.05] and paced.sent == [{"g"}]


async def test_changes_that_keep_coming_double_the_wait_up_to_the_cap(
        monkeypatch: Any, tmp_path: Path) -> None:
    # A storm: the group changes again while each of the first six rounds is sent.
    paced = Paced(monkeypatch, tmp_path, sending=lambda n: {"g"} if n <= 6 else set())
    await paced.change("g")
    assert paced.waits == [0.05, 0.1, 0.2, 0.4, 0.4, 0.4, 0.4]
    assert paced.sent == [{"g"}] * 7
    paced.now += 0.5  # quiet for over max_delay_s since the last round: short again
    await paced.change("h")
    assert paced.waits[-1] == 0.05 and paced.sent[-1] == {"h"}


async def test_a_storm_whose_changes_come_between_rounds_keeps_backing_off(
        monkeypatch: Any, tmp_path: Path) -> None:
    # As a storm is: each change finds the last round sent and nothing pending.
    paced = Paced(monkeypatch, tmp_path)
    for _ in range(6):
        paced.now += 0.3  # under max_delay_s (0.4) since the last round
        await paced.change("g")
    assert paced.waits == [0.05, 0.1, 0.2, 0.4, 0.4, 0.4]
    assert paced.sent == [{"g"}] * 6
    paced.now += 0.39
    await paced.change("g")
    assert paced.waits[-1] == 0.4  # still the storm's
    paced.now += 0.5
    await paced.change("g")
    assert paced.waits[-1] == 0.05  # quiet: starts over


async def test_groups_changed_during_a_wait_go_in_that_round(
        monkeypatch: Any, tmp_path: Path) -> None:
    paced = Paced(monkeypatch, tmp_path, waiting=lambda n: {"h"} if n == 1 else set())
    await paced.change("g")
    assert paced.sent == [{"g", "h"}] and paced.waits == [0.05]

"""The transition header of Nova event posts: built by the notifier, read by the emulator."""

from __future__ import annotations

import pytest

from vifwire.nova_revisions import HEADER, format_revisions, parse_revisions
from vifwire.server.notifier import MAX_EVENTS_PER_POST


def test_round_trip() -> None:
    assert format_revisions([7, 7, 12]) == "7,7,12"
    assert parse_revisions("7,7,12", 3) == [7, 7, 12]
    assert parse_revisions(" 3 ", 1) == [3]  # HTTP allows whitespace around a value


def test_a_full_post_stays_far_under_header_limits() -> None:
    """Apache and eventlet (Nova's API servers) take ~8 KB per header line."""
    revisions = [10**8 - 1 - i for i in range(MAX_EVENTS_PER_POST)]  # 8 digits each
    value = format_revisions(revisions)
    assert len(f"{HEADER}: {value}\r\n") < 2048
    assert parse_revisions(value, MAX_EVENTS_PER_POST) == revisions


@pytest.mark.parametrize("value", [
    None, "", ",", "7,", ",7", "7,,8", "7;8", "-1", "+7", "0x7", "7 ,8", "7_0", "٣",
    "1" * 20, "seven",
])
def test_junk_is_no_header(value: str | None) -> None:
    assert parse_revisions(value, 1) is None
    assert parse_revisions(value, 2) is None


def test_a_count_other_than_the_events_is_no_header() -> None:
    assert parse_revisions("7,8", 3) is None
    assert parse_revisions("7,8,9", 2) is None

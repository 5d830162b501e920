"""Timestamps render in Neutron's standard-attr format, whatever the driver hands back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from vifwire.server._utils import iso


def test_iso_is_neutrons_format() -> None:
    assert iso(datetime(2026, 11, 24, 5, 0, 0)) == "2026-11-24T05:00:00Z"
    assert iso(datetime(2026, 11, 24, 5, 0, 7, 999_999)) == "2026-11-24T05:00:07Z"  # truncated
    assert iso(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)) == "2026-01-02T03:04:05Z"
    # An aware value keeps its stored fields (as strftime did): the store is UTC.
    assert iso(datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=5)))) == \
        "2026-01-02T03:04:05Z"
